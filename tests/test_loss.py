import pytest
import segmentation_models_pytorch as smp
import torch

from plinknet.loss import DiceBCELoss


@pytest.mark.parametrize("seed", range(5))
def test_equals_smp_bce_plus_dice(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 1, 32, 32, generator=g) * 3
    target = (torch.rand(4, 1, 32, 32, generator=g) > 0.7).float()
    reference = smp.losses.SoftBCEWithLogitsLoss()(logits, target) + smp.losses.DiceLoss(
        "binary", from_logits=True
    )(logits, target)
    assert torch.allclose(DiceBCELoss()(logits, target), reference, atol=1e-6)


def test_weights():
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    bce = DiceBCELoss(1, 0)(logits, target)
    dice = DiceBCELoss(0, 1)(logits, target)
    assert torch.allclose(DiceBCELoss(2, 3)(logits, target), 2 * bce + 3 * dice)
    assert 0 < dice < 1


def test_stable_for_large_logits_and_empty_targets():
    target = torch.zeros(2, 1, 8, 8)
    for scale in (1e4, -1e4):
        logits = torch.full((2, 1, 8, 8), scale, requires_grad=True)
        loss = DiceBCELoss()(logits, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # confident and right: ~0; confident and wrong: large but finite
    assert DiceBCELoss()(torch.full((1, 1, 4, 4), -50.0), torch.zeros(1, 1, 4, 4)) < 1e-6
    target[0, 0, :4] = 1
    assert DiceBCELoss()(torch.full((2, 1, 8, 8), -50.0), target) > 1


def test_perfect_prediction_is_near_zero():
    target = (torch.rand(2, 1, 16, 16) > 0.5).float()
    logits = (target * 2 - 1) * 30
    assert DiceBCELoss()(logits, target) < 1e-6


def test_pixels_outside_valid_do_not_count():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.6).float()
    valid = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    valid[..., :, :5] = True  # the left 5 columns are the tile, the rest padding
    garbage = logits.clone()
    garbage[..., 5:] = 40.0  # anything at all where valid is False
    left = DiceBCELoss()(logits[..., :5], target[..., :5])
    assert torch.allclose(DiceBCELoss()(garbage, target, valid), left)
    assert torch.allclose(DiceBCELoss()(logits, target, torch.ones_like(valid)), DiceBCELoss()(logits, target))
