"""Focal conditioning: a camera-aware decoder told log(f_px / canonical_focal_px)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_depth_ros.backends.base import camera_inputs, preprocess
from clip_depth_ros.backends.torch_backend import TorchBackend
from clip_depth_ros.config import ConfigError, ModelConfig, get_model_config
from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.model import create_model, load_weights, save_weights
from clip_depth_ros.model.factory import NEW_PART_KEYS
from clip_depth_ros.weights import WeightsError
from model_helpers import camera_aware_config_file, random_batch


def _conditioned(tmp_path, perturb: bool = True):
    path = camera_aware_config_file(tmp_path, "tiny-mirror-fc", focal_conditioning=True)
    torch.manual_seed(0)
    model = create_model(str(path), backbone_weights="random").eval()
    if perturb:  # a trained conditioning (the zero init is the identity)
        with torch.no_grad():
            for stage in model.head.stages:
                stage.camera[2].weight.normal_(0, 0.5)
    return model, path


def test_config_needs_camera_aware_mirror():
    base = get_model_config("tiny-mirror").to_dict()
    with pytest.raises(ConfigError, match="focal_conditioning"):
        ModelConfig.from_dict(dict(base, focal_conditioning=True))
    moa = get_model_config("tiny-moa").to_dict()
    with pytest.raises(ConfigError, match="focal_conditioning"):
        ModelConfig.from_dict(dict(moa, camera_aware_scale=True, focal_conditioning=True))
    assert ModelConfig.from_dict(dict(base, camera_aware_scale=True,
                                      focal_conditioning=True)).focal_conditioning


def test_zero_initialised_conditioning_is_the_unconditioned_model(tmp_path):
    model, _ = _conditioned(tmp_path, perturb=False)
    plain = create_model(str(camera_aware_config_file(tmp_path)), backbone_weights="random")
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if ".camera." not in k})
    plain.eval()
    x = random_batch(model.config, 2)
    with torch.no_grad():
        for f in (90.0, 400.0):
            torch.testing.assert_close(model.infer(x, f), plain.infer(x, f))


def test_the_decoder_reads_the_lens(tmp_path):
    model, _ = _conditioned(tmp_path)
    f_c = model.config.canonical_focal_px
    x = random_batch(model.config, 1)
    with torch.no_grad():
        wide, tele = model(x, 0.5), model(x, 2.0)
        assert (wide - tele).abs().max() > 1e-3  # canonical depth now depends on the lens
        torch.testing.assert_close(model(x), model(x, 1.0))  # unknown lens = canonical camera
        cfg = model.config
        torch.testing.assert_close(model.infer(x, 2 * f_c),
                                   (model(x, 2.0) * 2.0).clamp(cfg.min_depth, cfg.max_depth))
        # a batch with one lens per image equals the images one by one
        both = model(torch.cat([x, x]), torch.tensor([0.5, 2.0]))
        torch.testing.assert_close(both, torch.cat([wide, tele]))


def test_weights_from_before_the_conditioning_start_a_fine_tune_only(tmp_path):
    plain = create_model(str(camera_aware_config_file(tmp_path)), backbone_weights="random")
    old = save_weights(plain, tmp_path / "old.safetensors")
    model, _ = _conditioned(tmp_path, perturb=False)
    with pytest.raises(WeightsError, match="missing"):
        load_weights(model, old)  # inference never silently runs half-initialised
    load_weights(model, old, may_lack=NEW_PART_KEYS)
    torch.testing.assert_close(model.head.out.weight, plain.head.out.weight)


def test_torch_backend_plain_and_fast_path_pass_the_lens(tmp_path):
    model, path = _conditioned(tmp_path)
    weights = save_weights(model, tmp_path / "fc.safetensors", parts=("head", "image_encoder"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    k = Intrinsics(100.0, 100.0, 63.5, 47.5, 128, 96)
    plain = TorchBackend(None, weights=str(weights), fast_path="never")
    fast = TorchBackend(None, weights=str(weights), fast_path="always")
    a, b = plain.infer(image, k), fast.infer(image, k)
    assert np.median(np.abs(a - b) / a) < 0.01  # the two paths differ only in resize filters
    # the lens reaches the decoder: a 2x lens is not just 2x the metres
    k2 = Intrinsics(200.0, 200.0, 63.5, 47.5, 128, 96)
    c = plain.infer(image, k2)
    assert np.median(np.abs(c / (2 * a) - 1)) > 1e-3
    # and the backend's value is the model's own, at the model input's focal length
    height, width = model.config.input_hw
    f_net = k.scaled_to(width, height).fx
    x = torch.from_numpy(preprocess(image, model.config))
    with torch.no_grad():
        ref = model.infer(x, f_net)[0, 0].numpy()
    direct, confidence = plain.predict(x.numpy(), *camera_inputs(k, image.shape[1]))
    assert confidence is None  # no uncertainty head, no bins
    np.testing.assert_allclose(direct, ref, rtol=1e-5, atol=1e-5)


def test_a_conditioned_model_exports_and_onnxruntime_gives_torch_depth(tmp_path):
    """The camera contract travels into the graph: f_px (at the image's resolution) and the
    image width are graph inputs, so onnxruntime gives the torch backend's depth per lens."""
    from clip_depth_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    from clip_depth_ros.export_onnx import CAMERA_INPUTS, INPUT_NAME, export_onnx

    import onnx
    model, _ = _conditioned(tmp_path)
    weights = save_weights(model, tmp_path / "fc.safetensors", parts=("head", "image_encoder"))
    with pytest.raises(ConfigError, match="overwrite"):  # fc.json is the weights' sidecar
        export_onnx(model, tmp_path / "fc.onnx")
    path = export_onnx(model, tmp_path / "fc_graph.onnx")  # checked against torch inside
    assert [i.name for i in onnx.load(str(path)).graph.input] == [INPUT_NAME, *CAMERA_INPUTS]
    runtime = OnnxRuntimeBackend(onnx_path=str(path))
    reference = TorchBackend(None, weights=str(weights), fast_path="never")
    image = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    results = []
    for f_px in (0.0, 60.0, 200.0):  # unknown lens, a wide and a long one
        k = Intrinsics(f_px, f_px, 63.5, 47.5, 128, 96) if f_px else None
        a, b = reference.infer(image, k), runtime.infer(image, k)
        assert np.median(np.abs(a - b) / a) < 1e-4
        results.append(b)
    assert not np.allclose(results[1], results[2])  # the lens reaches the graph


@pytest.mark.slow
def test_a_conditioned_model_trains_and_its_checkpoint_records_the_option(tmp_path):
    root = Path(__file__).resolve().parents[1]
    _, path = _conditioned(tmp_path, perturb=False)
    sets = [f"model={path}", "backbone_weights=random", "batch_size=2", "data.workers=0",
            "data.train_samples=8", "data.val_samples=2", "data.render_size=[48,64]",
            "data.focal_range=[40,90]", "warmup_steps=1", "max_steps=2",
            f"out_dir={tmp_path / 'run'}"]
    res = subprocess.run([sys.executable, "-m", "training.train",
                          *[a for s in sets for a in ("--set", s)]], cwd=root,
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(root),
                                  OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    sidecar = json.loads((tmp_path / "run" / "best.json").read_text())
    assert sidecar["config"]["focal_conditioning"] is True
    trained = create_model(None, weights=str(tmp_path / "run" / "best.safetensors"))
    moved = max(float(s.camera[2].weight.abs().max()) for s in trained.head.stages)
    assert moved > 0 and math.isfinite(moved)  # the conditioning was trained
