"""OpenVINO backend: parity with torch, float32 output layers in bf16, the camera contract,
what it refuses, and how backend 'auto' chooses it."""
import numpy as np
import pytest
import torch

import openvino as ov

from clip_depth_ros import backends
from clip_depth_ros.backends import auto_backends, create_backend, first_that_serves
from clip_depth_ros.backends.base import DepthBackend
from clip_depth_ros.backends.openvino_backend import (OpenVinoBackend, cpu_runs_bf16,
                                                      float32_section, split_graph)
from clip_depth_ros.errors import (BackendError, ClipDepthError, ConfigError,
                                   DeploymentCheckError)
from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.synthetic import demo_trajectory, random_indoor_scene, render
from model_helpers import BAD_IMAGE_IDS, BAD_IMAGES



def _scene(seed: int, width: int = 320, height: int = 240, f_px: float = 260.0):
    intrinsics = Intrinsics(f_px, f_px, width / 2 - 0.5, height / 2 - 0.5, width, height)
    scene = random_indoor_scene(seed)
    rgb, _ = render(scene, demo_trajectory(scene, 3)[1], intrinsics)
    return rgb, intrinsics


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a / b - 1.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """torch fp32 (the reference) and openvino fp32 / bf16 on the bundled demo weights."""
    cache = tmp_path_factory.mktemp("ov")
    out = {"torch": create_backend("torch", model=None, weights="demo-mirror",
                                   precision="fp32"),
           "fp32": create_backend("openvino", model=None, weights="demo-mirror",
                                  precision="fp32", cache_dir=str(cache))}
    if cpu_runs_bf16():
        out["bf16"] = create_backend("openvino", model=None, weights="demo-mirror",
                                     precision="bf16", cache_dir=str(cache))
    return out


def _bf16(demo):
    """openvino bf16 on the demo weights; on a CPU without native bf16 (no skip: the
    behaviour there is the refusal) None, after checking that bf16 is refused."""
    if "bf16" in demo:
        return demo["bf16"]
    with pytest.raises(ConfigError, match="bf16 natively"):
        create_backend("openvino", onnx_path=str(demo["fp32"].onnx_path), precision="bf16")
    return None


def test_registered_with_its_precisions():
    assert "openvino" in backends.available_backends()
    assert backends.backend_precisions("openvino") == OpenVinoBackend.precisions == \
        ("fp32", "bf16")


def test_satisfies_protocol(demo):
    backend = demo["fp32"]
    assert isinstance(backend, DepthBackend) and backend.name == "openvino"
    info = backend.describe()
    assert info["backend"] == "openvino" and info["precision"] == "fp32"
    assert info["runtime"].startswith("openvino ")


def test_fp32_matches_torch(demo):
    for seed in (0, 1):
        rgb, intrinsics = _scene(seed)
        got = demo["fp32"].infer(rgb, intrinsics)
        ref = demo["torch"].infer(rgb, intrinsics)
        assert got.shape == ref.shape == rgb.shape[:2] and got.dtype == np.float32
        assert np.median(_rel(got, ref)) < 1e-4 and _rel(got, ref).max() < 1e-3


def test_bf16_keeps_float32_output_layers(demo):
    """bf16 runs the network in bf16 and its output layers in float32: depth within 0.5% of
    float32 torch, and not rounded to bf16 steps (an all-bf16 graph gives ~80 distinct values
    on this image, terraces on a floor)."""
    backend = _bf16(demo)
    if backend is None:
        return
    assert backend.describe()["float32_outputs"] == "on"
    assert backend._body is not None and backend._cut
    rgb, intrinsics = _scene(3)
    got = backend.infer_frame(rgb, intrinsics)
    ref = demo["torch"].infer_frame(rgb, intrinsics)
    assert np.median(_rel(got.depth_m, ref.depth_m)) < 0.005
    small, _ = backend.predict(*_inputs(demo["torch"], rgb, intrinsics))
    assert len(np.unique(small)) > 0.5 * small.size
    # the model's own confidence comes out too, close to torch's
    assert got.model_confidence is not None
    assert np.abs(got.model_confidence - ref.model_confidence).max() < 0.02


def _inputs(reference, rgb, intrinsics):
    from clip_depth_ros.preprocessing import camera_inputs, preprocess
    return (preprocess(rgb, reference.config),
            *camera_inputs(intrinsics, rgb.shape[1]))


def test_camera_aware_model_through_bf16_follows_the_lens(demo):
    """The camera-aware demo model (demo-mirror-camaware was retired into demo-mirror) at an
    800 px lens: within 0.5% of torch, and the focal length really reaches the graph (depth
    at 800 px / depth at 400 px as torch has it; f_px answers to several tensor names in
    OpenVINO, and a first version fed none of them)."""
    reference, backend = demo["torch"], _bf16(demo)
    if backend is None:
        return
    assert backend.config.camera_aware_scale
    rgb, _ = _scene(5, 640, 480)
    depth = {}
    for f_px in (800.0, 400.0):
        lens = Intrinsics(f_px, f_px, 319.5, 239.5, 640, 480)
        depth[f_px] = (backend.infer(rgb, lens), reference.infer(rgb, lens))
        assert np.median(_rel(*depth[f_px])) < 0.005, f_px
    ratio_ov = np.median(depth[800.0][0] / depth[400.0][0])
    ratio_torch = np.median(depth[800.0][1] / depth[400.0][1])
    assert abs(ratio_torch - 1.0) > 0.05  # the lens matters to this model
    # a focal length that never reached the graph would give a ratio of 1 (55% off); what
    # is left is the decoder's focal conditioning computed in bf16 (0.12% here)
    assert abs(ratio_ov / ratio_torch - 1.0) < 0.003


def test_graph_without_float32_outputs_is_refused_in_bf16(tmp_path):
    """A graph whose output layers are not float32 (no cut) cannot run bf16 without rounding
    depth: split_graph refuses it; fp32 runs it."""
    path = tmp_path / "plain.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.GELU(),
                              torch.nn.Conv2d(4, 1, 3, padding=1)).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(path), input_names=["image"],
                      output_names=["depth"], dynamo=False)
    model = ov.Core().read_model(str(path))
    assert float32_section(model) == set()
    with pytest.raises(ConfigError, match="fp32"):
        split_graph(model, str(path))


def test_split_leaves_the_original_graph_alone(demo):
    model = ov.Core().read_model(str(demo["fp32"].onnx_path))
    before = len(model.get_ordered_ops())
    body, tail, cuts = split_graph(model)
    assert len(model.get_ordered_ops()) == before
    # only the activation crosses (in bf16, channels-last); the camera's scale is computed
    # in the float32 tail from f_px and image_width, not in the bf16 body
    types = {tuple(o.get_partial_shape().to_shape()): o.get_element_type()
             for o in body.outputs}
    assert types == {(1, 192, 256, 32): ov.Type.bf16}
    assert {"f_px", "image_width"} <= {n for i in tail.inputs for n in i.get_names()}
    # the float32 section is the output layers alone: one convolution, no matmul
    kinds = [n.get_type_name() for n in tail.get_ordered_ops()]
    assert kinds.count("Convolution") == 1 and "MatMul" not in kinds
    assert {o.get_any_name() for o in tail.outputs} == {"depth", "confidence"}
    assert set(cuts) <= {n for i in tail.inputs for n in i.get_names()}
    # each cut tensor leaves the body in the shape and type the tail takes it in
    for name in cuts:
        sent = next(o for o in body.outputs if name in o.get_names())
        taken = next(i for i in tail.inputs if name in i.get_names())
        assert sent.get_partial_shape() == taken.get_partial_shape()
        assert sent.get_element_type() == taken.get_element_type()


@pytest.mark.parametrize("kwargs,match", [
    ({"device": "cuda"}, "CPU"),
    ({"precision": "fp16"}, "fp16"),
])
def test_refuses_what_it_cannot_run(demo, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_backend("openvino", onnx_path=str(demo["fp32"].onnx_path),
                       **{"precision": "fp32", **kwargs})


def test_bf16_refused_where_the_cpu_lacks_it(demo, monkeypatch):
    monkeypatch.setattr("clip_depth_ros.backends.openvino_backend.cpu_has_native_bf16",
                        lambda: False)
    assert not cpu_runs_bf16()
    with pytest.raises(ConfigError, match="bf16 natively"):
        create_backend("openvino", onnx_path=str(demo["fp32"].onnx_path), precision="bf16")


def test_export_without_onnx_is_a_missing_dependency(monkeypatch):
    """The export's imports fail as MissingDependencyError (a ClipDepthError: auto hands
    over to torch), not a bare ImportError."""
    from clip_depth_ros import export_onnx
    from clip_depth_ros.errors import MissingDependencyError
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match="onnx"):
        export_onnx._onnx()
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match="onnxruntime"):
        export_onnx.check_forward(torch.nn.Identity(), "unused.onnx")


def test_closed_backend_says_so(demo, tmp_path):
    backend = create_backend("openvino", onnx_path=str(demo["fp32"].onnx_path),
                             precision="fp32")
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.infer(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("image", BAD_IMAGES, ids=BAD_IMAGE_IDS)
def test_bad_images_give_clear_errors(demo, image):
    with pytest.raises((ValueError, TypeError)):
        demo["fp32"].infer(image)


# ---------------------------------------------------------------- backend auto

def test_auto_prefers_openvino_on_a_bf16_cpu(monkeypatch):
    monkeypatch.setattr(backends, "_cuda_requested", lambda device: False)
    monkeypatch.setattr("clip_depth_ros.backends.openvino_backend.cpu_runs_bf16", lambda: True)
    assert auto_backends("cpu") == ["openvino", "torch"]
    monkeypatch.setattr("clip_depth_ros.backends.openvino_backend.cpu_runs_bf16", lambda: False)
    assert auto_backends("cpu") == ["torch"]


@pytest.mark.parametrize("missing", ["openvino", "onnx", "onnxruntime"])
def test_auto_is_torch_on_a_gpu_or_without_the_export_packages(monkeypatch, missing):
    assert auto_backends("cuda:0") == ["torch"]
    monkeypatch.setattr("clip_depth_ros.backends.openvino_backend.cpu_runs_bf16", lambda: True)
    monkeypatch.setattr(backends, "_cuda_requested", lambda device: False)
    assert auto_backends("auto") == ["openvino", "torch"]
    real = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name: None if name == missing else real(name))
    assert auto_backends("auto") == ["torch"]


def test_options_of_one_backend_steer_auto(monkeypatch):
    """backend auto with an option only one backend takes runs that backend (else the
    option would be silently unused)."""
    from clip_depth_ros.ros.params import PARAMS_BY_NAME, backend_candidates
    monkeypatch.setattr("clip_depth_ros.ros.params.auto_backends",
                        lambda device: ["openvino", "torch"])
    defaults = {name: spec.default for name, spec in PARAMS_BY_NAME.items()}
    assert defaults["backend"] == "auto"
    assert backend_candidates(defaults.get) == ["openvino", "torch"]
    assert backend_candidates({**defaults, "torch_compile": True}.get) == ["torch"]
    assert backend_candidates({**defaults, "torch_fast_path": "always"}.get) == ["torch"]
    assert backend_candidates({**defaults, "backend": "onnxruntime"}.get) == ["onnxruntime"]
    # options only one kind of backend takes pick it: never silently unused
    assert backend_candidates({**defaults, "ort_providers": "cpu"}.get) == ["onnxruntime"]
    assert backend_candidates({**defaults, "calibration_images_dir": "/c"}.get) == ["tensorrt"]
    # a graph file: the backends that run one (torch would run the default weights instead)
    assert backend_candidates({**defaults, "onnx_path": "m.onnx"}.get) == \
        ["openvino", "onnxruntime"]
    monkeypatch.setattr("clip_depth_ros.ros.params.auto_backends", lambda device: ["torch"])
    assert backend_candidates({**defaults, "onnx_path": "m.onnx"}.get) == ["onnxruntime"]


def test_first_that_serves_hands_over_on_refusals_only():
    skipped = []

    def start(name):
        if name == "refuses":
            raise ConfigError("no float32 output section")
        if name == "fails_check":
            raise DeploymentCheckError("off by 3%")
        if name == "bug":
            raise KeyError("a bug")
        return f"started {name}"

    def skip(message, exc):
        skipped.append((message, type(exc).__name__))

    assert first_that_serves(["refuses", "fails_check", "torch"], start, skip) == \
        "started torch"
    assert skipped == [
        ("backend refuses cannot serve this model here (ConfigError: no float32 output "
         "section); trying fails_check", "ConfigError"),
        ("backend fails_check cannot serve this model here (DeploymentCheckError: off by 3%); "
         "trying torch", "DeploymentCheckError")]
    with pytest.raises(KeyError):  # a bug is raised, not skipped
        first_that_serves(["bug", "torch"], start, skip)
    with pytest.raises(ClipDepthError, match="3%"):  # the last one's refusal is raised
        first_that_serves(["refuses", "fails_check"], start, skip)
