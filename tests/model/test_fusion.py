import pytest
import torch
from torch import nn

from claspkit.errors import ParamError
from claspkit.model.fusion import (AttentionFusion, ConcatFusion, GatingFusion, StatsFusion, build_fusion,
                                   count_parameters, masked_mean_std)


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
    ({"fusion": "transformer"}, "attention, concat, gating"),
    ({"branches": "text"}, "combined, image, speech"),
    ({"speech_dim": None}, "speech_dim"),
    ({"dropout_scale": 7.0}, "dropout_scale"),
])
def test_bad_config_names_choices(bad, match):
    with pytest.raises(ParamError, match=match):
        build_fusion(cfg(**bad))


# ------------------------------------------------------------------ the attention head (beyond the paper)
def att(**kw):
    return cfg(**{"fusion": "attention", "speech_dim": 512, "image_dim": 1280, "out_dim": 384, **kw})


@pytest.mark.parametrize("branches,expect", [("combined", 3_188_032), ("speech", 1_020_544)])
def test_attention_parameter_count(branches, expect):
    # whisper-base frames (512) + efficientnet-lite0 (1280) -> e5 (384), d_model 256, 1 layer, 4 heads:
    # frame_proj 131,328 + cls 256 + layer 789,760 (attention 263,168, FFN 525,568, 2 LayerNorms 1,024)
    # + final LayerNorm 512 + head 98,688 (speech) | image branch 1,872,576 + head 393,600 (combined)
    model = build_fusion(att(branches=branches))
    assert isinstance(model, AttentionFusion) and count_parameters(model) == expect
    assert count_parameters(build_fusion(att(branches=branches, attention_layers=2))) == expect + 789_760


def padded(items):
    x = torch.zeros(len(items), max(len(i) for i in items), items[0].shape[1])
    for b, i in enumerate(items):
        x[b, :len(i)] = i
    return x, torch.tensor([len(i) for i in items])


@pytest.mark.parametrize("branches", ["combined", "speech"])
def test_attention_embedding_is_the_same_alone_and_in_a_padded_batch(branches):
    torch.manual_seed(0)
    model = build_fusion(att(branches=branches, attention_layers=2)).eval()
    items = [torch.randn(t, 512) for t in (9, 1, 23, 4)]
    image = torch.randn(4, 1280)
    x, lengths = padded(items)
    with torch.no_grad():
        batch = model(x, image, lengths=lengths)
        alone = torch.cat([model(i[None], image[b:b + 1]) for b, i in enumerate(items)])
        x[0, 9:] = 1e3                                      # whatever the padding holds
        garbage = model(x, image, lengths=lengths)
    assert batch.shape == (4, 384) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(garbage, batch, atol=1e-5, rtol=0)
    with torch.no_grad():
        assert torch.equal(model(x, image, lengths=lengths), garbage)     # deterministic in eval mode
    if branches == "speech":
        assert not hasattr(model, "image_branch")
        with torch.no_grad():
            assert torch.equal(model(x, None, lengths=lengths), garbage)


def test_attention_config_is_json_and_rebuilds_the_same_model():
    import json

    model = build_fusion(att(attention_dim=64, attention_heads=8, attention_layers=2, dropout_scale=0.5))
    assert json.loads(json.dumps(model.config)) == model.config
    assert model.config["attention_dim"] == 64 and model.config["fusion"] == "attention"
    again = build_fusion({**model.config, "lr": 1e-3})
    assert again.config == model.config and count_parameters(again) == count_parameters(model)
    assert model.encoder.layers[0].dropout.p == pytest.approx(0.1 * 0.5)    # transformer dropout x dropout_scale


@pytest.mark.parametrize("bad,match", [
    ({"branches": "image"}, "nothing to attend"),
    ({"attention_dim": 100, "attention_heads": 8}, "divisible"),
    ({"attention_layers": 0}, "attention_layers"),
    ({"speech_dim": None}, "speech_dim"),
])
def test_bad_attention_config_says_what_to_do(bad, match):
    with pytest.raises(ParamError, match=match):
        build_fusion(att(**bad))


def test_attention_head_refuses_mean_pooled_features():
    model = build_fusion(att(branches="speech")).eval()
    with pytest.raises(ParamError, match="frame features"):
        model(torch.randn(3, 512), None)


def stats(**kw):
    return att(**{"fusion": "stats", **kw})


@pytest.mark.parametrize("branches,expect", [("combined", 11_022_720), ("speech", 5_779_840)])
def test_stats_parameter_count(branches, expect):
    # [mean, std] of whisper-base frames (2 x 512) (+ efficientnet-lite0's 1280) -> 4096 -> e5 (384):
    # Linear 2304*4096+4096 (speech: 1024*4096+4096) + LayerNorm 8,192 + Linear 4096*384+384; the input
    # BatchNorm has no affine weights
    model = build_fusion(stats(branches=branches))
    assert isinstance(model, StatsFusion) and count_parameters(model) == expect
    assert count_parameters(build_fusion(stats(branches=branches, stats_hidden=8))) < expect / 400


def test_masked_mean_std_ignores_padding():
    items = [torch.randn(t, 6) for t in (5, 1, 3)]
    x, lengths = padded(items)
    x[1, 1:] = 1e3
    mean, std = masked_mean_std(x, lengths)
    for b, i in enumerate(items):
        torch.testing.assert_close(mean[b], i.mean(0))
        torch.testing.assert_close(std[b], i.std(0, unbiased=False).clamp_min(1e-4), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("branches", ["combined", "speech"])
def test_stats_embedding_is_the_same_alone_and_in_a_padded_batch(branches):
    torch.manual_seed(0)
    model = build_fusion(stats(branches=branches, stats_hidden=64))
    items = [torch.randn(t, 512) for t in (9, 1, 23, 4)]
    image = torch.randn(4, 1280)
    x, lengths = padded(items)
    model.train()
    model(x, image, lengths=lengths)                    # BatchNorm statistics that are not the identity
    model.eval()
    with torch.no_grad():
        batch = model(x, image, lengths=lengths)
        alone = torch.cat([model(i[None], image[b:b + 1]) for b, i in enumerate(items)])
        x[0, 9:] = 1e3
        garbage = model(x, image, lengths=lengths)
    assert batch.shape == (4, 384) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(garbage, batch, atol=1e-5, rtol=0)
    if branches == "speech":
        with torch.no_grad():
            assert torch.equal(model(x, None, lengths=lengths), garbage)


def test_stats_config_is_json_rebuilds_the_same_model_and_scales_its_dropout():
    import json

    model = build_fusion(stats(stats_hidden=32, dropout_scale=0.5))
    assert json.loads(json.dumps(model.config)) == model.config
    assert model.config["stats_hidden"] == 32 and model.config["fusion"] == "stats"
    again = build_fusion({**model.config, "lr": 1e-3})
    assert again.config == model.config and count_parameters(again) == count_parameters(model)
    assert [m.p for m in model.mlp if isinstance(m, nn.Dropout)] == pytest.approx([0.175, 0.35])


@pytest.mark.parametrize("bad,match", [
    ({"branches": "image"}, "nothing to pool"),
    ({"stats_hidden": 0}, "stats_hidden"),
    ({"dropout_scale": 1.5}, "dropout_scale"),
    ({"speech_dim": None}, "speech_dim"),
])
def test_bad_stats_config_says_what_to_do(bad, match):
    with pytest.raises(ParamError, match=match):
        build_fusion(stats(**bad))


def test_stats_head_refuses_mean_pooled_features():
    with pytest.raises(ParamError, match="frame features"):
        build_fusion(stats(branches="speech")).eval()(torch.randn(3, 512), None)


def test_stats_ensemble_averages_unit_member_outputs_and_keeps_single_configs_as_they_were():
    torch.manual_seed(0)
    single = build_fusion(stats(stats_hidden=16))
    assert "stats_members" not in single.config and single.n_members == 1
    model = build_fusion(stats(stats_hidden=16, stats_members=3))
    assert model.config["stats_members"] == 3
    assert count_parameters(model) == 3 * count_parameters(single)      # the input BatchNorm has no weights
    items = [torch.randn(t, 512) for t in (9, 1, 23, 4)]
    x, lengths = padded(items)
    image = torch.randn(4, 1280)
    model.train()
    model(x, image, lengths=lengths)
    model.eval()
    with torch.no_grad():
        outs = model.member_outputs(x, image, lengths=lengths)
        out = model(x, image, lengths=lengths)
        alone = torch.cat([model(i[None], image[b:b + 1]) for b, i in enumerate(items)])
    assert outs.shape == (3, 4, 384) and not torch.allclose(outs[0], outs[1])  # members differ
    torch.testing.assert_close(out, nn.functional.normalize(outs, dim=-1).mean(0))
    torch.testing.assert_close(out, alone, atol=1e-5, rtol=0)
    again = build_fusion(model.config)
    assert again.config == model.config and count_parameters(again) == count_parameters(model)
    with pytest.raises(ParamError, match="stats_members"):
        build_fusion(stats(stats_members=0))


def test_stats_head_takes_its_pooling_computed_once():
    torch.manual_seed(0)
    model = build_fusion(stats(stats_hidden=16)).eval()
    x, lengths = padded([torch.randn(t, 512) for t in (9, 1, 23)])
    image = torch.randn(3, 1280)
    with torch.no_grad():
        torch.testing.assert_close(model(StatsFusion.pool(x, lengths), image, pooled=True),
                                   model(x, image, lengths=lengths), atol=1e-6, rtol=0)
    with pytest.raises(ParamError, match="pooled=True"):
        model(torch.randn(3, 512), image, pooled=True)          # mean-pooled features are not the [mean, std]
