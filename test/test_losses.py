"""Depth losses: values by hand, masking, empty masks, gradients."""
import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import (GradientMatchingLoss, MoASiLogLoss, SiLogLoss, bin_cross_entropy,
                             l1_loss)


def _depth(seed: int = 0, shape=(2, 1, 8, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64) * 5 + 0.5


def test_silog_scale_invariant_variant_is_zero():
    gt = _depth()
    loss = SiLogLoss(lambd=1.0)
    pred = gt.clone().requires_grad_(True)
    value = loss(pred, gt, gt > 0)
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    value.backward()
    assert torch.isfinite(pred.grad).all()  # sqrt(0) must not give NaN gradients
    assert loss(gt * 2.7, gt, gt > 0).item() == pytest.approx(0.0, abs=1e-5)
    # lambd = 0.85 is not scale invariant: 10 * sqrt(0.15) * ln 2.7
    assert SiLogLoss()(gt * 2.7, gt, gt > 0).item() == pytest.approx(
        10 * math.sqrt(0.15) * math.log(2.7), rel=1e-6)


def test_silog_bts_form_by_hand():
    gt = torch.tensor([2.0, 3.0], dtype=torch.float64)
    pred = gt * torch.exp(torch.tensor([0.0, 1.0], dtype=torch.float64))  # g = 0, 1
    # mean(g^2) = 0.5, mean(g)^2 = 0.25 -> 10 * sqrt(0.5 - 0.85 * 0.25) = 10 * sqrt(0.2875)
    value = SiLogLoss()(pred, gt, torch.ones(2, dtype=torch.bool))
    assert value.item() == pytest.approx(5.3619026, abs=1e-6)


def test_moa_silog_by_hand():
    gt = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)
    pred = gt * torch.exp(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))  # g = 0, 1, 2
    # Var(g) = (1 + 0 + 1) / 3 = 2/3 (population), Mean(g) = 1 -> 10 * (2/3 + 0.85) = 15.1666..
    value = MoASiLogLoss()(pred, gt, torch.ones(3, dtype=torch.bool))
    assert value.item() == pytest.approx(10 * (2 / 3 + 0.85), abs=1e-9)


@pytest.mark.parametrize("loss", [SiLogLoss(), MoASiLogLoss(), l1_loss, GradientMatchingLoss()])
def test_mask_respected(loss):
    gt = _depth(1)
    pred = gt * 1.3 + 0.1
    mask = torch.ones_like(gt, dtype=torch.bool)
    mask[:, :, :, :3] = False
    garbage = pred.clone()
    garbage[~mask] = 1e4
    assert loss(garbage, gt, mask).item() == pytest.approx(loss(pred, gt, mask).item(), rel=1e-9)
    # target 0 (missing depth) is never used even when the mask says True
    gt_holes = gt.clone()
    gt_holes[~mask] = 0.0
    assert loss(pred, gt_holes, None).item() == pytest.approx(loss(pred, gt, mask).item(),
                                                              rel=1e-9)


@pytest.mark.parametrize("loss", [SiLogLoss(), MoASiLogLoss(), l1_loss, GradientMatchingLoss()])
def test_empty_mask_gives_zero_and_backward_works(loss):
    gt = _depth(2)
    pred = (gt * 1.5).requires_grad_(True)
    value = loss(pred, gt, torch.zeros_like(gt, dtype=torch.bool))
    assert value.ndim == 0 and value.item() == 0.0
    value.backward()
    assert pred.grad is not None and torch.count_nonzero(pred.grad) == 0


def test_l1_by_hand():
    gt = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    pred = torch.tensor([[1.5, 1.0], [3.0, 9.0]])
    # |0.5| + |-1| + 0 over 3 valid pixels (gt 0 is invalid) = 0.5
    assert l1_loss(pred, gt, None).item() == pytest.approx(0.5)


def test_bin_cross_entropy_targets_nearest_bin():
    centres = torch.tensor([1.0, 2.0, 4.0, 8.0])
    depth = torch.tensor([[[[2.9, 3.1], [7.0, 0.0]]]])  # nearest: 2 (idx 1), 4 (idx 2), 8 (idx 3)
    logits = torch.zeros(1, 4, 2, 2, requires_grad=True)
    # uniform logits: CE = ln 4 for each of the 3 valid pixels
    value = bin_cross_entropy(logits, depth, centres, depth > 0)
    assert value.item() == pytest.approx(math.log(4))
    value.backward()
    assert logits.grad[0, :, 1, 1].abs().sum() == 0  # the invalid pixel gets no gradient
    # confident logits on the nearest bins give ~0; on the next bin a large loss
    right = torch.full((1, 4, 2, 2), -20.0)
    right[0, 1, 0, 0] = right[0, 2, 0, 1] = right[0, 3, 1, 0] = 20.0
    assert bin_cross_entropy(right, depth, centres).item() < 1e-6
    wrong = torch.full((1, 4, 2, 2), -20.0)
    wrong[0, 2, 0, 0] = wrong[0, 1, 0, 1] = wrong[0, 2, 1, 0] = 20.0
    expected = F.cross_entropy(wrong.permute(0, 2, 3, 1).reshape(-1, 4)[:3],
                               torch.tensor([1, 2, 3]))
    assert bin_cross_entropy(wrong, depth, centres).item() == pytest.approx(expected.item())
    assert expected.item() > 30


def test_gradient_matching_zero_for_log_offset_and_positive_for_structure():
    gt = _depth(3, (2, 1, 16, 16))
    loss = GradientMatchingLoss(scales=4)
    assert loss(gt * 3.0, gt, gt > 0).item() == pytest.approx(0.0, abs=1e-12)
    bumped = gt * 3.0
    bumped[:, :, 4:8, 4:8] *= 1.5  # a local change of relative depth
    pred = bumped.clone().requires_grad_(True)
    value = loss(pred, gt, gt > 0)
    assert value.item() > 0.1
    value.backward()
    assert torch.isfinite(pred.grad).all()


def test_gradient_matching_by_hand_one_scale():
    gt = torch.ones(1, 1, 1, 3, dtype=torch.float64)
    pred = torch.tensor([[[[1.0, math.e, 1.0]]]], dtype=torch.float64)  # log residual 0, 1, 0
    # x-gradients |1 - 0| + |0 - 1| = 2 over 3 valid pixels
    assert GradientMatchingLoss(scales=1)(pred, gt, None).item() == pytest.approx(2 / 3)


def test_silog_lambda_sets_how_much_a_global_scale_error_costs():
    gt = torch.rand(1, 1, 8, 8) + 0.5
    scaled = gt * 1.5  # a pure per-image scale error: Var(g) = 0, mean(g) = log 1.5
    for lambd in (0.85, 0.5):
        expected = 10 * math.sqrt(1 - lambd) * math.log(1.5)
        assert SiLogLoss(lambd=lambd)(scaled, gt).item() == pytest.approx(expected, rel=1e-4)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="lambda"):
            SiLogLoss(lambd=bad)


def test_train_config_silog_lambda_reaches_the_objective():
    from clip_depth_ros.model import create_model
    from training.objectives import DepthObjective

    model = create_model("tiny-mirror", backbone_weights="random")
    assert DepthObjective(model, silog_lambda=0.5).silog.lambd == 0.5
    assert DepthObjective(model).silog.lambd == 0.85
