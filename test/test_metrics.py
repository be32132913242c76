"""Depth metrics against hand-computed values, validity rules, crops, median scaling, averaging."""
import math

import numpy as np
import pytest
import torch

from training.metrics import (
    BTS_EIGEN_CROP,
    METRIC_KEYS,
    MetricAccumulator,
    eigen_crop_mask,
    eval_depth,
    garg_crop_mask,
    median_scale,
)

# Hand example, 2x2.  ratio = pred / gt = 1.1, 1.5, 1.9, 0.25
GT = np.array([[1.0, 2.0], [4.0, 8.0]])
PRED = np.array([[1.1, 3.0], [7.6, 2.0]])


def test_keys_in_literature_order():
    assert METRIC_KEYS == ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10",
                           "silog")
    assert tuple(eval_depth(PRED, GT)) == METRIC_KEYS


def test_each_metric_by_hand():
    m = eval_depth(PRED, GT)
    # max(ratio, 1/ratio) = 1.1, 1.5, 1.9, 4.0
    # d1 (< 1.25): only 1.1 -> 1/4; d2 (< 1.5625): 1.1, 1.5 -> 2/4; d3 (< 1.953125): 3/4
    assert m["d1"] == pytest.approx(0.25)
    assert m["d2"] == pytest.approx(0.5)
    assert m["d3"] == pytest.approx(0.75)
    # |pred - gt| = 0.1, 1, 3.6, 6; / gt = 0.1, 0.5, 0.9, 0.75 -> sum 2.25 / 4
    assert m["abs_rel"] == pytest.approx(0.5625)
    # (pred - gt)^2 / gt = 0.01, 0.5, 3.24, 4.5 -> sum 8.25 / 4
    assert m["sq_rel"] == pytest.approx(2.0625)
    # sqrt((0.01 + 1 + 12.96 + 36) / 4) = sqrt(12.4925) = 3.534473
    assert m["rmse"] == pytest.approx(3.534473, abs=1e-6)
    # g = ln ratio = 0.0953102, 0.4054651, 0.6418539, -1.3862944
    # mean g^2 = (0.0090840 + 0.1644020 + 0.4119764 + 1.9218121) / 4 = 0.6268186
    assert m["rmse_log"] == pytest.approx(math.sqrt(0.6268186), abs=1e-6)  # 0.791719
    # |log10 ratio| = 0.0413927, 0.1760913, 0.2787536, 0.6020600 -> mean 0.2745744
    assert m["log10"] == pytest.approx(0.2745744, abs=1e-6)
    # mean g = -0.0609163; 100 * sqrt(0.6268186 - 0.0609163^2) = 100 * sqrt(0.6231078)
    assert m["silog"] == pytest.approx(78.93718, abs=1e-4)


def test_perfect_prediction():
    gt = np.array([[0.5, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 9.5]])
    m = eval_depth(gt.copy(), gt)
    assert m["d1"] == m["d2"] == m["d3"] == 1.0
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
        assert m[key] == pytest.approx(0.0, abs=1e-9), key


def test_invalid_pixels_excluded():
    # The hand example sits in the first row / column block; every other pixel is invalid:
    # gt 0, gt NaN, gt 12 > max, gt 10 = max (open interval), gt inf, and one masked out.
    gt = np.array([[1.0, 2.0, 0.0],
                   [4.0, 8.0, np.nan],
                   [12.0, 10.0, np.inf]])
    pred = np.array([[1.1, 3.0, 5.0],
                     [7.6, 2.0, 5.0],
                     [1.0, 1.0, 5.0]])
    m = eval_depth(pred, gt)
    assert m == pytest.approx(eval_depth(PRED, GT))
    # A mask removes a valid pixel: ratios 1.1, 1.5, 1.9 left -> d3 = 1, abs_rel = 1.5 / 3
    mask = np.ones_like(gt, dtype=bool)
    mask[1, 1] = False
    m = eval_depth(pred, gt, mask)
    assert m["d3"] == pytest.approx(1.0)
    assert m["abs_rel"] == pytest.approx(0.5)


def test_predictions_clipped_like_bts():
    gt = np.array([[5.0, 2.0]])
    pred = np.array([[20.0, -1.0]])  # -> clipped to 10 and to min_depth 1e-3
    m = eval_depth(pred, gt, max_depth=10.0)
    # |10 - 5| / 5 = 1, |0.001 - 2| / 2 = 0.9995
    assert m["abs_rel"] == pytest.approx((1.0 + 0.9995) / 2)
    assert np.isfinite(m["silog"]) and np.isfinite(m["log10"])


def test_no_valid_pixel_gives_nan():
    m = eval_depth(np.ones((2, 2)), np.zeros((2, 2)))
    assert all(math.isnan(v) for v in m.values())


def test_torch_input_and_channel_dim():
    m = eval_depth(torch.tensor(PRED)[None], torch.tensor(GT)[None])
    assert m["abs_rel"] == pytest.approx(0.5625)


def test_eigen_crop_bounds_480x640():
    mask = eigen_crop_mask(480, 640)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (45, 471, 46, 601)
    assert mask.sum() == (471 - 45) * (601 - 46)
    bts = eigen_crop_mask(480, 640, bounds=BTS_EIGEN_CROP)
    assert np.flatnonzero(bts.any(axis=0))[0] == 41


def test_eigen_crop_scales_with_image_size():
    mask = eigen_crop_mask(960, 1280)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (90, 942, 92, 1202)


def test_garg_crop_bounds_375x1242():
    mask = garg_crop_mask(375, 1242)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    # int(0.40810811 * 375) = 153, int(0.99189189 * 375) = 371,
    # int(0.03594771 * 1242) = 44, int(0.96405229 * 1242) = 1197
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)
    assert mask.sum() == 218 * 1153


def test_median_scale_recovers_scaled_prediction():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 8.0, (6, 7))
    pred = gt * 0.37
    mask = np.ones_like(gt, dtype=bool)
    mask[0, :] = False
    pred[0, :] = 1000.0  # outliers outside the mask must not move the median
    scaled = median_scale(pred, gt, mask)
    np.testing.assert_allclose(scaled[mask], gt[mask], rtol=1e-12)
    scaled_t = median_scale(torch.tensor(pred), torch.tensor(gt), torch.tensor(mask))
    assert isinstance(scaled_t, torch.Tensor)
    np.testing.assert_allclose(scaled_t.numpy()[mask], gt[mask], rtol=1e-12)


def test_accumulator_averages_per_image_not_per_pixel():
    acc = MetricAccumulator(max_depth=10.0)
    # image A: 4 valid pixels, perfect -> abs_rel 0
    acc.update(np.ones((2, 2)), np.ones((2, 2)))
    # image B: 1 valid pixel, pred 3 vs gt 2 -> abs_rel 0.5 (torch input, 1xHxW)
    gt_b = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])
    acc.update(torch.full((1, 2, 2), 3.0), gt_b)
    result = acc.compute()
    assert result["n_images"] == 2
    assert result["abs_rel"] == pytest.approx(0.25)  # per-pixel pooling would give 0.1
    assert result["d1"] == pytest.approx(0.5)  # A: 1, B: 3/2 = 1.5 >= 1.25 -> 0
    # an image without valid pixels is not averaged in
    acc.update(np.ones((2, 2)), np.zeros((2, 2)))
    assert acc.compute()["n_images"] == 2
    assert acc.n_empty == 1


def test_accumulator_batch_update():
    acc = MetricAccumulator()
    pred = np.stack([np.ones((2, 2)), np.full((2, 2), 3.0)])[:, None]
    gt = np.stack([np.ones((2, 2)), np.full((2, 2), 2.0)])[:, None]
    acc.update_batch(pred, gt)
    assert acc.compute()["abs_rel"] == pytest.approx(0.25)
