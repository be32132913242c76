"""The ROS-free frame pipeline, the one-slot frame queue and the rolling statistics."""
import math
import threading
import time

import numpy as np
import pytest
import torch

from clip_depth_ros.backends import create_backend
from clip_depth_ros.colorize import colorize_depth
from clip_depth_ros.geometry import Intrinsics, unpack_rgb
from clip_depth_ros.pipeline import DepthPipeline, LatestFrameSlot, PipelineSettings, RollingStats

H, W = 60, 80


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return create_backend("torch", model="tiny-mirror")


def _image(h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _intrinsics(w=W, h=H, f=70.0):
    return Intrinsics(fx=f, fy=f * 1.1, cx=w / 2 - 0.5, cy=h / 2 - 0.5, width=w, height=h)


def test_depth_only_when_nothing_wanted(backend):
    image = _image()
    result = DepthPipeline(backend).process(image, _intrinsics())
    assert result.depth_m.shape == (H, W) and result.depth_m.dtype == np.float32
    np.testing.assert_array_equal(result.depth_m, backend.infer(image))
    assert result.cloud is None and result.points_xyz is None
    assert result.colored_bgr is None
    assert set(result.timings_ms) == {"preprocess", "model", "postprocess"}
    assert min(result.timings_ms.values()) >= 0


@pytest.mark.parametrize("intrinsics", [None, Intrinsics(0.0, 0.0, 0.0, 0.0, W, H),
                                        Intrinsics(math.nan, 70.0, 40.0, 30.0, W, H)],
                         ids=["none", "zero", "nan"])
def test_no_points_without_valid_intrinsics(backend, intrinsics):
    result = DepthPipeline(backend).process(_image(), intrinsics, want_points=True,
                                            want_rgb=True)
    assert result.cloud is None and result.points_xyz is None
    assert result.intrinsics is None
    assert result.depth_m.shape == (H, W)


def test_points_strided_with_range_limit(backend):
    image = _image(seed=1)
    stride = 3
    depth = backend.infer(image)
    limit = float(np.median(depth))
    pipe = DepthPipeline(backend, PipelineSettings(point_stride=stride, max_range_m=limit))
    intr = _intrinsics()
    result = pipe.process(image, intr, want_points=True)
    points = result.points_xyz
    assert points.shape == (math.ceil(H / stride), math.ceil(W / stride), 3)
    assert points.dtype == np.float32
    z = depth[::stride, ::stride]
    beyond = z > limit
    assert beyond.any() and (~beyond).any()
    assert np.isnan(points[beyond]).all()
    assert np.isfinite(points[~beyond]).all()
    np.testing.assert_allclose(points[..., 2][~beyond], z[~beyond])
    # pinhole back-projection of one kept pixel, by hand
    v, u = np.argwhere(~beyond)[0]
    zz = z[v, u]
    assert points[v, u, 0] == pytest.approx((u * stride - intr.cx) * zz / intr.fx, rel=1e-5)
    assert points[v, u, 1] == pytest.approx((v * stride - intr.cy) * zz / intr.fy, rel=1e-5)
    assert result.cloud.shape[2] == 3  # xyz only: rgb not wanted
    assert "points" in result.timings_ms


def test_no_range_limit_keeps_every_point(backend):
    pipe = DepthPipeline(backend, PipelineSettings(point_stride=1, max_range_m=0.0))
    result = pipe.process(_image(seed=2), _intrinsics(), want_points=True)
    assert result.points_xyz.shape == (H, W, 3)
    assert np.isfinite(result.points_xyz).all()


def test_points_rgb_strided(backend):
    image = _image(seed=3)
    pipe = DepthPipeline(backend, PipelineSettings(point_stride=4))
    result = pipe.process(image, _intrinsics(), want_points=True, want_rgb=True)
    assert result.cloud.shape == (math.ceil(H / 4), math.ceil(W / 4), 4)
    assert result.cloud.dtype == np.float32 and result.cloud.flags.c_contiguous
    np.testing.assert_array_equal(unpack_rgb(result.cloud[..., 3]), image[::4, ::4])


def test_colored_image(backend):
    result = DepthPipeline(backend).process(_image(seed=4), want_colored=True)
    colored = result.colored_bgr
    assert colored.dtype == np.uint8 and colored.shape == (H, W, 3)
    assert "colorize" in result.timings_ms
    assert len(np.unique(colored.reshape(-1, 3), axis=0)) > 1


def test_intrinsics_of_another_size_scaled_to_image(backend):
    image = _image(seed=5)
    full = _intrinsics(w=2 * W, h=2 * H, f=140.0)  # camera_info at twice the image size
    result = DepthPipeline(backend).process(image, full, want_points=True)
    intr = result.intrinsics
    assert (intr.width, intr.height) == (W, H)
    assert intr.fx == pytest.approx(full.fx / 2) and intr.fy == pytest.approx(full.fy / 2)
    assert intr.cx == pytest.approx((full.cx + 0.5) / 2 - 0.5)
    assert result.points_xyz.shape == (H, W, 3)
    z = result.depth_m
    u = W - 1
    assert result.points_xyz[0, u, 0] == pytest.approx((u - intr.cx) * z[0, u] / intr.fx,
                                                       rel=1e-5)


def test_display_range_default_and_override(backend):
    cfg = backend.config
    pipe = DepthPipeline(backend)
    assert pipe.display_range() == (cfg.min_depth, cfg.max_depth)
    pipe.settings.display_min_m, pipe.settings.display_max_m = 1.0, 5.0
    assert pipe.display_range() == (1.0, 5.0)
    image = _image(seed=6)
    colored = pipe.process(image, want_colored=True).colored_bgr
    expected = colorize_depth(backend.infer(image), 1.0, 5.0, pipe.settings.colormap)
    np.testing.assert_array_equal(colored, expected)
    # an inverted or empty override falls back to the model range
    pipe.settings.display_min_m, pipe.settings.display_max_m = 5.0, 1.0
    assert pipe.display_range() == (cfg.min_depth, cfg.max_depth)


def test_colours_default_to_a_robust_range_from_the_data_smoothed_over_frames(backend):
    """Issue 13 item 14: display_min_m = display_max_m = 0 colour the depth's own 2-98th
    percentiles (not the model's 0.001-10 m, which left a room almost flat), smoothed from
    frame to frame; a fixed end stays fixed."""
    from clip_depth_ros.colorize import DisplayRange, robust_range
    pipe = DepthPipeline(backend)
    assert pipe.colours_from_data()
    first, second = _image(seed=7), _image(seed=8)
    out = pipe.process(first, want_colored=True)
    lo, hi = robust_range(out.depth_m)
    assert pipe.display_range() == pytest.approx((lo, hi))
    np.testing.assert_array_equal(out.colored_bgr, colorize_depth(out.depth_m, lo, hi))
    out2 = pipe.process(second, want_colored=True)
    reference = DisplayRange()
    reference.update(out.depth_m)
    smoothed = reference.update(out2.depth_m)
    assert pipe.display_range() == pytest.approx(smoothed)
    np.testing.assert_array_equal(out2.colored_bgr, colorize_depth(out2.depth_m, *smoothed))
    pipe.settings.display_min_m = 0.2  # near end fixed, far end still from the data
    pipe.process(first, want_colored=True)
    assert pipe.display_range()[0] == 0.2 and pipe.display_range()[1] == pytest.approx(hi)


def test_slot_keeps_latest_and_counts_drop():
    slot = LatestFrameSlot()
    assert slot.put("a") is False
    assert slot.put("b") is True
    assert slot.take(timeout=0.1) == "b"
    assert (slot.received, slot.dropped) == (2, 1)
    slot.put("c")
    assert slot.take(timeout=0.1) == "c"
    assert (slot.received, slot.dropped) == (3, 1)  # taken items are not drops


def test_slot_take_times_out():
    slot = LatestFrameSlot()
    t0 = time.monotonic()
    assert slot.take(timeout=0.05) is None
    assert time.monotonic() - t0 >= 0.04


def test_slot_take_wakes_on_put_from_another_thread():
    slot = LatestFrameSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    taker.start()
    time.sleep(0.05)
    slot.put("frame")
    taker.join(timeout=2.0)
    assert not taker.is_alive() and got == ["frame"]


def test_slot_close_wakes_blocked_taker():
    slot = LatestFrameSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take(timeout=10.0)))
    taker.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    slot.close()
    taker.join(timeout=2.0)
    assert not taker.is_alive()
    assert got == [None] and time.monotonic() - t0 < 2.0
    # after close: a left-over item is still handed out, then None without waiting
    slot.put("late")
    assert slot.take(timeout=5.0) == "late"
    t0 = time.monotonic()
    assert slot.take(timeout=5.0) is None
    assert time.monotonic() - t0 < 1.0


def test_rolling_stats_rate_and_percentiles():
    stats = RollingStats(window_s=5.0)
    latencies = [float(i) for i in range(1, 11)]
    for i, lat in enumerate(latencies):
        stats.add(lat, now=100.0 + 0.1 * i)  # 10 events over 0.9 s: 10 Hz
    snap = stats.snapshot(now=101.0)
    assert snap["count"] == 10
    assert snap["rate_hz"] == pytest.approx(9 / 0.9)
    assert snap["latency_p50_ms"] == pytest.approx(5.5)
    # linear interpolation: rank 0.95 * 9 = 8.55 between 9 and 10
    assert snap["latency_p95_ms"] == pytest.approx(9.55)


def test_rolling_stats_window_trims_old_events():
    stats = RollingStats(window_s=5.0)
    for t in range(10):
        stats.add(latency_ms=10.0 * t, now=float(t))
    snap = stats.snapshot(now=9.0)  # keeps t = 4..9
    assert snap["count"] == 6
    assert snap["rate_hz"] == pytest.approx(5 / 5.0)
    assert snap["latency_p50_ms"] == pytest.approx(65.0)
    empty = stats.snapshot(now=100.0)
    assert empty["count"] == 0 and empty["rate_hz"] == 0.0
    assert math.isnan(empty["latency_p50_ms"]) and math.isnan(empty["latency_p95_ms"])


def test_rolling_stats_single_event_has_no_rate():
    stats = RollingStats()
    stats.add(3.0, now=1.0)
    snap = stats.snapshot(now=1.0)
    assert snap["count"] == 1 and snap["rate_hz"] == 0.0
    assert snap["latency_p50_ms"] == 3.0


@pytest.mark.parametrize("fast_path", ["never", "always"])
def test_the_range_limit_applies_to_the_anchored_depth(fast_path):
    # points the model put beyond max_range_m that the anchor brings inside it are in the
    # cloud, as depth_image_proc would make them from the published depth (and vice versa)
    from clip_depth_ros.trust import ScaleAnchor, TrustSettings
    torch.manual_seed(0)
    model = create_backend("torch", model="tiny-mirror", fast_path=fast_path)
    image, intr = _image(seed=2), _intrinsics()
    depth = model.infer(image, intr)
    for factor in (0.5, 2.0):  # half the anchored depth within the limit
        limit = factor * float(np.median(depth))
        sparse = (depth * factor).astype(np.float32)
        anchor = ScaleAnchor(TrustSettings(scale_anchor="sparse_depth",
                                           scale_time_constant_s=0.0))
        pipe = DepthPipeline(model, PipelineSettings(max_range_m=limit), steps=[anchor])
        out = pipe.process(image, intr, want_points=True, stamp_s=0.0, sparse_depth_m=sparse)
        assert anchor.status.scale == pytest.approx(factor, rel=1e-3)
        z = out.points_xyz[..., 2]
        inside = out.depth_m <= limit
        assert 0.2 < inside.mean() < 1.0
        np.testing.assert_allclose(z[inside], out.depth_m[inside], rtol=1e-5)
        assert np.isnan(z[~inside]).all()
