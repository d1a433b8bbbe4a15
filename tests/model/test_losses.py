import math

import numpy as np
import pytest
import torch

from claspkit.errors import ParamError
from claspkit.model.losses import ClipLoss, HuberLoss, build_loss


def reference_clip(a, b, scale):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = scale * a @ b.T

    def ce(z):  # mean over rows of -log softmax(z)[i, i]
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - np.diag(z)))

    return (ce(logits) + ce(logits.T)) / 2


def test_clip_loss_matches_hand_computation_and_is_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    loss = ClipLoss(tau=0.07)
    got = loss(torch.tensor(a), torch.tensor(b)).item()
    assert got == pytest.approx(reference_clip(a, b, 1 / 0.07), rel=1e-6)
    assert loss(torch.tensor(b), torch.tensor(a)).item() == pytest.approx(got, rel=1e-6)
    # cosine: rescaling either side changes nothing
    assert loss(torch.tensor(3 * a), torch.tensor(b)).item() == pytest.approx(got, rel=1e-6)


def test_tau_bug_keeps_loss_near_ln_batch_even_for_a_perfect_match():
    batch = 32
    x = torch.eye(batch, 64)  # perfectly aligned, mutually orthogonal pairs
    assert ClipLoss(0.07)(x, x).item() < 1e-4
    bugged = ClipLoss(0.07, tau_bug=True)(x, x).item()
    # logits within [-tau, tau]: the loss can never go below log(1 + (B-1) e^{-2 tau})
    floor = math.log(1 + (batch - 1) * math.exp(-2 * 0.07))
    assert floor > math.log(batch) - 0.15
    assert floor <= bugged <= math.log(batch)
    assert bugged == pytest.approx(reference_clip(x.numpy(), x.numpy(), 0.07), rel=1e-6)


def test_learnable_scale_starts_at_one_over_tau_learns_and_is_clamped():
    loss = ClipLoss(tau=0.07, learnable_scale=True)
    assert [n for n, _ in loss.named_parameters()] == ["logit_scale"]
    assert loss.scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    loss(a, b).backward()
    assert loss.logit_scale.grad is not None and loss.logit_scale.grad.abs() > 0
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1000.0))
    assert loss.scale().item() == pytest.approx(100.0, rel=1e-6)
    assert loss(a, b).item() == pytest.approx(reference_clip(a.numpy(), b.numpy(), 100.0), rel=1e-5)
    assert list(ClipLoss().parameters()) == []


def test_huber_quadratic_and_linear_regions():
    out = torch.tensor([[0.0, 0.0]])
    text = torch.tensor([[0.5, 2.0]])  # |err| 0.5 <= delta: 0.5*0.25 ; 2.0 > delta: 0.6*(2 - 0.3)
    expect = (0.5 * 0.25 + 0.6 * (2.0 - 0.3)) / 2
    assert HuberLoss(0.6)(out, text).item() == pytest.approx(expect)


def test_build_loss():
    assert isinstance(build_loss("contrastive", tau=0.1, huber_delta=0.6), ClipLoss)
    h = build_loss("huber", huber_delta=0.3, tau=0.07, learnable_scale=True)
    assert isinstance(h, HuberLoss) and h.delta == 0.3
    with pytest.raises(ParamError, match="contrastive, huber"):
        build_loss("triplet")
    with pytest.raises(ParamError, match="temperature"):
        build_loss("contrastive", temperature=0.1)
    with pytest.raises(ParamError, match="learnable_scale"):
        build_loss("contrastive", tau_bug=True, learnable_scale=True)
    with pytest.raises(ParamError, match="tau"):
        ClipLoss(tau=0)


def test_a_scale_beyond_the_clamp_gets_no_gradient():
    """CLIP's clamp at 100: past it the scale stops learning (so a large scale_lr cannot run away)."""
    loss = ClipLoss(tau=0.07, learnable_scale=True)
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(200.0))
    loss(torch.randn(8, 4), torch.randn(8, 4)).backward()
    assert loss.scale().item() == pytest.approx(100.0) and loss.logit_scale.grad.item() == 0.0


def test_label_smoothing_matches_hand_computation_and_is_checked():
    torch.manual_seed(0)
    s, t = torch.randn(4, 8), torch.randn(4, 8)
    eps, n = 0.1, 4
    logits = (torch.nn.functional.normalize(s, dim=1) @ torch.nn.functional.normalize(t, dim=1).T) / 0.07

    def smoothed(lg):
        logp = torch.log_softmax(lg, dim=1)
        target = torch.full((n, n), eps / n) + torch.eye(n) * (1 - eps)
        return -(target * logp).sum(1).mean()

    expect = (smoothed(logits) + smoothed(logits.T)) / 2
    torch.testing.assert_close(ClipLoss(label_smoothing=eps)(s, t), expect)
    perfect = torch.eye(4)
    assert float(ClipLoss(label_smoothing=eps)(perfect, perfect)) > float(ClipLoss()(perfect, perfect)) + 0.1
    assert build_loss("contrastive", label_smoothing=eps).label_smoothing == eps
    for bad in (1.0, -0.1, True):
        with pytest.raises(ParamError, match="label_smoothing"):
            ClipLoss(label_smoothing=bad)
