"""Confidence and the point filters (edge filter, min_confidence, dropped points), without ROS."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from clip_depth_ros.confidence import depth_confidence, flying_pixels, geometric_confidence
from clip_depth_ros.frame import FrameContext, FrameOutputs, FrameRequest
from clip_depth_ros.geometry import Intrinsics, depth_to_points
from clip_depth_ros.trust import PointTrust, TrustSettings


def test_confidence_is_low_on_discontinuities_and_nan_where_depth_is_invalid():
    depth = np.full((60, 80), 4.0, np.float32)
    depth[:, 40:] = 1.0  # a foreground edge
    depth[0, 0] = np.nan
    conf = geometric_confidence(depth)
    assert np.isnan(conf[0, 0]) and conf[30, 10] > 0.99 and conf[30, 40] < 0.01
    model = np.full((30, 40), 0.5, np.float32)  # another resolution: resized
    combined = depth_confidence(depth, model)
    assert combined[30, 10] == pytest.approx(0.5, abs=0.01)
    assert np.nanmax(combined) <= 1 and np.nanmin(combined) >= 0


def test_point_trust_drops_flying_and_unconfident_points_never_depth():
    depth = np.full((60, 80), 4.0, np.float32)
    depth[:, 40:] = 1.0
    rgb = np.zeros((60, 80, 3), np.uint8)
    k = Intrinsics(80.0, 80.0, 39.5, 29.5, 80, 60)
    cloud = np.concatenate([depth_to_points(depth, k), np.ones((60, 80, 1), np.float32)], -1)
    out = FrameOutputs(depth_m=depth.copy(), intrinsics=k, cloud=cloud)
    ctx = FrameContext(rgb, k, FrameRequest(points=True), 0.0)
    assert flying_pixels(depth).sum() == 2 * 60  # the two columns at the jump
    step = PointTrust(TrustSettings(edge_filter=True), want_confidence=True)
    out = step(out, ctx)
    assert np.isnan(out.cloud[:, 39:41, :3]).all() and np.isfinite(out.cloud[:, :38, :3]).all()
    np.testing.assert_array_equal(out.depth_m, depth)  # depth itself is never masked
    assert out.confidence.shape == depth.shape and out.cloud[0, 39, 3] == 1.0  # rgb kept
    off = PointTrust(TrustSettings(edge_filter=False))
    assert not off.active


def _log_spread(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference the trust maps are held to: (max - min of log depth over each 3x3
    neighbourhood, valid mask), an invalid pixel and its neighbours a spread of +inf."""
    valid = np.isfinite(depth) & (depth > 0)
    log_high = cv2.log(np.where(valid, depth, np.float32(np.inf)))
    log_low = cv2.log(np.where(valid, depth, np.float32(0)))
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(log_high, kernel) - cv2.erode(log_low, kernel), valid


def test_the_edge_filter_alone_finds_the_same_pixels_as_the_log_spread():
    from clip_depth_ros.confidence import FLYING_JUMP, trust_maps
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:60, 0:80]
    depth = (1 + xx / 80 + yy / 60).astype(np.float32)
    depth += (rng.random(depth.shape) < 0.05) * rng.random(depth.shape).astype(np.float32)
    for value, share in ((np.nan, 0.005), (0.0, 0.003), (np.inf, 0.003), (-1.0, 0.003)):
        depth[rng.random(depth.shape) < share] = value
    spread, valid = _log_spread(depth)
    expected = valid & ~(spread <= np.float32(np.log1p(FLYING_JUMP)))
    assert 50 < expected.sum() < expected.size // 2
    only = trust_maps(depth, None, False, True)[1]  # the fast path: no logarithms
    with_confidence = trust_maps(depth, None, True, True)[1]
    np.testing.assert_array_equal(only, expected)
    np.testing.assert_array_equal(with_confidence, expected)


@pytest.mark.parametrize("share", [0.01, 0.3, 1.0])  # index writes; one masked pass (dense)
@pytest.mark.parametrize("channels", [3, 4])
def test_drop_points_sets_xyz_nan_and_keeps_colour(channels, share):
    from clip_depth_ros.frame import drop_points, multiply_xyz
    rng = np.random.default_rng(5)
    body = (rng.random((30, 40, channels)).astype(np.float32) - 0.5) * 8  # signs of x, y
    if channels == 4:  # packed 0x00RRGGBB: tiny or denormal floats whose bits must survive
        body[..., 3] = rng.integers(0, 1 << 24, (30, 40), dtype=np.uint32).view(np.float32)
    mask = rng.random((30, 40)) < share
    expected = body.copy()
    multiply_xyz(expected, np.where(mask, np.float32(np.nan), np.float32(1)))
    fast = body.copy()
    drop_points(fast, mask)
    np.testing.assert_array_equal(fast, expected)  # NaN where dropped, colour untouched
    assert np.isnan(fast[mask][:, :3]).all() and not np.isnan(fast[~mask]).any()
    if channels == 4:
        np.testing.assert_array_equal(fast[..., 3].view(np.uint32), body[..., 3].view(np.uint32))
    # the cloud of point_stride 2 and the mask PointTrust takes for it (a strided view)
    half = body[::2, ::2].copy()
    drop_points(half, mask[::2, ::2])
    np.testing.assert_array_equal(half, expected[::2, ::2])
    strided = np.ascontiguousarray(body.transpose(1, 0, 2)).transpose(1, 0, 2)
    assert not strided.flags.c_contiguous  # no flat view to write through: the slow way
    drop_points(strided, mask)
    np.testing.assert_array_equal(strided, expected)


def test_confidence_without_logarithms_matches_the_log_spread_formula():
    from clip_depth_ros.confidence import GRADIENT_SCALE, trust_maps
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:50, 0:70]
    depth = (1 + xx / 70 + yy / 50).astype(np.float32)
    depth[:, 35:] *= 1.4
    depth[rng.random(depth.shape) < 0.01] = np.nan
    model_term = rng.random((25, 35)).astype(np.float32)
    spread, valid = _log_spread(depth)
    geometric = np.exp(-np.minimum(spread, 1e4) * 0.5 / GRADIENT_SCALE)
    expected = geometric * cv2_resize(model_term, depth.shape)
    expected[~valid] = np.nan
    got = trust_maps(depth, model_term, True, False)[0]
    np.testing.assert_array_equal(np.isnan(got), ~valid)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-5, atol=1e-7)
    assert got[valid].min() == 0.0 and got[valid].max() > 0.5  # next to NaN: 0; smooth: high


def cv2_resize(term, shape):
    return cv2.resize(term, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def test_min_confidence_alone_drops_points_without_publishing_confidence():
    # confidence is computed for min_confidence, but handed on (published) only when wanted
    depth = np.full((60, 80), 4.0, np.float32)
    depth[:, 40:] = 1.0
    k = Intrinsics(80.0, 80.0, 39.5, 29.5, 80, 60)
    cloud = np.concatenate([depth_to_points(depth, k), np.ones((60, 80, 1), np.float32)], -1)
    ctx = FrameContext(np.zeros((60, 80, 3), np.uint8), k, FrameRequest(points=True), 0.0)
    settings = TrustSettings(edge_filter=False, min_confidence=0.5)
    out = PointTrust(settings)(FrameOutputs(depth_m=depth, intrinsics=k, cloud=cloud.copy()),
                               ctx)
    assert out.confidence is None and np.isnan(out.cloud[:, 39:41, :3]).all()
    assert np.isfinite(out.cloud[:, :38, :3]).all()
    wanted = PointTrust(settings, want_confidence=True)(
        FrameOutputs(depth_m=depth, intrinsics=k, cloud=cloud.copy()), ctx)
    assert wanted.confidence is not None and wanted.confidence.shape == depth.shape
