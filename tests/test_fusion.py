import pytest
import torch
from torch import nn

from claspkit.errors import ParamError
from claspkit.fusion import ConcatFusion, GatingFusion, build_fusion, count_parameters


def cfg(**kw):
    base = {"fusion": "concat", "branches": "combined", "speech_dim": 1024, "image_dim": 1000,
            "out_dim": 768, "dropout_scale": 1.0}
    return {**base, **kw}


def test_paper_concat_parameter_count():
    # Branch(1024): 1024*768+768 + 2*768 + 768*576+576 + 2*576 + 576*768+768 = 1,675,968
    # Branch(1000): 1,657,536 ; head: 1536*1024+1024 + 2*1024 + 1024*800+800 + 800*768+768 = 3,011,104
    model = build_fusion(cfg())
    assert isinstance(model, ConcatFusion)
    assert count_parameters(model) == 6_344_608


def describe(m):
    if isinstance(m, nn.Linear):
        return ("Linear", m.in_features, m.out_features)
    if isinstance(m, nn.BatchNorm1d):
        return ("BN", m.num_features)
    return ("Dropout", m.p)


def test_paper_layer_sequence():
    model = build_fusion(cfg())
    seq = [describe(m) for m in model.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d, nn.Dropout))]
    branch = lambda d: [("Linear", d, 768), ("BN", 768), ("Dropout", 0.15),
                        ("Linear", 768, 576), ("BN", 576), ("Dropout", 0.1), ("Linear", 576, 768)]
    head = [("Linear", 1536, 1024), ("BN", 1024), ("Linear", 1024, 800), ("Linear", 800, 768)]
    assert seq == branch(1024) + branch(1000) + head


@pytest.mark.parametrize("fusion", ["concat", "gating"])
@pytest.mark.parametrize("branches", ["combined", "speech", "image"])
def test_shapes_and_single_branch_ignores_other_input(fusion, branches):
    torch.manual_seed(0)
    model = build_fusion(cfg(fusion=fusion, branches=branches, speech_dim=384, image_dim=1280, out_dim=384)).eval()
    s, i = torch.randn(5, 384), torch.randn(5, 1280)
    out = model(s, i)
    assert out.shape == (5, 384) and torch.isfinite(out).all()
    if branches == "speech":
        assert torch.equal(model(s, None), out)
        assert not hasattr(model, "image_branch")
    if branches == "image":
        assert torch.equal(model(None, i), out)
    if branches == "combined":
        with pytest.raises(ParamError, match="image features"):
            model(s, None)


def test_single_branch_heads_are_sized_for_one_branch():
    concat = build_fusion(cfg(branches="speech"))
    assert concat.head[0].in_features == 768
    gating = build_fusion(cfg(fusion="gating", branches="image", out_dim=512))
    assert gating.mixer.in_features == 512 and len(gating.gates) == 1
    assert build_fusion(cfg(fusion="gating")).mixer.in_features == 1536


def test_gating_output_is_convex_mix_of_gated_branches():
    torch.manual_seed(0)
    model = GatingFusion(16, 8, 12).eval()
    s, i = torch.randn(3, 16), torch.randn(3, 8)
    x1, x2 = (g(x) for g, x in zip(model.gates, model.branch_outputs(s, i)))
    w = torch.softmax(model.mixer(torch.cat([x1, x2], 1)), 1)
    expect = w[:, :12] * x1 + w[:, 12:] * x2
    assert torch.allclose(model(s, i), expect, atol=1e-6)


def test_dropout_scale_and_config_roundtrip():
    model = build_fusion(cfg(dropout_scale=0.0, out_dim=384))
    assert all(m.p == 0 for m in model.modules() if isinstance(m, nn.Dropout))
    again = build_fusion({**model.config, "lr": 1e-3})  # extra keys are ignored
    assert again.config == model.config and count_parameters(again) == count_parameters(model)


@pytest.mark.parametrize("bad,match", [
    ({"fusion": "attention"}, "concat, gating"),
    ({"branches": "text"}, "combined, image, speech"),
    ({"speech_dim": None}, "speech_dim"),
    ({"dropout_scale": 7.0}, "dropout_scale"),
])
def test_bad_config_names_choices(bad, match):
    with pytest.raises(ParamError, match=match):
        build_fusion(cfg(**bad))
