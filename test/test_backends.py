"""Backends: registry, the torch backend's image contract, precision, shared preprocessing."""

import numpy as np
import pytest
import torch

from clip_depth_ros.backends import available_backends, create_backend
from clip_depth_ros.backends.base import (DepthBackend, camera_inputs, check_image, preprocess,
                                          resize_back)
from clip_depth_ros.config import get_model_config
from clip_depth_ros.geometry import Intrinsics
from model_helpers import BAD_IMAGE_IDS, BAD_IMAGES, camera_aware_config_file


def _build(seed=0, **kwargs):
    torch.manual_seed(seed)
    return create_backend("torch", **{"model": "tiny-mirror", **kwargs})


@pytest.fixture(scope="module")
def backend():
    return _build()


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_registry_lists_torch():
    assert "torch" in available_backends()
    assert available_backends() == sorted(available_backends())


def test_unknown_backend_lists_available():
    with pytest.raises(ValueError) as info:
        create_backend("tvm")  # openvino, this test's first example, is a backend now
    msg = str(info.value)
    assert "tvm" in msg and all(name in msg for name in available_backends())


def test_torch_backend_satisfies_protocol(backend):
    assert isinstance(backend, DepthBackend)
    assert backend.name == "torch"


@pytest.mark.parametrize("h,w", [(480, 640), (720, 1280), (7, 5)])
def test_infer_returns_float32_depth_at_image_size(backend, h, w):
    cfg = backend.config
    depth = backend.infer(_image(h, w, seed=h))
    assert isinstance(depth, np.ndarray)
    assert depth.shape == (h, w) and depth.dtype == np.float32
    assert np.isfinite(depth).all()
    assert depth.min() >= cfg.min_depth and depth.max() <= cfg.max_depth


def test_infer_matches_model_at_input_size(backend):
    """At the input size no resize happens: the backend returns the model's own output."""
    cfg = backend.config
    image = _image(*cfg.input_hw, seed=4)
    mean = np.asarray(cfg.mean, np.float32)
    std = np.asarray(cfg.std, np.float32)
    x = torch.from_numpy(((image / 255.0 - mean) / std).astype(np.float32)
                         .transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        expected = backend.model(x)[0, 0].numpy()
    np.testing.assert_allclose(backend.infer(image), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", BAD_IMAGES, ids=BAD_IMAGE_IDS)
def test_bad_images_rejected(backend, bad):
    with pytest.raises(ValueError):
        backend.infer(bad)
    with pytest.raises(ValueError):
        check_image(bad)


def test_describe(backend):
    info = backend.describe()
    h, w = backend.config.input_hw
    for key in ("backend", "device", "precision", "model", "input_size"):
        assert info[key], key
    assert info["backend"] == "torch" and info["device"] == "cpu"
    assert info["precision"] == "fp32" and info["model"] == "tiny-mirror"
    assert info["input_size"] == f"{w}x{h}"


def test_bf16_close_to_fp32(backend):
    bf16 = _build(seed=0, precision="bf16")  # same seed: same random backbone as the fixture
    assert bf16.describe()["precision"] == "bf16"
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    image = _image(120, 160, seed=8)
    ref, low = backend.infer(image), bf16.infer(image)
    assert low.dtype == np.float32 and low.shape == ref.shape
    assert np.abs(low - ref).mean() < 0.05 * backend.config.max_depth
    assert np.corrcoef(low.ravel(), ref.ravel())[0, 1] > 0.9


def test_unknown_precision_raises():
    with pytest.raises(ValueError) as info:
        _build(precision="fp8")
    msg = str(info.value)  # names the bad value and the choices (was a bare KeyError)
    assert "fp8" in msg and all(p in msg for p in ("fp32", "fp16", "bf16"))


def test_cuda_device_builds_only_with_a_gpu():
    if torch.cuda.is_available():
        assert _build(device="cuda").device.type == "cuda"
        return
    with pytest.raises(RuntimeError, match="cuda"):
        _build(device="cuda")


def test_numpy_preprocess_matches_manual():
    cfg = get_model_config("tiny-mirror")
    image = _image(*cfg.input_hw, seed=1)
    expected = (image.astype(np.float64) / 255.0 - np.array(cfg.mean)) / np.array(cfg.std)
    expected = expected.transpose(2, 0, 1)[None]
    got = preprocess(image, cfg)
    assert got.dtype == np.float32 and got.shape == (1, 3, *cfg.input_hw)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_backend_preprocess_resizes_to_input(backend):
    cfg = backend.config
    batch = preprocess(_image(480, 640), cfg)
    assert tuple(batch.shape) == (1, 3, *cfg.input_hw) and batch.dtype == np.float32
    # a uniform image stays uniform through the resize
    grey = preprocess(np.full((300, 500, 3), 200, np.uint8), cfg)
    expected = (200 / 255.0 - np.array(cfg.mean)) / np.array(cfg.std)
    np.testing.assert_allclose(grey[0].max(axis=(1, 2)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grey[0].min(axis=(1, 2)), expected, rtol=1e-5, atol=1e-5)


def test_resize_back():
    depth = np.full((12, 16), 3.0, np.float32)
    out = resize_back(depth, 40, 30)
    assert out.shape == (30, 40) and out.dtype == np.float32
    np.testing.assert_allclose(out, 3.0)


def test_camera_inputs_are_the_focal_length_at_the_image_resolution():
    intr = Intrinsics(fx=500.0, fy=480.0, cx=319.5, cy=239.5, width=640, height=480)
    f_px, width = camera_inputs(intr, 640)
    assert f_px.dtype == width.dtype == np.float32 and f_px.shape == width.shape == (1,)
    assert f_px[0] == pytest.approx(500.0) and width[0] == pytest.approx(640.0)
    assert camera_inputs(None, 640)[0][0] == 0.0  # unknown lens
    assert camera_inputs(Intrinsics(0.0, 500.0, 320, 240, 640, 480), 640)[0][0] == 0.0


def test_model_converts_the_focal_length_to_its_input_size(tmp_path):
    """The one camera contract: f_px at the image's resolution, converted inside infer."""
    backend = _build(model=str(camera_aware_config_file(tmp_path)))
    model, cfg = backend.model, backend.config
    h, w = cfg.input_hw
    x = torch.from_numpy(preprocess(_image(h, w, seed=3), cfg))
    with torch.no_grad():
        at_input = model.infer(x, torch.tensor([0.5 * cfg.canonical_focal_px]))
        at_image = model.infer(x, torch.tensor([0.5 * cfg.canonical_focal_px * 640 / w]),
                               torch.tensor([640.0]))
        unknown = model.infer(x, torch.tensor([0.0]), torch.tensor([640.0]))
        canonical = model.infer(x)
    torch.testing.assert_close(at_image, at_input)
    torch.testing.assert_close(unknown, canonical)
    assert not torch.allclose(at_input, canonical)


def test_camera_aware_backend_scales_with_intrinsics(tmp_path):
    """A config JSON path with camera_aware_scale: depth follows the camera's focal length."""
    path = camera_aware_config_file(tmp_path)
    backend = _build(model=str(path))
    cfg = backend.config
    assert cfg.camera_aware_scale and cfg.name == "tiny-mirror-cam"
    h, w = 240, 320
    image = _image(h, w, seed=2)
    # fx at the image size such that the model-size focal length is half the canonical one
    # (halving never reaches the clamp, so the bilinear resize back commutes with the scale)
    fx = 0.5 * cfg.canonical_focal_px * w / cfg.input_hw[1]
    intr = Intrinsics(fx, fx, w / 2 - 0.5, h / 2 - 0.5, w, h)
    plain = backend.infer(image)
    scaled = backend.infer(image, intr)
    assert plain.min() > 2 * cfg.min_depth
    np.testing.assert_allclose(scaled, 0.5 * plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.infer(image, Intrinsics(0, 0, 0, 0, w, h)), plain)


def test_convolutions_run_channels_last_with_the_same_depth(backend):
    """The backend keeps conv weights channels-last (the fast oneDNN/cuDNN kernels) and the
    depth equals the plain contiguous model's."""
    convs = [m for m in backend.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last)
                         for m in convs if m.weight.shape[-1] > 1)
    plain = _build()  # same seed: same random weights
    for m in plain.model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            m.weight.data = m.weight.data.contiguous()
    image = _image(120, 160, seed=9)
    np.testing.assert_allclose(backend.infer(image), plain.infer(image), rtol=1e-4, atol=1e-4)


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: some cpu\nflags\t\t: fpu sse2 {flags}\n\n")
    return str(path)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from clip_depth_ros.backends.torch_backend import cpu_has_native_bf16
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16 avx512_vnni"))
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "amx_tile amx_bf16"))
    assert not cpu_has_native_bf16(_cpuinfo(tmp_path, "avx2 avx512f avx512bw"))  # emulated
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_bf16_only_on_a_cpu_that_computes_it(monkeypatch, native):
    from clip_depth_ros.backends import torch_backend
    monkeypatch.setattr(torch_backend, "cpu_has_native_bf16", lambda: native)
    expected = "bf16" if native else "fp32"
    assert torch_backend.TorchBackend.auto_precision("cpu") == expected
    backend = create_backend("torch", model="tiny-mirror", device="cpu", precision="auto")
    assert backend.describe()["precision"] == expected
    assert next(backend.model.parameters()).dtype == (torch.bfloat16 if native
                                                      else torch.float32)
    # an explicit precision is kept as given
    assert create_backend("torch", model="tiny-mirror", device="cpu",
                          precision="fp32").describe()["precision"] == "fp32"


def test_precision_auto_for_a_backend_without_a_chooser_is_its_first():
    from clip_depth_ros.backends import backend_precisions
    backend = create_backend("onnxruntime", model="tiny-mirror", backbone_weights="random",
                             precision="auto")
    assert backend.describe()["precision"] == backend_precisions("onnxruntime")[0]
    backend.close()


def test_normalisation_per_channel_is_the_broadcast_formula_exactly():
    from clip_depth_ros.preprocessing import normalize_nchw
    config = get_model_config("tiny-mirror")
    image = _image(37, 53, seed=4)
    scale, offset = config.uint8_normalization()
    expected = (image.transpose(2, 0, 1).astype(np.float32) * scale[:, None, None]
                + offset[:, None, None])[None]
    got = normalize_nchw(image, config)
    assert got.shape == (1, 3, 37, 53) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("model", ["tiny-mirror", "tiny-moa", "tiny-depthclip"])
def test_bf16_depth_is_not_rounded_to_bf16_steps(model):
    # bf16 keeps 8 significant bits: depth rounded to it comes in 0.4% steps (terraces on a
    # flat floor); the heads' output layers run in float32 so the depth is continuous
    backend = _build(seed=0, model=model, precision="bf16")
    height, width = backend.config.input_hw
    depth, _ = backend.predict(preprocess(_image(height, width, seed=1), backend.config),
                               *camera_inputs(None, width))
    assert depth.dtype == np.float32
    on_bf16_grid = torch.from_numpy(depth).to(torch.bfloat16).float().numpy() == depth
    assert on_bf16_grid.mean() < 0.2, f"{on_bf16_grid.mean():.0%} of depths are bf16 values"
