"""Both TensorRT lines' builders and the backend's frame path, against fakes of each API.

TensorRT 10 (weak typing: the fp32 graph + FP16/INT8 flags, entropy calibration) and 11
(strongly typed: no precision flags or calibrators; the fp16 engine is built from the fp16
graph) are faked from their Python surfaces (see trt_fakes.py); no GPU or TensorRT runs here.
"""
import importlib
import json
import sys

import numpy as np
import pytest
import torch
from model_helpers import camera_aware_config_file
from trt_fakes import FakeEngine, fake_tensorrt

from clip_depth_ros.backends.engine_cache import load_or_build
from clip_depth_ros.backends.trt_compat import (EngineBuildError, build_serialized_engine,
                                                network_graph, set_weak_precision, trt_line)
from clip_depth_ros.backends.trt_toolchain import TensorRTToolchain, entropy_calibrator
from clip_depth_ros.errors import BackendError, ConfigError
from clip_depth_ros.export_onnx import export_onnx, read_onnx_config
from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.model import create_model

TRT10, TRT11 = "10.3.0.30", "11.4.0.106"
BACKEND_MODULE = "clip_depth_ros.backends.tensorrt_backend"


class CpuToolchain(TensorRTToolchain):
    """The real toolchain with a named fake GPU (the fakes keep buffers in host memory)."""

    def gpu(self):
        return "NVIDIA Fake Orin", "8.7"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{name: fp32 export} for a plain and a camera-aware tiny model."""
    folder = tmp_path_factory.mktemp("exports")
    torch.manual_seed(0)
    plain = export_onnx(create_model("tiny-mirror", backbone_weights="random"),
                        folder / "plain.onnx")
    cam = export_onnx(create_model(str(camera_aware_config_file(folder)),
                                   backbone_weights="random"), folder / "cam.onnx")
    return {"plain": plain, "camera": cam}


def _build(version, graph, precision, tmp_path, calibrator=None):
    trt = fake_tensorrt(version)
    data = build_serialized_engine(trt, trt.Logger(), graph, precision, calibrator,
                                   tmp_path / "timing.cache")
    return trt, data


@pytest.mark.parametrize("version,line", [("10.3.0", 10), ("10.13.2.6", 10), (TRT11, 11),
                                          ("11.0", 11)])
def test_line_follows_the_installed_version(version, line):
    assert trt_line(version) == line


def test_other_versions():
    assert trt_line("12.1.0") == 11  # built as 11, with a warning
    for bad in ("8.6.1", "9.3.0", "x.y"):
        with pytest.raises(BackendError):
            trt_line(bad)


@pytest.mark.parametrize("precision,flags", [("fp16", ["FP16"]), ("fp32", [])])
def test_tensorrt_10_sets_precision_flags_on_the_fp32_graph(exports, tmp_path, precision, flags):
    graph = network_graph(exports["plain"], precision, 10, tmp_path / "work")
    assert graph == exports["plain"]
    trt, _ = _build(TRT10, graph, precision, tmp_path)
    assert trt.calls == [("create_network", 0)]  # weakly typed, explicit batch
    record = trt.builds[0]
    assert record["builder_flags"] == flags and record["graph"] == str(exports["plain"])
    assert record["fp16_initializers"] == 0 and not record["calibrator"]
    assert (tmp_path / "timing.cache").read_bytes() == b"timing"


def test_tensorrt_10_int8_uses_flags_and_a_calibrator(exports, tmp_path):
    with pytest.raises(EngineBuildError, match="calibrator"):
        _build(TRT10, exports["plain"], "int8", tmp_path)
    trt, _ = _build(TRT10, exports["plain"], "int8", tmp_path, calibrator=object())
    assert trt.builds[0]["builder_flags"] == ["FP16", "INT8"] and trt.builds[0]["calibrator"]


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_11_builds_a_strongly_typed_network_from_the_graph_types(
        exports, tmp_path, precision):
    graph = network_graph(exports["plain"], precision, 11, tmp_path / "work")
    trt, _ = _build(TRT11, graph, precision, tmp_path)
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert trt.calls == [("create_network", strongly_typed)]
    record = trt.builds[0]
    assert record["builder_flags"] == []  # the graph's own types are the precision
    if precision == "fp16":  # parsed the fp16 graph, not the export
        assert graph != exports["plain"] and record["graph"] == str(graph)
        assert graph.parent == tmp_path / "work" and record["fp16_initializers"] > 10
    else:
        assert record["graph"] == str(exports["plain"]) and record["fp16_initializers"] == 0


def test_tensorrt_11_refuses_int8_and_weak_flags(exports, tmp_path):
    with pytest.raises(BackendError, match=r"int8 on TensorRT 11 needs a Q/DQ-quantised graph "
                                           r"\(NVIDIA ModelOpt\)"):
        network_graph(exports["plain"], "int8", 11, tmp_path)
    with pytest.raises(BackendError, match="Q/DQ"):
        _build(TRT11, exports["plain"], "int8", tmp_path)
    trt = fake_tensorrt(TRT11)
    with pytest.raises(BackendError, match="Q/DQ"):
        entropy_calibrator(trt, tmp_path, None, tmp_path / "c", torch.device("cpu"))
    # what the old builder did on 11: BuilderFlag.FP16 is gone
    with pytest.raises(EngineBuildError, match="BuilderFlag.FP16"):
        set_weak_precision(trt, object(), "fp16", None)


def test_parse_errors_are_reported(exports, tmp_path, monkeypatch):
    import trt_fakes
    monkeypatch.setattr(trt_fakes.FakeParser, "fail", True)
    with pytest.raises(EngineBuildError, match="could not parse.*fake parser error"):
        _build(TRT10, exports["plain"], "fp16", tmp_path)


def test_engine_cache_key_differs_between_lines(exports, tmp_path):
    cache, shape = tmp_path / "cache", (1, 3, 192, 256)
    keys, fields = {}, {}
    for version in (TRT10, TRT11):
        chain = CpuToolchain(fake_tensorrt(version), "cpu", cache_dir=cache)
        cached = load_or_build(exports["plain"], "fp16", cache, toolchain=chain,
                               input_shape=shape)
        assert cached.built and cached.engine.record["trt_version"] == version
        keys[version] = cached.key
        fields[version] = json.loads(cached.path.with_suffix(".json").read_text())["fields"]
        again = load_or_build(exports["plain"], "fp16", cache, toolchain=chain,
                              input_shape=shape)
        assert not again.built and again.key == cached.key
    assert keys[TRT10] != keys[TRT11]
    weak, strong = fields[TRT10], fields[TRT11]
    assert (weak["network_typing"], strong["network_typing"]) == ("weak", "strong")
    assert weak["onnx_sha256"] == strong["onnx_sha256"] == weak["network_onnx_sha256"]
    assert strong["network_onnx_sha256"] != strong["onnx_sha256"]  # the fp16 graph's hash


def test_calibrator_on_tensorrt_10(exports, tmp_path):
    import cv2
    images = tmp_path / "calib"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), np.full((60, 80, 3), 40 * i, np.uint8))
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    config = read_onnx_config(exports["plain"])
    calib = entropy_calibrator(fake_tensorrt(TRT10), images, config, tmp_path / "s.calib",
                               torch.device("cpu"))
    assert calib.base_initialised and calib.get_batch_size() == 1
    pointers = [calib.get_batch(["image"]) for _ in range(3)]
    assert pointers[0] == [calib.buffer.data_ptr()] and pointers[1] and pointers[2] is None
    assert calib.read_calibration_cache() is None
    calib.write_calibration_cache(b"scales")
    assert calib.read_calibration_cache() == b"scales"


@pytest.fixture(params=[TRT10, TRT11])
def backend_module(request, monkeypatch):
    """tensorrt_backend imported over a fake tensorrt (and forgotten afterwards)."""
    trt = fake_tensorrt(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    sys.modules.pop(BACKEND_MODULE, None)
    module = importlib.import_module(BACKEND_MODULE)
    yield module, trt
    sys.modules.pop(BACKEND_MODULE, None)
    import clip_depth_ros.backends as package
    if getattr(package, "tensorrt_backend", None) is module:
        delattr(package, "tensorrt_backend")


def _cpu_backend(module, **kwargs):
    """The real TensorRTBackend with host memory as its 'device' (fake engines run there)."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    class CpuBackend(module.TensorRTBackend):
        _resolve_device = staticmethod(lambda device: torch.device("cpu"))
        _device_scope = _stream_scope = staticmethod(nullcontext)

        def _make_toolchain(self, calibration_images_dir, cache_dir, workspace_gb):
            return CpuToolchain(module.trt, "cpu", calibration_images_dir, cache_dir)

        def _new_stream(self):
            return SimpleNamespace(cuda_stream=0, synchronize=lambda: None)

    return CpuBackend(**kwargs)


@pytest.mark.parametrize("model", ["plain", "camera"])
def test_backend_binds_every_input_by_name(backend_module, exports, tmp_path, model):
    module, trt = backend_module
    from clip_depth_ros.backends import create_backend
    backend = _cpu_backend(module, onnx_path=str(exports[model]), cache_dir=str(tmp_path))
    reference = create_backend("onnxruntime", onnx_path=str(exports[model]))
    context = backend._engine.context
    assert set(context.addresses) == set(backend._buffers) == \
        ({"image", "f_px", "image_width", "depth"} if model == "camera" else {"image", "depth"})
    assert all(context.addresses[n] == b.data_ptr() for n, b in backend._buffers.items())
    strong = trt.__version__ == TRT11
    tolerance = 0.01 if strong else 1e-5  # 11: the fp16 graph; 10 (fake): the fp32 graph
    image = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    for intrinsics in (None, Intrinsics(150.0, 150.0, 99.5, 59.5, 200, 120),
                       Intrinsics(300.0, 300.0, 99.5, 59.5, 200, 120)):
        depth = backend.infer(image, intrinsics)
        want = reference.infer(image, intrinsics)
        assert depth.shape == (120, 200) and depth.dtype == np.float32
        assert np.median(np.abs(depth - want) / want) < tolerance
    assert context.runs == 3
    info = backend.describe()
    assert info["typing"] == ("strong" if strong else "weak")
    assert info["runtime"] == f"tensorrt {trt.__version__}"
    assert info["gpu"] == "NVIDIA Fake Orin" and info["engine"].endswith(".engine")
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.predict(np.zeros((1, 3, 192, 256), np.float32), *[np.ones(1, np.float32)] * 2)


def test_backend_refuses_an_engine_without_the_camera_inputs(backend_module, exports, tmp_path):
    module, trt = backend_module
    backend = _cpu_backend(module, onnx_path=str(exports["camera"]), cache_dir=str(tmp_path))
    engine = backend._engine
    plain = FakeEngine(engine.record, [s for s in engine.specs if s[0] != "f_px"])
    with pytest.raises(ConfigError, match="f_px"):
        backend._attach(plain)


def test_backend_precisions(backend_module, exports, tmp_path):
    module, trt = backend_module
    assert module.TensorRTBackend.precisions == ("fp16", "fp32", "int8")
    with pytest.raises(ConfigError, match="bf16"):
        _cpu_backend(module, onnx_path=str(exports["plain"]), precision="bf16")
    with pytest.raises(ConfigError, match="calibration_images_dir"):
        _cpu_backend(module, onnx_path=str(exports["plain"]), precision="int8")
    if trt.__version__ == TRT11:
        with pytest.raises(BackendError, match="Q/DQ"):
            _cpu_backend(module, onnx_path=str(exports["plain"]), precision="int8",
                         calibration_images_dir=str(tmp_path), cache_dir=str(tmp_path))


def test_the_real_backend_needs_a_cuda_gpu(backend_module, exports, monkeypatch):
    module, _ = backend_module
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU host
    with pytest.raises(BackendError, match="CUDA GPU"):
        module.TensorRTBackend(onnx_path=str(exports["plain"]))
