"""Monocular depth metrics as the literature reports them (BTS / AdaBins / DepthCLIP protocol).

Every metric is computed per image over its valid pixels and then averaged over images
(``MetricAccumulator``).  Flip test-time augmentation belongs to the caller (evaluate);
median scaling is a separate, explicit step (``median_scale``) so a report can say whether it
was on.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

import numpy as np

logger = logging.getLogger(__name__)

METRIC_KEYS: tuple[str, ...] = (
    "d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")

# (row_start, row_stop, col_start, col_stop) at 480 x 640, half-open like numpy slices.
NYU_EIGEN_CROP: tuple[int, int, int, int] = (45, 471, 46, 601)  # DepthCLIP's calculate_error.py
# BTS, AdaBins, ZoeDepth and Depth-Anything use eval_mask[45:471, 41:601]; pass it as `bounds`
# to compare with those papers' numbers.
BTS_EIGEN_CROP: tuple[int, int, int, int] = (45, 471, 41, 601)
NYU_SIZE: tuple[int, int] = (480, 640)
GARG_CROP_FRACTIONS: tuple[float, float, float, float] = (
    0.40810811, 0.99189189, 0.03594771, 0.96405229)


def _to_numpy(array: Any) -> np.ndarray:
    """numpy float64 copy of a numpy array or torch tensor, squeezed to 2-D when it is 1xHxW."""
    if hasattr(array, "detach"):  # torch.Tensor without importing torch here
        array = array.detach().cpu().numpy()
    out = np.asarray(array)
    while out.ndim > 2 and out.shape[0] == 1:
        out = out[0]
    return out


def _valid_pixels(gt: np.ndarray, valid_mask: Optional[Any], min_depth: float,
                  max_depth: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if valid_mask is not None:
        mask = _to_numpy(valid_mask).astype(bool)
        if mask.shape != gt.shape:
            raise ValueError(f"valid_mask shape {mask.shape} != gt shape {gt.shape}")
        valid &= mask
    return valid


def eval_depth(pred: Any, gt: Any, valid_mask: Optional[Any] = None, min_depth: float = 1e-3,
               max_depth: float = 10.0) -> dict[str, float]:
    """Standard depth metrics of ONE image, keys in METRIC_KEYS order (NaN if no valid pixel).

    Valid pixels: gt finite and in the open interval (min_depth, max_depth), AND ``valid_mask``.
    Predictions are clipped to [min_depth, max_depth] first, as BTS does (non-finite
    predictions become min_depth / max_depth).  With g = log(pred) - log(gt):
    d_n = mean(max(pred/gt, gt/pred) < 1.25**n); abs_rel = mean(|pred-gt|/gt);
    sq_rel = mean((pred-gt)**2/gt); rmse = sqrt(mean((pred-gt)**2)); rmse_log = sqrt(mean(g**2));
    log10 = mean(|log10 pred - log10 gt|); silog = 100 * sqrt(mean(g**2) - mean(g)**2), the
    BTS / AdaBins convention (a scale-invariant log RMSE in percent, lambda = 1).
    """
    gt_np = _to_numpy(gt).astype(np.float64)
    pred_np = _to_numpy(pred).astype(np.float64)
    if pred_np.shape != gt_np.shape:
        raise ValueError(f"pred shape {pred_np.shape} != gt shape {gt_np.shape}")
    valid = _valid_pixels(gt_np, valid_mask, min_depth, max_depth)
    if not valid.any():
        return {key: math.nan for key in METRIC_KEYS}
    g_true = gt_np[valid]
    p = np.nan_to_num(pred_np[valid], nan=min_depth, posinf=max_depth, neginf=min_depth)
    p = np.clip(p, min_depth, max_depth)
    thresh = np.maximum(g_true / p, p / g_true)
    diff = p - g_true
    log_diff = np.log(p) - np.log(g_true)
    silog_var = max(float(np.mean(log_diff ** 2) - np.mean(log_diff) ** 2), 0.0)
    return {
        "d1": float(np.mean(thresh < 1.25)),
        "d2": float(np.mean(thresh < 1.25 ** 2)),
        "d3": float(np.mean(thresh < 1.25 ** 3)),
        "abs_rel": float(np.mean(np.abs(diff) / g_true)),
        "sq_rel": float(np.mean(diff ** 2 / g_true)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "rmse_log": float(np.sqrt(np.mean(log_diff ** 2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g_true)))),
        "silog": float(100.0 * np.sqrt(silog_var)),
    }


def eigen_crop_mask(h: int, w: int,
                    bounds: tuple[int, int, int, int] = NYU_EIGEN_CROP) -> np.ndarray:
    """Bool HxW NYU Eigen crop: rows 45:471, cols 46:601 at 480x640, scaled for other sizes."""
    r0, r1, c0, c1 = bounds
    if (h, w) != NYU_SIZE:
        sy, sx = h / NYU_SIZE[0], w / NYU_SIZE[1]
        # Round half up (not Python's half-to-even) so the scaled crop is predictable.
        r0, r1 = math.floor(r0 * sy + 0.5), math.floor(r1 * sy + 0.5)
        c0, c1 = math.floor(c0 * sx + 0.5), math.floor(c1 * sx + 0.5)
    mask = np.zeros((h, w), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def garg_crop_mask(h: int, w: int) -> np.ndarray:
    """Bool HxW mask of the KITTI Garg crop (BTS fractions, truncated with int() as BTS does)."""
    top, bottom, left, right = GARG_CROP_FRACTIONS
    mask = np.zeros((h, w), dtype=bool)
    mask[int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
    return mask


def median_scale(pred: Any, gt: Any, mask: Optional[Any] = None) -> Any:
    """pred * median(gt) / median(pred) over mask & both finite and > 0; same type as pred."""
    gt_np = _to_numpy(gt).astype(np.float64)
    pred_np = _to_numpy(pred).astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt_np) & (gt_np > 0) & np.isfinite(pred_np) & (pred_np > 0)
    if mask is not None:
        valid &= _to_numpy(mask).astype(bool).reshape(valid.shape)
    if not valid.any():
        raise ValueError("median_scale: no pixel is valid in both prediction and ground truth")
    scale = float(np.median(gt_np[valid]) / np.median(pred_np[valid]))
    return pred * scale


class MetricAccumulator:
    """Averages per-image metrics over images (the literature's protocol, not per pixel)."""

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0) -> None:
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._sums = {key: 0.0 for key in METRIC_KEYS}
        self.n_images = 0
        self.n_empty = 0  # images without a single valid pixel; they are not averaged

    def update(self, pred: Any, gt: Any, mask: Optional[Any] = None) -> dict[str, float]:
        """Add one image (HxW or 1xHxW; numpy or torch) and return its own metrics."""
        metrics = eval_depth(pred, gt, mask, self.min_depth, self.max_depth)
        if math.isnan(metrics["d1"]):
            self.n_empty += 1
            logger.warning("image without valid ground-truth pixels left out of the average")
            return metrics
        for key in METRIC_KEYS:
            self._sums[key] += metrics[key]
        self.n_images += 1
        return metrics

    def update_batch(self, pred: Any, gt: Any, mask: Optional[Any] = None) -> None:
        """Add a batch (B x H x W or B x 1 x H x W) image by image."""
        for i in range(len(pred)):
            self.update(pred[i], gt[i], None if mask is None else mask[i])

    def compute(self) -> dict[str, float]:
        """Mean of each metric over the images seen, plus 'n_images' (NaN metrics if none)."""
        n = self.n_images
        result: dict[str, float] = {
            key: (self._sums[key] / n if n else math.nan) for key in METRIC_KEYS}
        result["n_images"] = n
        return result
