"""How much to trust each depth pixel, and which points are flying pixels.  Pure numpy + OpenCV.

Confidence (32FC1 in [0, 1], 1 = most trusted, NaN where depth is invalid) is the product of
two terms:

- the model's own: from the bin distribution of bin heads (MoA, DepthCLIP: 1 - normalised
  entropy) or a regression head's predicted uncertainty (Mirror with an uncertainty output:
  exp(-b) for a Laplace scale b in log-depth), when the model provides one;
- a geometric one: depth discontinuities (where a monocular model smears foreground into
  background) get low confidence: exp(-|grad log depth| / GRADIENT_SCALE), the gradient taken
  over a pixel's 3x3 neighbourhood.

Both rank pixels by expected error; the number is a rank, not a calibrated probability.
``flying_pixels`` marks points on discontinuities for the edge filter (removed from `points`,
never from `depth`).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

GRADIENT_SCALE = 0.10  # |d log depth| per pixel at which the geometric term is exp(-1)
FLYING_JUMP = 0.06  # relative depth jump inside a 3x3 neighbourhood that marks a flying pixel


def _log_depth(depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = np.isfinite(depth_m) & (depth_m > 0)
    log_depth = np.log(np.where(valid, depth_m, 1.0)).astype(np.float32)
    return log_depth, valid


def neighbourhood_jump(depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max - min of log depth over each 3x3 neighbourhood, valid mask); invalid pixels and
    their neighbours count as a jump of +inf."""
    log_depth, valid = _log_depth(depth_m)
    kernel = np.ones((3, 3), np.uint8)
    high = cv2.dilate(np.where(valid, log_depth, np.float32(np.inf)), kernel)
    low = cv2.erode(np.where(valid, log_depth, np.float32(-np.inf)), kernel)
    return high - low, valid


def flying_pixels(depth_m: np.ndarray, jump: float = FLYING_JUMP) -> np.ndarray:
    """Boolean mask of pixels on a depth discontinuity (3x3 relative jump above ``jump``)."""
    spread, valid = neighbourhood_jump(depth_m)
    return valid & ~(spread <= np.log1p(jump))


def geometric_confidence(depth_m: np.ndarray) -> np.ndarray:
    """exp(-|grad log depth| / GRADIENT_SCALE) per pixel (half the 3x3 log-depth spread as the
    gradient); NaN where depth is invalid."""
    spread, valid = neighbourhood_jump(depth_m)
    with np.errstate(invalid="ignore", over="ignore"):
        conf = np.exp(-0.5 * spread / np.float32(GRADIENT_SCALE)).astype(np.float32)
    conf[~valid] = np.nan
    return conf


def bin_confidence(probabilities: np.ndarray) -> np.ndarray:
    """1 - normalised entropy of a (K, H, W) bin distribution (1: one bin, 0: uniform)."""
    k = probabilities.shape[0]
    p = np.clip(probabilities.astype(np.float32), 1e-8, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0)
    return (1.0 - entropy / np.float32(np.log(k))).astype(np.float32)


def depth_confidence(depth_m: np.ndarray, model_term: Optional[np.ndarray] = None) -> np.ndarray:
    """The published confidence: geometric term times the model's term (resized to the depth
    image when needed), clipped to [0, 1], NaN where depth is invalid."""
    conf = geometric_confidence(depth_m)
    if model_term is not None:
        height, width = depth_m.shape
        if model_term.shape != (height, width):
            model_term = cv2.resize(model_term.astype(np.float32), (width, height),
                                    interpolation=cv2.INTER_LINEAR)
        conf = conf * np.clip(model_term, 0.0, 1.0)
    return np.clip(conf, 0.0, 1.0, out=conf)
