"""The model's own confidence: Mirror's uncertainty output (trained by training.uncertainty on
frozen weights), bin heads' entropy, and both through ONNX as a second graph output."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from clip_depth_ros.backends import create_backend
from clip_depth_ros.config import get_model_config
from clip_depth_ros.export_onnx import CONFIDENCE_OUTPUT, OUTPUT_NAME, export_onnx
from clip_depth_ros.model import create_model, save_weights
from clip_depth_ros.preprocessing import preprocess
from training.uncertainty import laplace_nll
from training.uncertainty import main as uncertainty_main


def _tiny_weights(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny-mirror", backbone_weights="random", for_training=True)
    model.eval()
    return model, save_weights(model, tmp_path / "tiny.safetensors",
                               parts=("head", "image_encoder"))


def test_laplace_nll_prefers_the_scale_that_matches_the_error():
    depth = torch.full((1, 1, 4, 4), 2.0)
    target = torch.full((1, 1, 4, 4), 2.0 * np.exp(0.1))  # |log error| = 0.1 everywhere
    valid = torch.ones_like(depth, dtype=torch.bool)
    losses = {b: float(laplace_nll(torch.full_like(depth, np.log(b)), depth, target, valid))
              for b in (0.02, 0.1, 0.5)}
    assert losses[0.1] < losses[0.02] and losses[0.1] < losses[0.5]


def test_the_scale_invariant_residual_ignores_each_images_scale_error():
    rng = np.random.default_rng(2)
    target = torch.from_numpy(rng.uniform(1, 5, (2, 1, 6, 8)).astype(np.float32))
    shape = torch.from_numpy(np.exp(rng.normal(0, 0.05, (2, 1, 6, 8))).astype(np.float32))
    scaled = target * shape * torch.tensor([1.4, 0.7]).view(2, 1, 1, 1)  # a scale per image
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[1, :, :2] = False  # the median over valid pixels only
    log_b = torch.full_like(target, np.log(0.05))
    si = float(laplace_nll(log_b, scaled, target, valid, "scale_invariant"))
    si_shape_only = float(laplace_nll(log_b, target * shape, target, valid, "scale_invariant"))
    metric = float(laplace_nll(log_b, scaled, target, valid, "metric"))
    assert si == pytest.approx(si_shape_only, rel=1e-5)  # the per-image factor is gone
    assert metric > si + 3  # |log 1.4|, |log 0.7| over b = 0.05: the metric residual sees it


def test_fine_tuning_adds_a_confidence_output_and_keeps_depth(tmp_path, capsys):
    model, weights = _tiny_weights(tmp_path)
    out = tmp_path / "with_unc.safetensors"
    assert uncertainty_main(["--weights", str(weights), "--out", str(out), "--steps", "6",
                             "--batch-size", "2"]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["config"]["mirror"]["uncertainty"] is True
    assert side["metadata"]["uncertainty"]["steps"] == 6
    plain = create_backend("torch", model=None, weights=str(weights), fast_path="never")
    tuned = create_backend("torch", model=None, weights=str(out), fast_path="never")
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    a, b = plain.infer_frame(image), tuned.infer_frame(image)
    # depth is untouched: every trained weight of the plain model is in the tuned one, bit
    # for bit, and so is its depth up to float rounding (the tuned head computes depth and
    # uncertainty in one 2-channel convolution, whose kernel may sum in another order)
    tuned_state = tuned.model.state_dict()
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, tuned_state[name]), name
    np.testing.assert_allclose(b.depth_m, a.depth_m, rtol=2e-6, atol=0)
    assert a.model_confidence is None
    conf = b.model_confidence
    assert conf.shape == tuned.config.input_hw and (0 <= conf).all() and (conf <= 1).all()


def test_the_uncertainty_head_can_learn_from_the_varied_worlds(tmp_path, capsys):
    _, weights = _tiny_weights(tmp_path)
    out = tmp_path / "worlds_unc.safetensors"
    assert uncertainty_main(["--weights", str(weights), "--out", str(out), "--steps", "2",
                             "--batch-size", "2", "--data", "synthetic-worlds"]) == 0
    recipe = json.loads(out.with_suffix(".json").read_text())["metadata"]["uncertainty"]
    assert recipe["data"] == "synthetic-worlds" and "focal_range" not in recipe


def test_refuses_a_bad_out_path_with_one_line(tmp_path, capsys):
    _, weights = _tiny_weights(tmp_path)
    assert uncertainty_main(["--weights", str(weights), "--out",
                             str(tmp_path / "nodir" / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and not (tmp_path / "nodir").exists()


@pytest.mark.parametrize("name", ["tiny-mirror-unc", "tiny-moa", "tiny-depthclip"])
def test_confidence_travels_through_onnx_as_a_second_output(tmp_path, name):
    import onnx
    if name == "tiny-mirror-unc":
        base = get_model_config("tiny-mirror")
        config = dataclasses.replace(base, name=name, mirror=dataclasses.replace(
            base.mirror, uncertainty=True))
    else:
        config = get_model_config(name)
    torch.manual_seed(1)
    model = create_model(config, backbone_weights="random")
    if name == "tiny-mirror-unc":  # a trained-looking head: not the constant initial value
        torch.nn.init.normal_(model.head.uncertainty.weight, std=0.05)
    path = export_onnx(model, tmp_path / f"{name}.onnx")  # confidence checked inside too
    assert [o.name for o in onnx.load(str(path)).graph.output] == [OUTPUT_NAME,
                                                                   CONFIDENCE_OUTPUT]
    runtime = create_backend("onnxruntime", onnx_path=str(path))
    image = np.random.default_rng(2).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    got = runtime.infer_frame(image).model_confidence
    x = torch.from_numpy(preprocess(image, config))
    with torch.no_grad():
        want = model.infer_with_confidence(x)[1][0, 0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert want.std() > 1e-4  # a map, not a constant
