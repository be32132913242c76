"""onnxruntime backend: the torch backend's contract, parity with it, config from metadata."""
import shutil

import numpy as np
import pytest
import torch

import onnx
import onnxruntime  # noqa: F401

from clip_depth_ros.backends import available_backends, create_backend  # noqa: E402
from clip_depth_ros.backends.base import DepthBackend  # noqa: E402
from clip_depth_ros.backends.onnxruntime_backend import (CPU, CUDA, TRT,  # noqa: E402
                                                         OnnxRuntimeBackend, choose_providers)
from clip_depth_ros.config import ConfigError  # noqa: E402
from clip_depth_ros.export_onnx import export_onnx, sidecar_path  # noqa: E402
from clip_depth_ros.geometry import Intrinsics  # noqa: E402
from model_helpers import BAD_IMAGE_IDS, BAD_IMAGES, camera_aware_config_file  # noqa: E402


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pair(model, folder):
    """A torch backend and an onnxruntime backend running the very same weights."""
    torch.manual_seed(0)
    reference = create_backend("torch", model=model, backbone_weights="random")
    path = export_onnx(reference.model, folder / "model.onnx")
    return reference, create_backend("onnxruntime", onnx_path=str(path))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return _pair("tiny-mirror", tmp_path_factory.mktemp("ort"))


def test_registry_lists_the_new_backends():
    assert {"torch", "onnxruntime", "tensorrt"} <= set(available_backends())


def test_satisfies_protocol(pair):
    _, backend = pair
    assert isinstance(backend, OnnxRuntimeBackend) and isinstance(backend, DepthBackend)
    assert backend.name == "onnxruntime"


@pytest.mark.parametrize("h,w", [(480, 640), (7, 5), (191, 257)])
def test_infer_returns_float32_depth_at_image_size(pair, h, w):
    _, backend = pair
    cfg = backend.config
    depth = backend.infer(_image(h, w, seed=h))
    assert isinstance(depth, np.ndarray) and depth.shape == (h, w) and depth.dtype == np.float32
    assert np.isfinite(depth).all()
    assert depth.min() >= cfg.min_depth and depth.max() <= cfg.max_depth


@pytest.mark.parametrize("h,w", [(480, 640), (192, 256), (7, 5)])
def test_parity_with_torch_backend_below_1mm(pair, h, w):
    reference, backend = pair
    image = _image(h, w, seed=w)
    diff = np.abs(backend.infer(image) - reference.infer(image)).max()
    assert diff < 1e-3, diff


def test_camera_aware_scale(tmp_path):
    config_path = camera_aware_config_file(tmp_path)
    reference, backend = _pair(str(config_path), tmp_path)
    cfg = backend.config
    assert cfg.camera_aware_scale and cfg.name == "tiny-mirror-cam"
    h, w = 240, 320
    image = _image(h, w, seed=2)
    # model-size focal length = half the canonical one: depth halves (no clamp reached)
    fx = 0.5 * cfg.canonical_focal_px * w / cfg.input_hw[1]
    half = Intrinsics(fx, fx, w / 2 - 0.5, h / 2 - 0.5, w, h)
    plain, scaled = backend.infer(image), backend.infer(image, half)
    assert plain.min() > 2 * cfg.min_depth
    np.testing.assert_allclose(scaled, 0.5 * plain, rtol=1e-5, atol=1e-6)
    assert np.abs(scaled - reference.infer(image, half)).max() < 1e-3
    # a long lens pushes everything past max_depth: clamped like the torch backend
    far = Intrinsics(1000 * fx, 1000 * fx, w / 2 - 0.5, h / 2 - 0.5, w, h)
    clamped = backend.infer(image, far)
    assert clamped.max() <= cfg.max_depth and np.isclose(clamped.max(), cfg.max_depth)
    assert np.abs(clamped - reference.infer(image, far)).max() < 1e-3
    np.testing.assert_allclose(backend.infer(image, Intrinsics(0, 0, 0, 0, w, h)), plain)


def test_onnx_file_alone_is_enough(pair, tmp_path):
    reference, backend = pair
    lone = tmp_path / "elsewhere" / "renamed.onnx"
    lone.parent.mkdir()
    shutil.copy(backend.onnx_path, lone)
    assert not sidecar_path(lone).exists()
    alone = OnnxRuntimeBackend(onnx_path=str(lone))  # no model name, no weights, no sidecar
    assert alone.config == reference.config
    image = _image(100, 120, seed=3)
    np.testing.assert_array_equal(alone.infer(image), backend.infer(image))


def test_onnx_without_our_metadata_is_refused(pair, tmp_path):
    _, backend = pair
    graph = onnx.load(str(backend.onnx_path))
    del graph.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(graph, str(bare))
    with pytest.raises(ConfigError, match="training.export"):
        OnnxRuntimeBackend(onnx_path=str(bare))


def test_missing_onnx_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxRuntimeBackend(onnx_path=str(tmp_path / "nope.onnx"))


@pytest.mark.parametrize("bad", BAD_IMAGES, ids=BAD_IMAGE_IDS)
def test_bad_images_rejected(pair, bad):
    _, backend = pair
    with pytest.raises(ValueError):
        backend.infer(bad)


def test_describe_lists_providers(pair):
    reference, backend = pair
    info = backend.describe()
    h, w = backend.config.input_hw
    assert info["backend"] == "onnxruntime" and info["providers"] == CPU
    assert info["device"] == "cpu" and info["precision"] == "fp32"
    assert info["input_size"] == f"{w}x{h}" and info["onnx"] == str(backend.onnx_path)
    # the node logs these keys for every backend
    for key in ("model", "method", "backbone", "device", "precision", "input_size"):
        assert info[key] == reference.describe()[key], key


def test_model_name_is_exported_into_the_cache_dir(tmp_path):
    backend = create_backend("onnxruntime", model="tiny-depthclip", backbone_weights="random",
                             cache_dir=str(tmp_path / "cache"))
    assert backend.onnx_path.parent == tmp_path / "cache" and backend.onnx_path.is_file()
    assert backend.config.name == "tiny-depthclip"
    assert backend.infer(_image(60, 80)).shape == (60, 80)


def test_cached_export_is_reused_for_file_weights(tmp_path, monkeypatch):
    """With a local backbone file the export is keyed by content and reused; random is not."""
    from safetensors.torch import save_file

    import clip_depth_ros.export_onnx as export_module
    from clip_depth_ros.model.factory import _open_clip
    torch.manual_seed(3)
    clip = _open_clip().create_model("cdr-tiny-vit", pretrained=None, force_image_size=(192, 256))
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    cache = tmp_path / "cache"
    first = OnnxRuntimeBackend(model="tiny-mirror", backbone_weights=str(weights),
                               cache_dir=str(cache))

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cached graph fits")
    monkeypatch.setattr(export_module, "export_onnx", no_export)
    second = OnnxRuntimeBackend(model="tiny-mirror", backbone_weights=str(weights),
                                cache_dir=str(cache))
    assert second.onnx_path == first.onnx_path
    with pytest.raises(AssertionError, match="exported again"):
        OnnxRuntimeBackend(model="tiny-mirror", backbone_weights="random", cache_dir=str(cache))


def test_provider_choice():
    only_cpu = [CPU]
    assert choose_providers(None, "cpu", only_cpu) == [CPU]
    assert choose_providers("auto", "cuda:1", [TRT, CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("tensorrt", "cpu", [TRT, CUDA, CPU]) == [TRT, CUDA, CPU]
    assert choose_providers("tensorrt", "cpu", only_cpu) == [CPU]  # logged, not fatal
    assert choose_providers("cuda", "cpu", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers([CUDA], "cpu", only_cpu) == [CPU]
    with pytest.raises(ValueError, match="providers"):
        choose_providers("openvino", "cpu", only_cpu)


@pytest.mark.parametrize("kwargs,match", [
    ({"precision": "bf16"}, "precision"),
    ({"precision": "fp16"}, "TensorRT provider"),
    ({"device": "gpu"}, "device"),
    ({"device": "cpu:1"}, "device"),
])
def test_bad_settings_raise_value_error(pair, kwargs, match):
    _, backend = pair
    with pytest.raises(ValueError, match=match):
        OnnxRuntimeBackend(onnx_path=str(backend.onnx_path), **kwargs)


def test_closed_backend_refuses_to_run(pair):
    _, backend = pair
    closed = OnnxRuntimeBackend(onnx_path=str(backend.onnx_path))
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.infer(_image(10, 10))


def test_bundled_weights_by_name_export_once_and_match_torch(tmp_path):
    """weights:=demo-mirror (the node's default) with backend:=onnxruntime: the bundled file is
    found by name, exported once (its image encoder is in the weights, so the export is
    cached), and matches torch."""
    first = create_backend("onnxruntime", model=None, weights="demo-mirror", cache_dir=tmp_path)
    exported = sorted(tmp_path.glob("*.onnx"))
    assert len(exported) == 1 and "random" not in exported[0].name
    stamp = exported[0].stat().st_mtime_ns
    again = create_backend("onnxruntime", model=None, weights="demo-mirror", cache_dir=tmp_path)
    assert again.onnx_path == first.onnx_path and exported[0].stat().st_mtime_ns == stamp
    torch_backend = create_backend("torch", model=None, weights="demo-mirror")
    image = np.random.default_rng(4).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert np.abs(first.infer(image) - torch_backend.infer(image)).max() < 1e-3


def test_session_start_prints_nothing_of_onnxruntime_own(pair, tmp_path):
    """Issue 13 item 16: onnxruntime's C++ logger wrote its own warning lines (outside the
    node's log) on every start; its severity is errors only, and a fresh process that creates
    the backend writes nothing at all."""
    import subprocess
    import sys
    from pathlib import Path

    from clip_depth_ros.backends.onnxruntime_backend import ORT_LOG_SEVERITY
    _, backend = pair
    assert ORT_LOG_SEVERITY == 3
    assert backend._session.get_session_options().log_severity_level == ORT_LOG_SEVERITY
    root = Path(__file__).resolve().parents[1]
    script = ("from clip_depth_ros.backends import create_backend\n"
              f"create_backend('onnxruntime', onnx_path={str(backend.onnx_path)!r})\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(root), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr
