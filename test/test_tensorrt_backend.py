"""TensorRT backend on a real GPU: build, cache, run, parity with onnxruntime.

Skipped where TensorRT or a CUDA GPU is missing -- which is every machine of this project so
far (see README): this file has not run in the project's CI.  The builder logic of both
TensorRT lines runs without them against fakes in test_trt_versions.py.
"""
import numpy as np
import pytest
import torch

trt = pytest.importorskip("tensorrt", reason="needs TensorRT and a CUDA GPU (no TensorRT "
                          "wheel on this project's machines; see README)")
if not torch.cuda.is_available():
    pytest.skip("needs TensorRT and a CUDA GPU (no CUDA GPU here)", allow_module_level=True)

from model_helpers import camera_aware_config_file  # noqa: E402

from clip_depth_ros.backends import create_backend  # noqa: E402
from clip_depth_ros.backends.trt_compat import trt_line  # noqa: E402
from clip_depth_ros.errors import BackendError  # noqa: E402
from clip_depth_ros.export_onnx import export_onnx  # noqa: E402
from clip_depth_ros.geometry import Intrinsics  # noqa: E402
from clip_depth_ros.model import create_model  # noqa: E402

LINE = trt_line(trt.__version__)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=["plain", "camera-aware"])
def graph(request, tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("trt")
    name = "tiny-mirror" if request.param == "plain" else str(camera_aware_config_file(folder))
    return export_onnx(create_model(name, backbone_weights="random"),
                       folder / "model.onnx"), folder / "engines"


@pytest.mark.parametrize("precision,tolerance_m", [("fp16", 1e-2), ("fp32", 1e-3)])
def test_engine_matches_onnxruntime(graph, precision, tolerance_m):
    onnx_path, cache = graph
    reference = create_backend("onnxruntime", onnx_path=str(onnx_path))
    backend = create_backend("tensorrt", onnx_path=str(onnx_path), precision=precision,
                             cache_dir=str(cache), device="cuda:0")
    for h, w in [(480, 640), (192, 256), (7, 5)]:
        image = _image(h, w, seed=h)
        lens = Intrinsics(0.8 * w, 0.8 * w, (w - 1) / 2, (h - 1) / 2, w, h)
        for intrinsics in (None, lens):
            depth = backend.infer(image, intrinsics)
            assert depth.shape == (h, w) and depth.dtype == np.float32
            cfg = backend.config
            assert depth.min() >= cfg.min_depth and depth.max() <= cfg.max_depth
            assert np.abs(depth - reference.infer(image, intrinsics)).max() < tolerance_m
    info = backend.describe()
    assert info["backend"] == "tensorrt" and info["precision"] == precision
    assert info["engine"].endswith(".engine")
    assert info["typing"] == ("weak" if LINE == 10 else "strong")
    backend.close()


def test_second_start_reuses_the_cached_engine(graph):
    from clip_depth_ros.backends.engine_cache import load_or_build
    from clip_depth_ros.backends.trt_toolchain import TensorRTToolchain
    from clip_depth_ros.export_onnx import read_onnx_config
    onnx_path, cache = graph
    toolchain = TensorRTToolchain(trt, "cuda:0", cache_dir=cache)
    shape = (1, 3, *read_onnx_config(onnx_path).input_hw)
    first = load_or_build(onnx_path, "fp16", cache, toolchain=toolchain, input_shape=shape)
    second = load_or_build(onnx_path, "fp16", cache, toolchain=toolchain, input_shape=shape)
    assert not second.built and second.path == first.path


def test_int8_needs_calibration_images_on_10_and_is_refused_on_11(graph, tmp_path):
    """TensorRT 10 calibrates int8 from a folder (an empty one is refused); 11 has no
    calibrators and refuses int8 without a Q/DQ graph."""
    onnx_path, cache = graph
    with pytest.raises(BackendError, match="Q/DQ" if LINE == 11 else "calibration images"):
        create_backend("tensorrt", onnx_path=str(onnx_path), precision="int8",
                       calibration_images_dir=str(tmp_path), cache_dir=str(cache))


def test_bad_images_rejected(graph):
    onnx_path, cache = graph
    backend = create_backend("tensorrt", onnx_path=str(onnx_path), cache_dir=str(cache))
    with pytest.raises(ValueError):
        backend.infer(np.zeros((48, 64), np.uint8))
