"""claspkit embed: one vector per file or segment in Parquet, resumable, reusing what is already there."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from claspkit import CLASP
from claspkit.model import clasp as M
from claspkit.search.embed import embed_folder, read_vectors
from claspkit.errors import DataMissingError, ParamError
from fakes import SR, concat_checkpoint, fake_factory, tone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "create_encoder", fake_factory({}))
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    for i, s in enumerate([0.5, 1.3, 0.8]):
        sf.write(lib / ("sub" if i == 2 else "") / f"c{i}.wav", tone(s, 210 + 70 * i, i), SR, subtype="PCM_16")
    (lib / "empty.wav").write_bytes(b"")
    (lib / "broken.flac").write_bytes(b"not audio at all")
    return lib, CLASP.from_pretrained(concat_checkpoint(tmp_path / "m")), tmp_path


def test_one_unit_vector_per_file_with_bad_files_skipped(setup):
    lib, model, tmp = setup
    s = embed_folder(lib, model, tmp / "v.parquet", progress=False)
    assert (s.files, s.embedded, s.reused, s.rows) == (5, 3, 0, 3)
    assert sorted(x["path"] for x in s.skipped) == ["broken.flac", "empty.wav"]
    df, settings = read_vectors(tmp / "v.parquet")
    assert list(df.columns) == ["id", "path", "sha256", "start_s", "end_s", "vector"]
    assert list(df.path) == ["c0.wav", "c1.wav", "sub/c2.wav"] and df.start_s.isna().all()
    v = np.stack(df.vector)
    assert v.dtype == np.float32 and v.shape == (3, 8)
    np.testing.assert_allclose(v, model.encode_speech([lib / p for p in df.path]), atol=1e-6)
    assert settings["model"] == model.identity and settings["dim"] == 8 and settings["segmentation"] is None
    assert not (tmp / "v.parquet.parts").exists()


def test_an_interrupted_run_resumes_and_a_rerun_reuses(setup, monkeypatch):
    lib, model, tmp = setup
    real, calls = model.encode_waves, []

    def dying(waves, batch_size=16, timings=None):
        calls.append(len(waves))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(waves, batch_size, timings)

    monkeypatch.setattr(model, "encode_waves", dying)
    with pytest.raises(KeyboardInterrupt):
        embed_folder(lib, model, tmp / "v.parquet", batch_size=1, progress=False)
    assert len(list((tmp / "v.parquet.parts").glob("part-*.parquet"))) == 1 and not (tmp / "v.parquet").exists()
    calls.clear()
    monkeypatch.setattr(model, "encode_waves", lambda w, b=16, t=None: (calls.append(len(w)), real(w, b, t))[1])
    s = embed_folder(lib, model, tmp / "v.parquet", batch_size=1, progress=False)
    assert (s.embedded, s.reused, len(calls)) == (2, 1, 2)
    first = read_vectors(tmp / "v.parquet")[0]
    shutil.copy(lib / "c0.wav", lib / "copy-of-c0.wav")
    (lib / "c1.wav").rename(lib / "renamed.wav")
    calls.clear()
    s = embed_folder(lib, model, tmp / "v.parquet", progress=False)
    assert (s.embedded, s.reused, s.rows, calls) == (0, 4, 4, [])
    df = read_vectors(tmp / "v.parquet")[0].set_index("path")
    np.testing.assert_array_equal(df.loc["copy-of-c0.wav", "vector"], df.loc["c0.wav", "vector"])
    np.testing.assert_array_equal(df.loc["renamed.wav", "vector"], first.set_index("path").loc["c1.wav", "vector"])


def test_segments_get_their_own_rows_and_times(setup, monkeypatch):
    import claspkit.search.segment as seg

    lib, model, tmp = setup
    monkeypatch.setattr(seg, "segment", lambda audio, sr, params: [(0.0, 0.2), (0.25, len(audio) / sr)]
                        if len(audio) > SR else [(0.0, len(audio) / sr)])
    s = embed_folder(lib, model, tmp / "s.parquet", segment=True, progress=False)
    df, settings = read_vectors(tmp / "s.parquet")
    assert s.rows == 4 and list(df.id) == ["c0.wav#0", "c1.wav#0", "c1.wav#1", "sub/c2.wav#0"]
    assert df.loc[2, "start_s"] == 0.25 and df.loc[2, "end_s"] == pytest.approx(1.3)
    assert settings["segmentation"].startswith("silero-vad:")
    # another model: nothing is reused, and parts a crashed run of the first model left are not mixed in
    (tmp / "s.parquet.parts").mkdir()
    shutil.copy(tmp / "s.parquet", tmp / "s.parquet.parts" / "part-000000.parquet")
    (tmp / "s.parquet.parts" / "settings.json").write_text(json.dumps(settings))
    other = CLASP.from_pretrained(concat_checkpoint(tmp / "m2", seed=1))
    assert embed_folder(lib, other, tmp / "s.parquet", segment=True, progress=False).reused == 0
    np.testing.assert_allclose(np.stack(read_vectors(tmp / "s.parquet")[0].vector),
                               other.encode_waves([w for p in ("c0.wav", "c1.wav", "sub/c2.wav") for w in
                                                   _segments(lib / p)]), atol=1e-6)


def _segments(path):
    """What the patched VAD of the test above cuts from ``path``, as embed_folder cuts it."""
    import claspkit.search.segment as seg
    from claspkit.data.audio import load_audio
    from claspkit.search.query import cut_segments

    audio = load_audio(path)
    return cut_segments(audio, seg.segment(audio, SR, None))


def test_bad_arguments_fail_clearly(setup):
    lib, model, tmp = setup
    with pytest.raises(ParamError, match=r"\.parquet"):
        embed_folder(lib, model, tmp / "v.csv")
    with pytest.raises(DataMissingError, match="does not exist"):
        embed_folder(tmp / "nowhere", model, tmp / "v.parquet")
    with pytest.raises(DataMissingError, match="claspkit embed"):
        read_vectors(tmp / "none.parquet")


def test_cli_embed_prints_a_json_summary(setup, capsys):
    from claspkit.cli import main

    lib, _, tmp = setup
    assert main(["embed", str(lib), "--model", str(tmp / "m"), "--out", str(tmp / "c.parquet"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 3 and out["embedded"] == 3 and len(out["skipped"]) == 2
