"""One default model, bundled weights for a bundled name, no random backbone by omission,
and no false open_clip warnings (issue 13 items 1, 7, 8)."""
from __future__ import annotations

import logging

import pytest
import torch

from clip_depth_ros.config import DEFAULT_WEIGHTS, list_bundled_weights, model_or_default
from clip_depth_ros.errors import ClipDepthError, ConfigError
from clip_depth_ros.model import create_model
from clip_depth_ros.model.factory import (_OpenClipChatter, bundled_weights_for,
                                          resolve_model_weights)


def _depth(model, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    height, width = model.config.input_hw
    with torch.no_grad():
        return model(torch.randn(1, 3, height, width))


def test_one_default_shared_by_every_tool():
    assert DEFAULT_WEIGHTS in list_bundled_weights()
    assert model_or_default(None, None) == (None, DEFAULT_WEIGHTS)
    assert model_or_default("", "") == (None, DEFAULT_WEIGHTS)
    assert model_or_default("tiny-mirror", None) == ("tiny-mirror", None)
    assert model_or_default(None, "x.safetensors") == (None, "x.safetensors")
    from clip_depth_ros.ros.params import PARAMS
    assert {p.name: p.default for p in PARAMS}["weights"] == DEFAULT_WEIGHTS


def test_a_bundled_name_runs_its_bundled_weights():
    """`--model demo-mirror` used to run a random backbone and head, silently."""
    assert bundled_weights_for("demo-mirror").endswith("demo-mirror.safetensors")
    assert bundled_weights_for("demo-mirror-canonical") is None  # config only
    assert bundled_weights_for("demo-mirror.json") is None  # a path is not a bundled name
    by_name = create_model("demo-mirror")
    by_weights = create_model(weights="demo-mirror")
    torch.testing.assert_close(_depth(by_name), _depth(by_weights))
    # asking for a backbone in words means: no bundled trained parts
    assert resolve_model_weights("demo-mirror", None, "random") is None
    assert resolve_model_weights("demo-mirror", None, "") == bundled_weights_for("demo-mirror")


def test_a_random_backbone_only_when_asked_in_words(caplog):
    with pytest.raises(ConfigError, match="backbone_weights 'random'"):
        create_model("demo-mirror-canonical")
    with caplog.at_level(logging.WARNING):
        create_model("demo-mirror-canonical", backbone_weights="random")
    random_lines = [r.getMessage() for r in caplog.records if "random" in r.getMessage()]
    assert len(random_lines) == 1 and "backbone_weights: random" in random_lines[0]


def test_missing_weights_name_what_is_accepted():
    with pytest.raises(ClipDepthError, match="demo-mirror") as err:
        create_model(weights="/nonexistent.safetensors")
    assert "not found" in str(err.value) and "\n" not in str(err.value)


def test_no_false_random_init_warning_and_no_open_clip_chatter(caplog):
    """open_clip warned 'initialized randomly' although the weights then load the tower."""
    with caplog.at_level(logging.DEBUG):
        create_model(weights="demo-mirror")
    texts = [r.getMessage() for r in caplog.records]
    assert not [t for t in texts if "random" in t.lower()], texts
    assert not [r for r in caplog.records if "open_clip" in r.pathname], texts


def test_true_open_clip_warnings_still_pass():
    def record(level, msg, path="/x/site-packages/open_clip/factory.py"):
        return logging.LogRecord("root", level, path, 1, msg, None, None)
    expected = _OpenClipChatter(random_expected=True)
    assert not expected.filter(record(logging.INFO, "Loaded built-in model config."))
    assert not expected.filter(record(logging.WARNING, "No pretrained weights loaded for "
                                      "model 'x'. Model initialized randomly."))
    assert expected.filter(record(logging.WARNING, "JIT scripting failed"))
    assert expected.filter(record(logging.ERROR, "Failed to download weights"))
    assert expected.filter(record(logging.INFO, "ours", path="/x/clip_depth_ros/model.py"))
    surprised = _OpenClipChatter(random_expected=False)
    assert surprised.filter(record(logging.WARNING, "Model initialized randomly."))
