"""Model configs: every bundled JSON loads and round-trips; bad configs fail with clear errors."""
import json

import pytest

from clip_depth_ros.config import (METHODS, MODEL_CONFIG_DIR, ConfigError, ModelConfig,
                                   get_model_config, list_models)


def _tiny_dict(name="tiny-depthclip"):
    return json.loads((MODEL_CONFIG_DIR / f"{name}.json").read_text())


def test_bundled_models_listed():
    names = list_models()
    assert sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json")) == names
    assert {"tiny-depthclip", "tiny-mirror"} <= set(names)
    # the backbone architecture registry is not a depth model
    assert "cdr-tiny-vit" not in names


@pytest.mark.parametrize("name", list_models())
def test_bundled_config_loads_and_round_trips(name):
    config = get_model_config(name)
    assert config.name == name  # the file name and the recorded name agree
    assert config.method in METHODS
    section = getattr(config, config.method)
    assert section is not None
    as_dict = config.to_dict()
    assert ModelConfig.from_dict(as_dict) == config
    assert json.loads(config.to_json()) == as_dict
    assert ModelConfig.from_dict(json.loads(config.to_json())) == config
    # to_dict is a plain copy: editing it does not reach back into the config
    as_dict["backbone"]["feature_layers"].append(99)
    assert 99 not in config.backbone.feature_layers
    h, w = config.input_hw
    assert h > 0 and w > 0 and 0 < config.min_depth < config.max_depth


def test_method_section_defaults_filled():
    data = _tiny_dict("tiny-depthclip")
    data.pop("depthclip", None)
    config = ModelConfig.from_dict(data)
    assert config.depthclip is not None and len(config.depthclip.words) == len(
        config.depthclip.bins_m) == 7
    assert config.mirror is None


def test_unknown_top_level_key_named():
    data = {**_tiny_dict(), "learning_rat": 1e-4}
    with pytest.raises(ConfigError, match="learning_rat"):
        ModelConfig.from_dict(data)


def test_unknown_nested_key_named_with_section():
    data = _tiny_dict()
    data["backbone"]["layerz"] = [1]
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(data)
    assert "layerz" in str(info.value) and "backbone" in str(info.value)


def test_unknown_method_named():
    data = {**_tiny_dict(), "method": "depthanything"}
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(data)
    msg = str(info.value)
    assert "depthanything" in msg and all(m in msg for m in METHODS)


@pytest.mark.parametrize("size", [[224], [0, 224], [224, -1], [1, 2, 3]])
def test_bad_input_size(size):
    data = {**_tiny_dict(), "input_size": size}
    with pytest.raises(ConfigError, match="input_size"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("lo,hi", [(5.0, 5.0), (10.0, 1.0), (0.0, 10.0), (-1.0, 10.0)])
def test_bad_depth_range(lo, hi):
    data = {**_tiny_dict(), "min_depth": lo, "max_depth": hi}
    with pytest.raises(ConfigError, match="min_depth"):
        ModelConfig.from_dict(data)


def test_words_bins_length_mismatch():
    data = _tiny_dict()
    data["depthclip"] = {"words": ["close", "far"], "bins_m": [1.0, 2.0, 3.0]}
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(data)
    assert "bin" in str(info.value) and "word" in str(info.value)


def test_missing_required_field():
    data = _tiny_dict()
    del data["method"]
    with pytest.raises(ConfigError, match="method"):
        ModelConfig.from_dict(data)


def test_unknown_model_name_lists_bundled():
    with pytest.raises(ConfigError) as info:
        get_model_config("no-such-model")
    msg = str(info.value)
    assert "no-such-model" in msg and "tiny-mirror" in msg


def test_missing_config_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError) as info:
        get_model_config(str(path))
    assert str(path) in str(info.value) and "not found" in str(info.value)


def test_malformed_json_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x", ')
    with pytest.raises(ConfigError, match="broken.json"):
        get_model_config(str(path))


def test_config_json_path_works_like_a_name(tmp_path):
    data = _tiny_dict("tiny-mirror")
    data["name"] = "my-robot-mirror"
    data["max_depth"] = 20.0
    path = tmp_path / "my-robot-mirror.json"
    path.write_text(json.dumps(data))
    config = get_model_config(str(path))
    assert config.name == "my-robot-mirror" and config.max_depth == 20.0
    # a config written by to_json loads back equal
    named = get_model_config("tiny-mirror")
    path2 = tmp_path / "copy.json"
    path2.write_text(named.to_json())
    assert get_model_config(str(path2)) == named


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
