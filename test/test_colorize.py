"""Depth colormapping for the depth/colored topic."""
import numpy as np
import pytest

from clip_depth_ros.colorize import COLORMAPS, colorize_depth


def _ramp() -> np.ndarray:
    return np.tile(np.linspace(0.5, 10.0, 64, dtype=np.float32), (8, 1))


@pytest.mark.parametrize("name", sorted(COLORMAPS))
def test_shape_dtype_and_valid_pixels_not_black(name):
    image = colorize_depth(_ramp(), 1.0, 9.0, colormap=name, invert=False)
    assert image.shape == (8, 64, 3) and image.dtype == np.uint8
    # Mid-range depths are never mistaken for invalid.
    assert (image[:, 20:40].max(axis=2) > 0).all()


def test_required_colormaps_exist():
    assert {"turbo", "jet", "viridis", "inferno", "magma", "plasma", "gray"} <= set(COLORMAPS)


def test_invalid_pixels_are_black():
    depth = np.full((4, 6), 3.0, dtype=np.float32)
    bad = [np.nan, np.inf, -np.inf, 0.0, -2.0]
    for i, value in enumerate(bad):
        depth[0, i] = value
    image = colorize_depth(depth, 1.0, 5.0)
    assert (image[0, :5] == 0).all()
    assert (image[1:].max(axis=2) > 0).all()


def test_near_is_warm_when_inverted_and_cold_otherwise():
    depth = np.array([[1.0, 9.0]], dtype=np.float32)
    near, far = colorize_depth(depth, 1.0, 9.0, "turbo")[0]  # BGR
    assert near[2] > near[0] and far[0] > far[2]
    near, far = colorize_depth(depth, 1.0, 9.0, "turbo", invert=False)[0]
    assert near[0] > near[2] and far[2] > far[0]
    near, far = colorize_depth(depth, 1.0, 9.0, "gray")[0]
    assert tuple(near) == (255, 255, 255) and tuple(far) == (0, 0, 0)


def test_depth_is_clipped_to_range_and_monotonic():
    depth = np.array([[0.2, 1.0, 4.0, 6.0, 9.0, 50.0]], dtype=np.float32)
    gray = colorize_depth(depth, 1.0, 9.0, "gray")[0, :, 0].astype(int)
    assert gray[0] == gray[1] == 255 and gray[4] == gray[5] == 0
    assert np.all(np.diff(gray) <= 0) and gray[2] > gray[3]


def test_errors():
    depth = np.ones((2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="turbo"):
        colorize_depth(depth, 0.1, 5.0, colormap="rainbowz")
    with pytest.raises(ValueError):
        colorize_depth(depth, 5.0, 5.0)
    with pytest.raises(ValueError):
        colorize_depth(depth, 6.0, 5.0)
    with pytest.raises(ValueError):
        colorize_depth(depth, 0.1, float("inf"))
