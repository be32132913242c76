"""The torch fast path: device pre/post-processing, points and colours, static buffers, graphs.

Its ops are checked on the CPU against the numpy/OpenCV functions they replace; the
fixed-shape runner is checked on the CPU (eager, same torch sequence) against the plain path;
CUDA graph capture needs a GPU and skips without one.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from clip_depth_ros.backends import torch_ops
from clip_depth_ros.backends.torch_backend import TorchBackend
from clip_depth_ros.colorize import COLORMAPS, colorize_depth
from clip_depth_ros.config import get_model_config
from clip_depth_ros.geometry import Intrinsics, depth_to_points, pack_rgb
from clip_depth_ros.frame import FrameRequest
from clip_depth_ros.image_codec import cloud_body, cloud_layout
from clip_depth_ros.pipeline import DepthPipeline, PipelineSettings
from clip_depth_ros.synthetic import demo_trajectory, random_indoor_scene, render
from model_helpers import camera_aware_config_file

CPU = torch.device("cpu")
K = Intrinsics(300.0, 290.0, 159.5, 121.0, 320, 240)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def room():
    """A smooth rendered room (320x240) and its intrinsics: resize filters agree on it."""
    scene = random_indoor_scene(5)
    rgb, _ = render(scene, demo_trajectory(scene, 8)[3], K)
    return rgb


def _holey_depth(seed: int = 0, shape=(240, 320)) -> np.ndarray:
    depth = np.random.default_rng(seed).uniform(0.2, 12.0, shape).astype(np.float32)
    depth[:7] = np.nan
    depth[7:11, :50] = -1.0
    depth[11:14, 10:40] = np.inf
    depth[20, :] = 0.0
    return depth


@pytest.mark.parametrize("stride", [1, 2, 3, 7])
@pytest.mark.parametrize("max_range", [math.inf, 5.0])
def test_device_cloud_body_equals_numpy_points_and_packed_rgb(stride, max_range):
    depth = _holey_depth(stride)
    rgb = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    body = torch_ops.cloud_body_torch(torch.from_numpy(depth),
                                      torch_ops.ray_grid_torch(K, stride, CPU), stride,
                                      max_range, torch.from_numpy(rgb)).numpy()
    expected = depth_to_points(depth, K, stride, max_range)
    assert body.shape == expected.shape[:2] + (4,)
    np.testing.assert_array_equal(np.isnan(body[..., :3]), np.isnan(expected))
    np.testing.assert_array_equal(body[..., :3], expected)  # NaN == NaN for this assert
    packed = pack_rgb(np.ascontiguousarray(rgb[::stride, ::stride]))
    assert np.array_equal(body[..., 3].copy().view(np.uint32), packed.view(np.uint32))


@pytest.mark.parametrize("colormap", sorted(COLORMAPS))
@pytest.mark.parametrize("invert", [True, False])
def test_device_colorize_equals_opencv_colorize(colormap, invert):
    depth = _holey_depth(3)
    lut = torch_ops.colormap_lut(colormap, CPU)
    got = torch_ops.colorize_torch(torch.from_numpy(depth), 0.5, 9.0, lut, invert).numpy()
    np.testing.assert_array_equal(got, colorize_depth(depth, 0.5, 9.0, colormap, invert))


def test_device_colorize_rejects_bad_ranges_and_names():
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        torch_ops.colorize_torch(torch.ones(2, 2), 3.0, 3.0, torch_ops.colormap_lut("jet", CPU))
    with pytest.raises(ValueError, match="unknown colormap"):
        torch_ops.colormap_lut("rainbow", CPU)


def test_preprocess_uint8_normalises_with_the_config_mean_and_std():
    cfg = get_model_config("tiny-mirror")
    scale, offset = (torch.from_numpy(a).view(1, 3, 1, 1) for a in cfg.uint8_normalization())
    h, w = cfg.input_hw
    image = np.full((h, w, 3), (10, 128, 250), dtype=np.uint8)
    x = torch_ops.preprocess_uint8(torch.from_numpy(image), cfg.input_hw, scale, offset,
                                   torch.float32)
    assert x.shape == (1, 3, h, w)
    expected = (np.array([10, 128, 250]) / 255.0 - np.array(cfg.mean)) / np.array(cfg.std)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), expected, rtol=1e-5)


@pytest.fixture(scope="module")
def backends():
    """The same demo model twice: plain (numpy pre/post) and the fast path forced on the CPU."""
    plain = TorchBackend(None, weights="demo-mirror", fast_path="never")
    fast = TorchBackend(None, weights="demo-mirror", fast_path="always")
    return plain, fast


def test_fast_path_depth_matches_the_plain_path(backends, room):
    plain, fast = backends
    assert fast.fast_path and not plain.fast_path
    assert not fast.cuda_graphs  # graphs are CUDA-only
    a, b = plain.infer(room, K), fast.infer(room, K)
    assert b.shape == a.shape == room.shape[:2] and b.dtype == np.float32
    # only the resize filter differs (OpenCV area vs antialiased bilinear)
    assert np.median(np.abs(a - b) / a) < 0.01
    assert np.abs(a - b).max() < 0.25


def test_fast_path_carries_the_models_confidence_as_the_plain_path(backends, room):
    # depth/confidence is the geometric term times the model's own: the device path (the
    # default on a GPU) must hand the model's term on too, at the model's input size
    plain, fast = backends
    a, b = plain.infer_frame(room, K), fast.infer_frame(room, K)
    assert a.model_confidence is not None and b.model_confidence is not None
    assert b.model_confidence.shape == a.model_confidence.shape == plain.config.input_hw
    assert b.model_confidence.dtype == np.float32
    # same network on a slightly different resize of the input (area vs bilinear)
    assert np.median(np.abs(a.model_confidence - b.model_confidence)) < 0.02
    assert np.corrcoef(a.model_confidence.ravel(), b.model_confidence.ravel())[0, 1] > 0.9
    before = b.model_confidence.copy()
    fast.infer_frame(np.ascontiguousarray(room[::-1]), K)
    np.testing.assert_array_equal(b.model_confidence, before)  # a private copy


def test_fast_path_reuses_buffers_per_size_and_returns_private_arrays(backends, room):
    _, fast = backends
    first = fast.infer(room, K)
    runner = fast._runners[(240, 320)]
    ptr = runner.host_in.data_ptr()
    kept = first.copy()
    other = fast.infer(np.ascontiguousarray(room[::-1]), K)
    assert fast._runners[(240, 320)] is runner and runner.host_in.data_ptr() == ptr
    np.testing.assert_array_equal(first, kept)  # the next frame did not overwrite it
    assert not np.array_equal(first, other)
    for size in [(120, 160), (60, 80), (48, 64), (30, 40)]:
        fast.infer(np.zeros(size + (3,), np.uint8))
    assert len(fast._runners) == 4 and (240, 320) not in fast._runners


def test_fast_pipeline_outputs_equal_numpy_outputs_of_the_same_depth(backends, room):
    _, fast = backends
    # a fixed colour range: the backend colours on the device (a range from the data is
    # applied by the pipeline on the host, after the depth is final)
    lo, hi = 0.5, 6.0
    settings = PipelineSettings(point_stride=2, max_range_m=4.0, colormap="viridis",
                                display_min_m=lo, display_max_m=hi)
    result = DepthPipeline(fast, settings).process(room, K, want_points=True, want_rgb=True,
                                                   want_colored=True)
    depth = result.depth_m
    np.testing.assert_array_equal(result.colored_bgr, colorize_depth(depth, lo, hi, "viridis"))
    expected = depth_to_points(depth, K, 2, 4.0)
    np.testing.assert_array_equal(result.points_xyz, expected)
    body, names = cloud_layout(result.cloud)
    assert names == ["x", "y", "z", "rgb"] and body.shape == (120, 160, 4)
    reference = cloud_body(expected, np.ascontiguousarray(room[::2, ::2]))
    assert np.array_equal(body.view(np.uint32), reference.view(np.uint32))
    assert set(result.timings_ms) == {"inference"}


def test_fast_pipeline_without_intrinsics_or_points_gives_depth_only(backends, room):
    _, fast = backends
    result = DepthPipeline(fast).process(room, None, want_points=True)
    assert result.cloud is None and result.points_xyz is None
    assert result.colored_bgr is None and result.intrinsics is None


def test_fast_path_applies_the_camera_aware_scale(room, tmp_path):
    path = camera_aware_config_file(tmp_path)
    plain = TorchBackend(str(path), fast_path="never")
    fast = TorchBackend(str(path), fast_path="always")
    fast.model.load_state_dict(plain.model.state_dict())
    cfg = fast.config
    assert cfg.camera_aware_scale
    # model-size focal lengths of 1/2 and 1/4 of the canonical one: scales that never clamp
    f_half = 0.5 * cfg.canonical_focal_px * K.width / cfg.input_hw[1]
    half = dataclasses.replace(K, fx=f_half, fy=f_half)
    quarter = dataclasses.replace(K, fx=f_half / 2, fy=f_half / 2)
    canonical = fast.infer(room)
    assert canonical.min() > 4 * cfg.min_depth
    np.testing.assert_allclose(fast.infer(room, half), 0.5 * canonical, rtol=1e-5)
    np.testing.assert_allclose(fast.infer(room, quarter), 0.25 * canonical, rtol=1e-5)
    plain_half = plain.infer(room, half)
    assert np.median(np.abs(plain_half - fast.infer(room, half)) / plain_half) < 0.01


def test_bad_requests_are_refused_with_reasons(backends, room):
    _, fast = backends
    with pytest.raises(ValueError, match="uint8"):
        fast.infer(room.astype(np.float32), K)
    # points without intrinsics: no cloud, exactly as on the host path (one contract)
    for backend in backends:
        assert backend.infer_frame(room, None, FrameRequest(points=True)).cloud is None
    with pytest.raises(ValueError, match="describe a 640x480"):
        fast.infer_frame(room, K.scaled_to(640, 480), FrameRequest(points=True))
    with pytest.raises(ValueError, match="stride"):
        fast.infer_frame(room, K, FrameRequest(points=True, point_stride=0))
    with pytest.raises(ValueError, match="fast_path"):
        TorchBackend("tiny-mirror", fast_path="maybe")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_replay_matches_eager_and_follows_new_inputs(room, precision):
    eager = TorchBackend(None, weights="demo-mirror", device="cuda", precision=precision,
                         cuda_graphs=False)
    graphed = TorchBackend(None, weights="demo-mirror", device="cuda", precision=precision)
    assert graphed.cuda_graphs
    a = graphed.infer(room, K)
    assert graphed._runners[(240, 320)].graph is not None
    tol = 1e-4 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(a, eager.infer(room, K), rtol=tol, atol=tol)
    flipped = np.ascontiguousarray(room[:, ::-1])
    b = graphed.infer(flipped, K)
    np.testing.assert_allclose(b, eager.infer(flipped, K), rtol=tol, atol=tol)
    assert not np.allclose(a, b)


@needs_cuda
def test_cuda_outputs_match_the_numpy_outputs(room):
    backend = TorchBackend(None, weights="demo-mirror", device="cuda")
    out = backend.infer_frame(room, K, FrameRequest(points=True, points_rgb=True, colored=True,
                                                    display_range_m=(0.5, 8.0)))
    expected = depth_to_points(out.depth_m, K)
    np.testing.assert_allclose(out.cloud[..., :3], expected, rtol=1e-6, atol=1e-6)
    levels_equal = out.colored_bgr == colorize_depth(out.depth_m, 0.5, 8.0, "turbo")
    assert levels_equal.mean() > 0.999  # FMA contraction may move a rare boundary level


def test_torch_compile_option_matches_eager(room):
    """torch.compile (inductor; on the CPU it needs the C++ compiler CI has) gives the same
    depth as the uncompiled fast path."""
    eager = TorchBackend(None, weights="demo-mirror", fast_path="always")
    compiled = TorchBackend(None, weights="demo-mirror", fast_path="always", compile=True)
    assert compiled.describe()["mode"].endswith("torch.compile")
    np.testing.assert_allclose(compiled.infer(room, K), eager.infer(room, K), rtol=1e-3,
                               atol=1e-3)


def test_edge_filter_drops_the_same_flying_points_on_the_fast_path(backends, room):
    # the device path (the default on a GPU) hands its cloud to the same post-model steps:
    # the edge filter removes points on discontinuities there too, never depth
    from clip_depth_ros.confidence import flying_pixels
    from clip_depth_ros.pipeline import DepthPipeline
    from clip_depth_ros.trust import PointTrust, TrustSettings
    for backend in backends:
        on = DepthPipeline(backend, steps=[PointTrust(TrustSettings(edge_filter=True))])
        off = DepthPipeline(backend, steps=[PointTrust(TrustSettings(edge_filter=False))])
        kept = on.process(room, K, want_points=True, want_rgb=True)
        full = off.process(room, K, want_points=True, want_rgb=True)
        np.testing.assert_array_equal(kept.depth_m, full.depth_m)
        flying = flying_pixels(kept.depth_m)
        assert 0 < flying.mean() < 0.2
        gone = ~np.isfinite(kept.points_xyz).all(axis=-1)
        np.testing.assert_array_equal(gone, flying | ~np.isfinite(full.points_xyz).all(axis=-1))
