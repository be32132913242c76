"""Depth -> point cloud geometry, intrinsics scaling, rgb packing and depth resizing."""
import math

import numpy as np
import pytest

from clip_depth_ros.geometry import (
    Intrinsics,
    depth_to_points,
    pack_rgb,
    project_points,
    resize_depth,
    unpack_rgb,
)

# Off-centre principal point and fx != fy so swapped axes or signs show up.
K = Intrinsics(fx=500.0, fy=400.0, cx=90.25, cy=70.75, width=200, height=120)


def _depth(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 9.0, (K.height, K.width)).astype(np.float32)


def test_points_match_formula_by_hand():
    depth = _depth()
    points = depth_to_points(depth, K)
    assert points.shape == (120, 200, 3) and points.dtype == np.float32
    for u, v in [(0, 0), (150, 30), (199, 119), (90, 70)]:
        z = float(depth[v, u])
        expected = [(u - 90.25) * z / 500.0, (v - 70.75) * z / 400.0, z]
        np.testing.assert_allclose(points[v, u], expected, rtol=1e-6, atol=1e-6)
    # Left of cx is negative x, above cy is negative y (optical frame: x right, y down).
    assert points[0, 0, 0] < 0 and points[0, 0, 1] < 0 and points[119, 199, 0] > 0


def test_stride_keeps_original_pixel_coordinates():
    depth = _depth(1)
    points = depth_to_points(depth, K, stride=3)
    assert points.shape == (40, 67, 3)  # ceil(120 / 3), ceil(200 / 3)
    for row, col in [(0, 0), (10, 20), (39, 66)]:
        u, v = 3 * col, 3 * row
        z = float(depth[v, u])
        expected = [(u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z]
        np.testing.assert_allclose(points[row, col], expected, rtol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf, -np.inf, 7.5])
def test_invalid_depth_becomes_nan_in_all_coordinates(bad):
    depth = np.full((K.height, K.width), 2.0, dtype=np.float32)
    depth[5, 7] = bad
    points = depth_to_points(depth, K, max_range=7.0)
    assert np.isnan(points[5, 7]).all()
    assert np.isfinite(points[5, 8]).all() and np.isfinite(points[6, 7]).all()
    assert np.isfinite(points).all(axis=2).sum() == K.width * K.height - 1


def test_max_range_is_inclusive_and_default_unlimited():
    depth = np.full((K.height, K.width), 7.0, dtype=np.float32)
    assert np.isfinite(depth_to_points(depth, K, max_range=7.0)).all()
    depth[0, 0] = 1e6
    assert np.isfinite(depth_to_points(depth, K)[0, 0]).all()


def test_reprojection_returns_pixel_grid():
    depth = _depth(2)
    depth[::13, ::7] = np.nan
    points = depth_to_points(depth, K)
    u, v = project_points(points, K)
    grid_v, grid_u = np.mgrid[0:K.height, 0:K.width]
    valid = np.isfinite(depth)
    np.testing.assert_allclose(u[valid], grid_u[valid], atol=1e-3)
    np.testing.assert_allclose(v[valid], grid_v[valid], atol=1e-3)
    assert np.isnan(u[~valid]).all() and np.isnan(v[~valid]).all()


def test_wrong_resolution_intrinsics_raise():
    depth = np.ones((60, 100), dtype=np.float32)
    with pytest.raises(ValueError, match="scaled_to"):
        depth_to_points(depth, K)
    # Scaling as the message says makes it work.
    assert depth_to_points(depth, K.scaled_to(100, 60)).shape == (60, 100, 3)


def test_scaled_to_uses_pixel_centre_convention():
    full = Intrinsics(fx=525.0, fy=520.0, cx=319.5, cy=239.5, width=640, height=480)
    half = full.scaled_to(320, 240)
    assert (half.fx, half.fy, half.cx, half.cy) == (262.5, 260.0, 159.5, 119.5)
    assert (half.width, half.height) == (320, 240)
    assert full.scaled_to(640, 480) is full
    # Scaling the intrinsics and projecting agrees with scaling the pixel coordinates.
    u, v = project_points(np.array([0.3, -0.2, 2.0]), full)
    u2, v2 = project_points(np.array([0.3, -0.2, 2.0]), half)
    assert math.isclose(u2, (u + 0.5) * 0.5 - 0.5) and math.isclose(v2, (v + 0.5) * 0.5 - 0.5)


def test_is_valid():
    assert K.is_valid()
    assert not Intrinsics(0.0, 400.0, 1.0, 1.0, 10, 10).is_valid()
    assert not Intrinsics(500.0, -1.0, 1.0, 1.0, 10, 10).is_valid()
    assert not Intrinsics(float("nan"), 400.0, 1.0, 1.0, 10, 10).is_valid()
    assert not Intrinsics(500.0, 400.0, 1.0, 1.0, 0, 10).is_valid()


def test_pack_rgb_bit_layout_and_round_trip():
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (0x12, 0x34, 0x56)
    rgb[1, 2] = (255, 255, 255)
    packed = pack_rgb(rgb)
    assert packed.shape == (2, 3) and packed.dtype == np.float32
    bits = packed.view(np.uint32)
    assert bits[0, 0] == 0x00123456 and bits[1, 2] == 0x00FFFFFF and bits[0, 1] == 0
    random_rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(unpack_rgb(pack_rgb(random_rgb)), random_rgb)
    with pytest.raises(ValueError):
        pack_rgb(random_rgb.astype(np.float32))


@pytest.mark.parametrize("size", [(100, 60), (400, 240), (37, 23)])
def test_resize_depth_never_blends_invalid_pixels(size):
    depth = np.full((K.height, K.width), 3.0, dtype=np.float32)
    depth[:, :100] = 5.0
    depth[40:60, 50:90] = np.nan
    depth[10:20, 150:170] = 0.0
    depth[100:110, 10:30] = np.inf
    out = resize_depth(depth, *size)
    assert out.shape == (size[1], size[0]) and out.dtype == np.float32
    valid = np.isfinite(out) & (out > 0)
    # Valid outputs blend only valid inputs: never pulled towards 0 or up to inf.
    assert out[valid].min() >= 3.0 - 1e-5 and out[valid].max() <= 5.0 + 1e-5
    # Each hole survives, with its own invalid value.
    assert np.isnan(out).any() and (out == 0).any() and np.isposinf(out).any()
    sx, sy = size[0] / K.width, size[1] / K.height
    assert np.isnan(out[int(50 * sy), int(70 * sx)])
    # A pixel next to the NaN hole is still the untouched 5.0, not averaged into it.
    assert out[int(50 * sy), int(50 * sx) - 1] == pytest.approx(5.0, abs=1e-5)


def test_resize_depth_all_valid_is_bilinear_and_in_range():
    ramp = np.tile(np.linspace(1.0, 2.0, K.width, dtype=np.float32), (K.height, 1))
    out = resize_depth(ramp, 100, 60)
    assert out.min() >= 1.0 and out.max() <= 2.0
    assert np.all(np.diff(out, axis=1) > 0)  # linear ramp stays monotonic
    assert resize_depth(ramp, K.width, K.height) is not ramp


@pytest.mark.parametrize("stride, rgb, max_range", [(1, True, math.inf), (1, False, 4.0),
                                                    (3, True, 4.0), (2, False, math.inf)])
def test_cloud_body_from_planes_is_bit_identical_to_the_stacked_points(stride, rgb, max_range):
    from clip_depth_ros.frame import FrameRequest, host_outputs
    from clip_depth_ros.image_codec import cloud_body
    rng = np.random.default_rng(2)
    k = Intrinsics(fx=300.0, fy=310.0, cx=40.0, cy=29.0, width=81, height=61)
    depth = (0.5 + 5 * rng.random((61, 81))).astype(np.float32)
    depth[0, :5], depth[3, 3], depth[7, 7] = np.nan, np.inf, 0.0
    image = rng.integers(0, 256, (61, 81, 3), dtype=np.uint8)
    expected = cloud_body(depth_to_points(depth, k, stride, max_range),
                          image[::stride, ::stride] if rgb else None)
    got = host_outputs(depth, image, k, FrameRequest(points=True, points_rgb=rgb,
                                                    point_stride=stride,
                                                    max_range_m=max_range)).cloud
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
