"""How much to trust each depth pixel, and which points are flying pixels.  Pure numpy + OpenCV.

Confidence (32FC1 in [0, 1], 1 = most trusted, NaN where depth is invalid) is the product of
two terms:

- the model's own, when it has one, computed inside the network (``model.depth_model.
  model_confidence``, part of every exported graph): 1 - normalised bin entropy for bin heads
  (MoA, DepthCLIP), exp(-b / 0.1) for Mirror's predicted Laplace scale b of the log-depth
  error;
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


_KERNEL = np.ones((3, 3), np.uint8)


def neighbourhood_extremes(depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max, min of depth over each 3x3 neighbourhood, valid mask); an invalid pixel counts
    as +inf for the max and 0 for the min, so it makes its neighbours' jump infinite."""
    depth = np.asarray(depth_m, dtype=np.float32)
    valid = depth > 0  # NaN compares false
    valid &= depth < np.inf
    if np.count_nonzero(valid) == valid.size:  # a model's depth usually is: no substitutes
        depth = np.ascontiguousarray(depth)
        return cv2.dilate(depth, _KERNEL), cv2.erode(depth, _KERNEL), valid
    high = cv2.dilate(np.where(valid, depth, np.float32(np.inf)), _KERNEL)
    low = cv2.erode(np.where(valid, depth, np.float32(0)), _KERNEL)
    return high, low, valid


def trust_maps(depth_m: np.ndarray, model_term: Optional[np.ndarray], want_confidence: bool,
               want_flying: bool, jump: float = FLYING_JUMP
               ) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(confidence or None, flying-pixel mask or None) from one neighbourhood pass.

    No logarithms: a log-spread above log(1 + jump) is max > (1 + jump) min, and the
    geometric term exp(-spread / (2 GRADIENT_SCALE)) is (min / max) ** (1 / (2 GRADIENT_SCALE))."""
    if not (want_confidence or want_flying):
        return None, None
    high, low, valid = neighbourhood_extremes(depth_m)
    flying = valid & ~(high <= low * np.float32(1 + jump)) if want_flying else None
    confidence = _confidence(low / high, valid, model_term) if want_confidence else None
    return confidence, flying


def flying_pixels(depth_m: np.ndarray, jump: float = FLYING_JUMP) -> np.ndarray:
    """Boolean mask of pixels on a depth discontinuity (3x3 relative jump above ``jump``)."""
    return trust_maps(depth_m, None, False, True, jump)[1]


def geometric_confidence(depth_m: np.ndarray) -> np.ndarray:
    """exp(-|grad log depth| / GRADIENT_SCALE) per pixel (half the 3x3 log-depth spread as the
    gradient); NaN where depth is invalid."""
    return trust_maps(depth_m, None, True, False)[0]


def _confidence(ratio: np.ndarray, valid: np.ndarray,
                model_term: Optional[np.ndarray]) -> np.ndarray:
    """Geometric term (from min / max over the 3x3 neighbourhood, 0 next to an invalid pixel)
    times the model's term, NaN where invalid."""
    conf = cv2.pow(ratio, 0.5 / GRADIENT_SCALE)  # an integer power: multiplications
    if model_term is not None:
        height, width = ratio.shape
        if model_term.shape != (height, width):
            model_term = cv2.resize(model_term.astype(np.float32), (width, height),
                                    interpolation=cv2.INTER_LINEAR)
        conf *= np.clip(model_term, 0.0, 1.0)
    conf[~valid] = np.nan
    return conf


def depth_confidence(depth_m: np.ndarray, model_term: Optional[np.ndarray] = None) -> np.ndarray:
    """The published confidence: geometric term times the model's term (resized to the depth
    image when needed), in [0, 1], NaN where depth is invalid."""
    return trust_maps(depth_m, model_term, True, False)[0]
