import pytest

from claspkit.config import SCHEMA, available_presets, describe, load_params
from claspkit.errors import ParamError


def test_presets_exist_and_load():
    presets = available_presets()
    assert {"tiny", "small", "full", "paper"} <= set(presets)
    for name in presets:
        P = load_params(name)
        assert P.preset == name
        assert set(P) == set(SCHEMA)


def test_override_wins_and_none_keeps_preset_value():
    P = load_params("tiny", {"loss": "huber", "seed": None})
    assert P.loss == "huber"
    assert P.seed == SCHEMA["seed"].default


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ParamError, match="tiny"):
        load_params("tinny")


def test_unknown_parameter_and_value_fail_with_choices():
    with pytest.raises(ParamError, match="unknown parameter"):
        load_params("tiny", {"lsos": "huber"})
    with pytest.raises(ParamError, match="contrastive, huber"):
        load_params("tiny", loss="triplet")
    with pytest.raises(ParamError, match="must be int"):
        load_params("tiny", seed="abc")


def test_int_is_accepted_for_float_and_a_bad_split_is_refused():
    assert load_params("tiny", lr=1).lr == 1.0
    with pytest.raises(ParamError):
        load_params("tiny", split=[0.5, 0.5, 0.5])


def test_describe_lists_every_knob():
    text = describe()
    for k in SCHEMA:
        assert f"`{k}`" in text


def test_unknown_backbone_fails_before_anything_loads():
    from claspkit.errors import BackboneError

    with pytest.raises(BackboneError, match="whisper-tiny.en"):
        load_params("tiny", speech_backbone="whisper-huge")
    with pytest.raises(BackboneError, match="labse"):
        load_params("tiny", stage2_text_backbones=["e5-small-multilingual", "labse-typo"])
    assert load_params("tiny", text_backbone="st:/some/local/model").text_backbone == "st:/some/local/model"


def test_attention_and_scale_knobs_are_checked_and_leave_the_stage2_grid_alone():
    from claspkit import constants
    from claspkit.model import fusion
    from claspkit.config import FUSIONS, PAPER_FUSIONS

    # 03 loops over the first
    assert PAPER_FUSIONS == ("concat", "gating") and FUSIONS == PAPER_FUSIONS + ("attention", "stats")
    assert fusion.FUSIONS is constants.FUSIONS is FUSIONS
    P = load_params("tiny", fusion="attention", scale_lr=1, learnable_scale=True)
    assert (P.fusion, P.scale_lr, P.frame_pool, P.attention_dim) == ("attention", 1.0, 4, 256)
    assert load_params("small").scale_lr is None
    with pytest.raises(ParamError, match="frame_pool.*>= 1"):
        load_params("tiny", frame_pool=0)
    with pytest.raises(ParamError, match="scale_lr.*>= 1e-12"):
        load_params("tiny", scale_lr=-0.1)
    with pytest.raises(ParamError, match="divisible"):
        load_params("tiny", attention_dim=100, attention_heads=8)
    with pytest.raises(ParamError, match="attention, concat, gating"):
        load_params("tiny", fusion="transformer")


def test_shared_constants_are_defined_once():
    """SAMPLE_RATE, ROLES, LOSSES, FUSIONS and the valid choices config checks live in claspkit.constants; modules
    only import them."""
    import re
    from pathlib import Path

    pkg = Path(__file__).resolve().parent.parent / "claspkit"
    pattern = re.compile(r"^(SAMPLE_RATE|ROLES|BACKBONE_ROLES|LOSSES|FUSIONS|PAPER_FUSIONS|ALL_FUSIONS|IMAGE_RUNTIMES|"
                         r"ENGINES|NOISE_KINDS|BABBLE_TALKERS|ASTERISK_LANGUAGES|BACKBONE_PATTERN|BACKBONES|"
                         r"CHANNEL_STAGES|CHANNEL_PARAMS|CODEC_KBPS|CHANNEL_RECIPES)\s*=", re.M)
    defined = {p.name for p in pkg.rglob("*.py") if pattern.search(p.read_text())}
    assert defined == {"constants.py"}


def test_every_module_names_its_public_api():
    """Each module's ``__all__`` exists, names only what the module has, and lists every public def/class."""
    import ast
    import importlib
    from pathlib import Path

    pkg = Path(__file__).resolve().parent.parent / "claspkit"
    for path in sorted(pkg.rglob("*.py")):
        if path.name == "__main__.py":          # a script (``python -m``): importing it runs it
            continue
        parts = path.relative_to(pkg.parent).with_suffix("").parts
        module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        assert hasattr(module, "__all__"), f"{path.name} has no __all__"
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"{path.name}: __all__ names {missing}, which it does not define"
        public = {n.name for n in ast.parse(path.read_text()).body
                  if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")}
        assert public <= set(module.__all__), (f"{path.name}: public {sorted(public - set(module.__all__))} "
                                               "not in __all__")


def test_the_code_meets_its_ruff_config():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    ruff = Path(sys.executable).parent / "ruff"
    out = subprocess.run([str(ruff), "check", "claspkit", "tests"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_readme_parameter_reference_is_the_schema():
    """The params block (docs/parameters.md) is generated (``python -m claspkit.readme``); this catches a knob
    added without regenerating it."""
    import re
    from pathlib import Path

    from claspkit.config import describe

    text = (Path(__file__).resolve().parent.parent / "docs" / "parameters.md").read_text()
    block = re.search(r"<!-- params:start -->\n(.*?)\n<!-- params:end -->", text, re.S)
    assert block and block.group(1).strip() == describe().strip(), "run `python -m claspkit.readme --params`"


def test_the_channel_recipe_knob_is_off_by_default_and_checked_at_load():
    assert load_params("tiny").robust_channels is None
    assert load_params("tiny", robust_channels=["room", "mp3"]).robust_channels == ["room", "mp3"]
    assert load_params("tiny", robust_channels={"room": {"rt60_s": [0.3, 0.5]}}).robust_channels
    with pytest.raises(ParamError, match="parameter robust_channels: unknown channel 'echo' is not one of: g722"):
        load_params("tiny", robust_channels=["echo"])
    with pytest.raises(ParamError, match="robust_channels: unknown channel recipe 'studio'"):
        load_params("tiny", robust_channels="studio")
    with pytest.raises(ParamError, match="robust_channels: channel 'mp3' parameter 'kbps': mp3 takes whole kbit/s"):
        load_params("tiny", robust_channels={"mp3": {"kbps": [400]}})     # the ranges are checked without PyAV
