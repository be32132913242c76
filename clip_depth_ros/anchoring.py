"""Metric scale from what the robot knows: the floor under a camera of known height, or sparse
metric measurements (projected LiDAR, RGB-D depth with holes).  Pure numpy, no ROS.

Each fit returns a :class:`ScaleEstimate`: the factor that turns the model's depth into metres
(anchored = scale * model depth), the number of points that support it, and why it failed
when it did.  :mod:`.temporal` filters the factor over time; :class:`.trust.ScaleAnchor`
puts both between the model and the point cloud.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .geometry import Intrinsics, ray_grid

ANCHORS = ("none", "ground_plane", "sparse_depth")
MAX_TILT_DEG = 30.0  # pitch and roll (each) of the camera against the floor the fit accepts
MAX_CAMERA_HEIGHT_M = 10.0
# a floor fit implying the model's metres are off by more than this factor is not the floor
# (a tilted plane through far furniture when no floor is in view): the fit is refused
MAX_SCALE_CORRECTION = 3.0
MAX_REFITS = 3  # surfaces above the floor (a table on a crate on the floor) tried below each other
MIN_SPARSE_POINTS = 3  # the fewest measurements a sparse fit may be asked to use


@dataclass(frozen=True)
class ScaleEstimate:
    """One frame's scale fit: ok with a scale, or a failure reason ('no_floor', ...)."""

    scale: float = 1.0
    support: int = 0  # inliers (ground plane) or measured pixels used (sparse depth)
    ok: bool = False
    reason: str = ""  # empty when ok
    shift: float = 0.0  # sparse_depth with a shift: anchored = 1 / (scale / depth + shift)
    log_sigma: Optional[float] = None  # uncertainty of log(scale); None: not estimated


def _failed(reason: str, support: int = 0) -> ScaleEstimate:
    return ScaleEstimate(ok=False, reason=reason, support=support)


# ---------------------------------------------------------------------------- ground plane
def floor_samples(depth_m: np.ndarray, intrinsics: Intrinsics, max_points: int = 2000
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Optical-frame points of the lower image half on a coarse grid: (N, 3) points with valid
    depth, and the (rows, cols) boolean grid they came from (row-major order)."""
    height, width = depth_m.shape
    step = max(1, int(math.sqrt(height * width / 2 / max_points)))
    top = height // 2
    x_over_z, y_over_z = ray_grid(intrinsics, step)
    rows = slice(top - top % step, height, step)  # aligned with ray_grid's rows
    z = depth_m[rows, ::step].astype(np.float32)
    xs = np.broadcast_to(x_over_z, z.shape) * z
    ys = y_over_z[rows.start // step:rows.start // step + z.shape[0]] * z
    points = np.stack([xs, ys, z], axis=-1).reshape(-1, 3)
    valid = np.isfinite(points).all(axis=1) & (points[:, 2] > 0)
    return points[valid], valid.reshape(z.shape)


def floor_like(normals: np.ndarray) -> np.ndarray:
    """Which unit normals (K, 3; optical frame, up = -y) a floor can have under a camera with
    pitch and roll each within :data:`MAX_TILT_DEG`.  A camera pitched by p, then rolled about
    its optical axis by r, sees the floor's normal as (cos p sin r, -cos p cos r, -sin p): the
    pitch is asin |n_z| and the roll atan2(|n_x|, -n_y), exactly.  (A single limit on the
    normal's angle to the up axis would refuse a 28-degree roll on a camera pitched 10 degrees
    down, whose normal is 30 degrees off.)"""
    limit = math.radians(MAX_TILT_DEG)
    up = -normals[:, 1]
    return (up > 0) & (np.abs(normals[:, 2]) <= math.sin(limit)) & \
        (np.abs(normals[:, 0]) <= math.tan(limit) * up)


def planes_through(points: np.ndarray, trios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (K, 3), oriented up (-y: optical y points down), and offsets (K,) of the
    planes n.p + d = 0 through each trio of points; degenerate trios get a zero normal."""
    p0, p1, p2 = points[trios[:, 0]], points[trios[:, 1]], points[trios[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)
    norms = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(norms > 1e-9, normals / np.maximum(norms, 1e-12), 0.0)
    normals *= np.where(normals[:, 1:2] > 0, -1.0, 1.0)
    return normals, -np.einsum("ij,ij->i", normals, p0)


def fit_ground_plane(depth_m: np.ndarray, intrinsics: Intrinsics, camera_height_m: float,
                     iterations: int = 128, inlier_rel: float = 0.05, min_inliers: int = 60,
                     min_fraction: float = 0.08, seed: int = 0) -> ScaleEstimate:
    """scale = camera_height_m / the predicted floor's distance from the camera.

    RANSAC over points of the lower image half: a plane counts only with the camera above it
    and its upward normal that of a floor seen with pitch and roll each within
    :data:`MAX_TILT_DEG` (:func:`floor_like`); residuals
    are relative to the plane's distance, so the fit does not depend on the (wrong) scale.  All
    candidates are scored in one matrix product; the winner is refined by least squares.  A
    plane with many points clearly below it is a surface above the floor (refit below it:
    'floor_hidden' when nothing fits there); a scale beyond :data:`MAX_SCALE_CORRECTION` either
    way is refused ('implausible_scale').
    """
    if not 0 < camera_height_m <= MAX_CAMERA_HEIGHT_M:
        return _failed("camera_height_unset")
    points, grid = floor_samples(depth_m, intrinsics)
    estimate, below = _fit_floor(points, grid, camera_height_m, iterations, inlier_rel,
                                 min_inliers, min_fraction, seed)
    # a floor found under another surface must still be a share of the whole lower view
    refit_min = max(min_inliers, int(min_fraction * len(points)))
    for refits in range(MAX_REFITS + 1):
        # Nothing is seen below the floor: a plane with much of the view under it is the top
        # of a low box or table under a low camera, not the floor, which lies below it.
        if below is None or below.sum() < max(min_inliers, 0.1 * estimate.support):
            break
        if refits == MAX_REFITS:  # still a surface under the last plane: not the floor
            return _failed("floor_hidden", estimate.support)
        lower = grid.copy()
        lower[grid] = below  # the grid cells of the points under the plane
        points, grid = points[below], lower
        estimate, below = _fit_floor(points, grid, camera_height_m, iterations, inlier_rel,
                                     refit_min, min_fraction, seed)
        if not estimate.ok:
            return _failed("floor_hidden", estimate.support)
    if estimate.ok and not 1 / MAX_SCALE_CORRECTION <= estimate.scale <= MAX_SCALE_CORRECTION:
        return _failed("implausible_scale", estimate.support)
    return estimate


def _fit_floor(points: np.ndarray, grid: np.ndarray, camera_height_m: float, iterations: int,
               inlier_rel: float, min_inliers: int, min_fraction: float, seed: int
               ) -> tuple[ScaleEstimate, Optional[np.ndarray]]:
    """One plane fit on floor samples (points and their grid layout): the estimate, and which
    points lie clearly under the plane (None when the fit failed)."""
    fail = (lambda reason, support=0: (_failed(reason, support), None))
    if len(points) < min_inliers:
        return fail("no_floor", len(points))
    rng = np.random.default_rng(seed)
    normals, offsets = planes_through(points, rng.integers(0, len(points),
                                                              size=(iterations, 3)))
    plausible = floor_like(normals) & (offsets > 0)
    if not plausible.any():
        return fail("no_floor")
    normals, offsets = normals[plausible], offsets[plausible]
    # residuals relative to the plane's own distance (its camera height in model units):
    # scale-free, and a kerb or a rug 5 cm high is 3% of 1.6 m whether near or far
    residual = np.abs(points @ normals.T + offsets) / offsets
    # MSAC: the truncated squared residual prefers the plane that fits its inliers best, not
    # merely the one with most points inside the band (a floor plus the walls' feet)
    best = int(np.argmin(np.minimum(residual, inlier_rel).__pow__(2).sum(axis=0)))
    inliers = residual[:, best] < inlier_rel
    best_count = int(inliers.sum())
    if best_count < max(min_inliers, min_fraction * len(points)):
        return fail("no_floor", best_count)
    normal, offset = fit_plane(points[inliers])
    for _ in range(4):  # IRLS: Cauchy weights on relative residuals (bumps on the floor weigh
        # little: a rug, a box's foot), starting from the band's inliers
        rel = (points @ normal + offset) / offset
        weights = inliers / (1.0 + (rel / (inlier_rel / 6)) ** 2)
        normal, offset = fit_plane(points, weights)
        if offset <= 0:
            break
    if not floor_like(normal[None])[0] or offset <= 0:
        return fail("no_floor", best_count)  # refined into a wall or a slope: no floor
    # a thin band for the area test: a vertical surface crosses a horizontal plane in a strip
    # as tall as the band, which at 3% spans neighbouring grid rows; the floor fills any band
    tight = np.abs(points @ normal + offset) / offset < inlier_rel / 3
    if tight.sum() < min_inliers or not _covers_an_area(tight, grid):
        return fail("no_floor", int(tight.sum()))
    below = (points @ normal + offset) / offset < -3 * inlier_rel
    return ScaleEstimate(scale=camera_height_m / offset, support=int(tight.sum()), ok=True), below


def _covers_an_area(inliers: np.ndarray, grid: np.ndarray, min_share: float = 0.5) -> bool:
    """A floor covers an area of the image; the feet of walls or a box's edge only a line,
    which a plane also fits.  Share of inlier samples whose grid neighbour below is one too."""
    layout = np.zeros(grid.shape, dtype=bool)
    layout[grid] = inliers
    below_too = layout[:-1] & layout[1:]
    return bool(below_too.sum() >= min_share * max(layout[:-1].sum(), 1))


def fit_plane(points: np.ndarray, weights: Optional[np.ndarray] = None
            ) -> tuple[np.ndarray, float]:
    """(Weighted) least-squares plane (normal up, offset) through points."""
    points = np.asarray(points, dtype=np.float64)
    weights = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=np.float64)
    centre = weights @ points / weights.sum()
    centred = points - centre
    # the normal is the weighted scatter matrix's least eigenvector (what an SVD of the
    # weighted, centred points gives as its last right singular vector; 3x3: cheaper)
    normal = np.linalg.eigh((centred * weights[:, None]).T @ centred)[1][:, 0]
    if normal[1] > 0:
        normal = -normal
    return normal, -float(normal @ centre)


# ---------------------------------------------------------------------------- sparse depth
def _sparse_pixels(depth_shape: tuple[int, int], sparse_m: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols) of each valid measurement and (v, u), the depth pixel it falls on: pixel
    centres map through the shared field of view, as camera_info scaling does."""
    height, width = depth_shape
    sh, sw = sparse_m.shape
    rows, cols = np.nonzero(np.isfinite(sparse_m) & (sparse_m > 0))
    v = np.clip(((rows + 0.5) * height / sh - 0.5).round().astype(int), 0, height - 1)
    u = np.clip(((cols + 0.5) * width / sw - 0.5).round().astype(int), 0, width - 1)
    return rows, cols, v, u


def sparse_pairs(depth_m: np.ndarray, sparse_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, measured) at every valid measurement; the sparse image may have any
    resolution covering the same field of view (nearest prediction pixel per measurement)."""
    rows, cols, v, u = _sparse_pixels(depth_m.shape, sparse_m)
    predicted = depth_m[v, u].astype(np.float64)
    keep = np.isfinite(predicted) & (predicted > 0)
    return predicted[keep], sparse_m[rows, cols].astype(np.float64)[keep]


def fit_sparse_scale(depth_m: np.ndarray, sparse_m: np.ndarray, min_points: int = 20,
                     fit_shift: bool = False) -> ScaleEstimate:
    """Robust scale (and optionally an inverse-depth shift) from sparse metric measurements.

    Scale: the median of log(measured / predicted), the least absolute log error, which is the
    median scaling of the evaluation literature measured on the points at hand; up to half the
    points may be outliers (LiDAR points on a glass pane).  An IRLS refinement with Cauchy
    weights was dropped: where the ratios are bimodal (a street whose far points exceed the
    model's range) it walked towards the far mode, off the median (held-out streets, 1% of
    pixels: d1 0.13-0.16 against 0.19-0.25 with the median; rooms the same).  With fit_shift,
    1/measured = scale_inv * 1/predicted + shift, fitted by least squares on the inliers of
    the scale-only fit (the affine-invariant models' convention).
    """
    predicted, measured = sparse_pairs(depth_m, sparse_m)
    if len(measured) < min_points:
        return _failed("too_few_sparse_points", len(measured))
    log_ratio = np.log(measured) - np.log(predicted)
    log_s = float(np.median(log_ratio))
    spread = max(1.4826 * float(np.median(np.abs(log_ratio - log_s))), 0.01)
    # the fit's own uncertainty (a median's standard error: 1.25 x the robust spread over
    # sqrt(n)), floored: measurements share systematic errors (a miscalibrated extrinsic)
    # that more points do not remove
    log_sigma = max(1.2533 * spread / math.sqrt(len(measured)), 0.005)
    if not fit_shift:
        return ScaleEstimate(scale=math.exp(log_s), support=len(measured), ok=True,
                             log_sigma=log_sigma)
    inliers = np.abs(log_ratio - log_s) < 3 * spread
    design = np.stack([1.0 / predicted[inliers], np.ones(int(inliers.sum()))], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, 1.0 / measured[inliers], rcond=None)
    if not a > 0:
        return ScaleEstimate(scale=math.exp(log_s), support=len(measured), ok=True,
                             log_sigma=log_sigma)
    return ScaleEstimate(scale=1.0 / float(a), support=int(inliers.sum()), ok=True,
                         shift=float(b), log_sigma=log_sigma)


def apply_scale(depth_m: np.ndarray, estimate: ScaleEstimate, scale: float) -> np.ndarray:
    """Anchored depth: scale * depth, or 1 / (1 / (scale * depth) + shift) with a shift."""
    anchored = depth_m * np.float32(scale)
    if estimate.shift:
        with np.errstate(divide="ignore"):
            inverse = 1.0 / anchored + np.float32(estimate.shift)
            anchored = np.where(inverse > 0, 1.0 / inverse, np.inf).astype(np.float32)
    return anchored


def fill_holes(anchored_m: np.ndarray, sparse_m: np.ndarray) -> np.ndarray:
    """Measured pixels as measured, the rest from the anchored prediction (RGB-D hole
    filling).  A coarser sparse image is enlarged with nearest neighbours (a measurement
    covers its area); a finer one puts each measurement on the depth pixel it falls in (as
    the scale fit pairs them), so no measurement is skipped."""
    height, width = anchored_m.shape
    sh, sw = sparse_m.shape
    if sh > height or sw > width:
        _, _, v, u = _sparse_pixels((height, width), sparse_m)
        filled = anchored_m.astype(np.float32, copy=True)
        filled[v, u] = sparse_m[np.isfinite(sparse_m) & (sparse_m > 0)]
        return filled
    if (sh, sw) != (height, width):
        sparse_m = cv2.resize(sparse_m, (width, height), interpolation=cv2.INTER_NEAREST)
    measured = np.isfinite(sparse_m) & (sparse_m > 0)
    return np.where(measured, sparse_m, anchored_m).astype(np.float32)
