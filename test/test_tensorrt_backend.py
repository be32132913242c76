"""TensorRT backend on a real GPU: build, cache, run, parity with onnxruntime.

Skipped where TensorRT or a CUDA GPU is missing -- which is every machine of this project
(see README): this file has not run in the project's CI.
"""
import numpy as np
import pytest
import torch

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (no wheel on this "
                          "project's machines; see README)")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)
import onnxruntime  # noqa: F401

from clip_depth_ros.backends import create_backend  # noqa: E402
from clip_depth_ros.export_onnx import export_onnx  # noqa: E402
from clip_depth_ros.model import create_model  # noqa: E402


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("trt")
    return export_onnx(create_model("tiny-mirror", backbone_weights="random"),
                       folder / "model.onnx"), folder / "engines"


@pytest.mark.parametrize("precision,tolerance_m", [("fp16", 1e-2), ("fp32", 1e-3)])
def test_engine_matches_onnxruntime(graph, precision, tolerance_m):
    onnx_path, cache = graph
    reference = create_backend("onnxruntime", onnx_path=str(onnx_path))
    backend = create_backend("tensorrt", onnx_path=str(onnx_path), precision=precision,
                             cache_dir=str(cache), device="cuda:0")
    for h, w in [(480, 640), (192, 256), (7, 5)]:
        image = _image(h, w, seed=h)
        depth = backend.infer(image)
        assert depth.shape == (h, w) and depth.dtype == np.float32
        cfg = backend.config
        assert depth.min() >= cfg.min_depth and depth.max() <= cfg.max_depth
        assert np.abs(depth - reference.infer(image)).max() < tolerance_m
    info = backend.describe()
    assert info["backend"] == "tensorrt" and info["precision"] == precision
    assert info["engine"].endswith(".engine")
    backend.close()


def test_second_start_reuses_the_cached_engine(graph):
    from clip_depth_ros.backends.engine_cache import load_or_build
    from clip_depth_ros.backends.tensorrt_backend import TensorRTToolchain
    onnx_path, cache = graph
    toolchain = TensorRTToolchain("cuda:0", cache_dir=cache)
    first = load_or_build(onnx_path, "fp16", cache, toolchain=toolchain)
    second = load_or_build(onnx_path, "fp16", cache, toolchain=toolchain)
    assert not second.built and second.path == first.path


def test_bad_images_rejected(graph):
    onnx_path, cache = graph
    backend = create_backend("tensorrt", onnx_path=str(onnx_path), cache_dir=str(cache))
    with pytest.raises(ValueError):
        backend.infer(np.zeros((48, 64), np.uint8))
