"""The shipped demo model: size limit, sidecar contents, and its recorded held-out metrics."""
from __future__ import annotations

import pytest

from clip_depth_ros.config import BUNDLED_WEIGHTS_DIR, resolve_weights
from clip_depth_ros.weights import read_sidecar

NAME = "demo-mirror"
WEIGHTS = BUNDLED_WEIGHTS_DIR / f"{NAME}.safetensors"


def test_demo_weights_are_bundled_small_and_documented():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size <= 20 * 1024 * 1024
    meta = read_sidecar(WEIGHTS)
    assert meta["config"]["name"] == NAME
    assert "training.train" in meta["metadata"]["command"]
    assert meta["metadata"]["train_config"]["data"]["kind"] == "synthetic-indoor"
    assert resolve_weights(NAME) == str(WEIGHTS)


@pytest.mark.slow
def test_shipped_model_reproduces_its_recorded_heldout_metrics():
    from training.package_model import evaluate_heldout
    recorded = read_sidecar(WEIGHTS)["metadata"]["heldout_eval"]
    split = recorded["split"]
    # the held-out scenes are not the training or validation scenes
    train_data = read_sidecar(WEIGHTS)["metadata"]["train_config"]["data"]
    assert split["seed"] not in (train_data["seed"], train_data["seed"] + 7919)
    metrics = evaluate_heldout(str(WEIGHTS), split)
    assert metrics["n_images"] == recorded["metrics"]["n_images"] == split["samples"]
    for key in ("d1", "abs_rel", "rmse"):
        assert metrics[key] == pytest.approx(recorded["metrics"][key], abs=2e-3), key
    assert metrics["median_scaling"] is False  # metric depth
