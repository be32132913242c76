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


# --- robust display range, smoothing, colour bar (issue 13 item 14) --------------------------

from clip_depth_ros.colorize import (DisplayRange, check_display_range,  # noqa: E402
                                     nice_ticks, robust_range, with_colorbar)
from clip_depth_ros.errors import ConfigError  # noqa: E402


def _room(lo=2.0, hi=4.0, shape=(120, 160), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, shape).astype(np.float32)


def test_robust_range_follows_the_data_not_the_model_range():
    """A 2-4 m room used to be coloured over 0.001-10 m: almost flat."""
    depth = _room()
    depth[0, :5] = [np.nan, np.inf, 0.0, -1.0, 60.0]  # holes and one far outlier
    lo, hi = robust_range(depth)
    assert 2.0 <= lo < 2.1 and 3.9 < hi <= 4.0
    spread = colorize_depth(depth, lo, hi, "gray")[..., 0][1:].astype(int)
    assert spread.max() - spread.min() > 240  # the whole colour scale is used


def test_robust_range_edge_cases():
    assert robust_range(np.full((4, 4), np.nan, np.float32)) is None
    lo, hi = robust_range(np.full((4, 4), 3.0, np.float32))  # a flat wall
    assert lo < 3.0 < hi and hi - lo == pytest.approx(0.05)
    big = _room(shape=(1080, 1920))  # subsampled: same range
    assert robust_range(big) == pytest.approx((2.04, 3.96), abs=0.02)
    with pytest.raises(ValueError):
        robust_range(big, percentiles=(98, 2))


def test_display_range_smooths_over_frames_and_keeps_fixed_ends():
    smoother = DisplayRange(smoothing=0.25)
    assert smoother.update(_room(2, 4)) == pytest.approx(robust_range(_room(2, 4)))
    first = smoother.update(_room(4, 8, seed=1))  # a jump moves the range a quarter of the way
    assert 2.0 < first[0] < 3.0 and 4.0 < first[1] < 5.5
    for seed in range(40):
        lo, hi = smoother.update(_room(4, 8, seed=seed))
    assert lo == pytest.approx(4.08, abs=0.05) and hi == pytest.approx(7.92, abs=0.05)
    assert smoother.update(np.full((4, 4), np.nan, np.float32)) == (lo, hi)  # no data: hold
    smoother.reset()
    assert DisplayRange().update(np.zeros((2, 2), np.float32)) == (0.5, 5.0)  # the default
    near_fixed = DisplayRange(display_min=0.3)
    assert near_fixed.update(_room(2, 4))[0] == 0.3
    assert DisplayRange(1.0, 6.0).update(_room(2, 4)) == (1.0, 6.0)
    lo, hi = DisplayRange(display_min=5.0).update(_room(2, 4))  # fixed min beyond the data
    assert lo == 5.0 and hi > lo


@pytest.mark.parametrize("lo, hi", [(5.0, 2.0), (3.0, 3.0), (-1.0, 2.0), (float("nan"), 2.0)])
def test_display_min_above_max_is_refused(lo, hi):
    with pytest.raises(ConfigError, match="display_m"):
        check_display_range(lo, hi)
    with pytest.raises(ConfigError):
        DisplayRange(lo, hi)


def test_nice_ticks_are_3_to_5_round_values_inside_the_range():
    rng = np.random.default_rng(3)
    for _ in range(300):
        lo = float(rng.uniform(0, 20))
        hi = lo + float(10 ** rng.uniform(-1.5, 1.5))
        ticks = nice_ticks(lo, hi)
        assert 3 <= len(ticks) <= 5 or ticks == [lo, hi]
        assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in ticks) and ticks == sorted(ticks)
    assert nice_ticks(0.5, 4.2) == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("height", [48, 240, 720])
def test_colorbar_shows_the_colours_of_the_range_with_labels(height):
    depth = np.tile(np.linspace(2.0, 4.0, height, dtype=np.float32)[:, None], (1, 64))
    image = colorize_depth(depth, 2.0, 4.0)
    framed = with_colorbar(image, 2.0, 4.0)
    assert framed.shape[0] == height and framed.shape[1] > 64 + 20
    assert np.array_equal(framed[:, :64], image)  # the picture itself is untouched
    panel = framed[:, 64:]
    margin = max(4, height // 24)
    bar_w = max(8, height // 24)
    bar = panel[margin:height - margin, margin:margin + bar_w]
    # far (4 m) at the top, near (2 m) at the bottom, in the picture's own colours
    far, near = (colorize_depth(np.array([[d]]), 2, 4)[0, 0].astype(int) for d in (4.0, 2.0))
    assert np.abs(bar[0, 0].astype(int) - far).max() <= 2
    assert np.abs(bar[-1, 0].astype(int) - near).max() <= 2
    labels = panel[:, margin + bar_w + 2:]
    assert (labels > 200).any()  # white tick labels drawn
    with pytest.raises(ValueError):
        with_colorbar(image, 4.0, 2.0)
