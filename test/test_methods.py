"""Depth methods as a registry: lookup and its errors, one tiny model per registered method,
the loss table training keys by the spec's loss name, and no dispatch on method names elsewhere."""
import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clip_depth_ros.config import METHODS, ConfigError, ModelConfig, get_model_config
from clip_depth_ros.model import create_model
from clip_depth_ros.model.methods import MethodSpec, get_method, list_methods, register
from clip_depth_ros.model.trainable import GROUPS, trainable_parameter_groups
from model_helpers import random_batch

ROOT = Path(__file__).resolve().parents[1]
# the registry itself may name methods; nothing else compares config.method with a literal
REGISTRY_FILES = {"clip_depth_ros/model/methods.py"}
_LITERAL = r"""[rbuf]*['"]"""
METHOD_LITERAL_COMPARISON = re.compile(
    rf"method\b\s*(==|!=)\s*{_LITERAL}"                     # x.method == "moa"
    rf"|{_LITERAL}[\w\s-]*['\"]\s*(==|!=)\s*[\w.]*method\b"  # "moa" == x.method
    rf"|method\b\s+(not\s+)?in\s*[(\[{{]\s*{_LITERAL}")      # method in ("mirror", "moa")


def test_registry_covers_every_config_method():
    assert list_methods() == list(METHODS) == ["depthclip", "mirror", "moa"]
    for name in list_methods():
        spec = get_method(name)
        assert spec.name == name and spec.config_field == name
        assert type(spec.default_config()) is spec.section.config_class


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(ConfigError, match="unknown method 'midas'") as err:
        get_method("midas")
    for name in list_methods():
        assert name in str(err.value)
    data = get_model_config("tiny-mirror").to_dict()
    data["method"] = "midas"
    with pytest.raises(ConfigError, match="depthclip, mirror, moa"):
        ModelConfig.from_dict(data)


def test_register_refuses_a_method_without_config_section_or_twice():
    spec = get_method("mirror")
    with pytest.raises(ConfigError, match="no config section"):
        register(MethodSpec("midas", spec.build_head, spec.trainable_groups, spec.loss))
    with pytest.raises(ConfigError, match="already registered"):
        register(spec)


def test_missing_method_section_gets_the_specs_defaults():
    for name in list_methods():
        data = get_model_config(f"tiny-{name}").to_dict()
        data.pop(name)
        config = ModelConfig.from_dict(data)
        assert getattr(config, name) == get_method(name).default_config()


@pytest.mark.parametrize("name", METHODS)
def test_each_method_builds_a_tiny_model_with_trainable_groups(name):
    torch.manual_seed(0)
    model = create_model(f"tiny-{name}", for_training=True)
    assert model.config.method == name
    groups = trainable_parameter_groups(model, apply=True)
    assert tuple(groups) == GROUPS
    own = get_method(name).trainable_groups(model)
    # what the spec trains lands in the groups; DepthCLIP (zero-shot) trains nothing
    assert {id(p) for ps in own.values() for p in ps} == \
        {id(p) for ps in groups.values() for p in ps}
    assert any(groups.values()) == (name != "depthclip")
    model.eval()
    x = random_batch(model.config, n=1, seed=1)
    with torch.no_grad():
        depth, aux = model.forward_with_aux(x)
        plain = model(x)
    assert depth.shape == (1, 1, *model.config.input_hw) and isinstance(aux, dict)
    assert torch.equal(depth, plain)


def test_lora_makes_every_method_trainable():
    import dataclasses

    from clip_depth_ros.config import LoRAConfig
    for name in list_methods():
        config = dataclasses.replace(get_model_config(f"tiny-{name}"),
                                     lora=LoRAConfig(rank=2, targets=["attn.in_proj"]))
        torch.manual_seed(0)
        groups = trainable_parameter_groups(create_model(config, for_training=True))
        assert groups["adapters"], name
        ids = [id(p) for ps in groups.values() for p in ps]
        assert len(ids) == len(set(ids)), name  # one group per parameter


def test_objective_takes_its_loss_from_the_spec():
    from training.objectives import LOSSES, DepthObjective

    for name in list_methods():
        assert get_method(name).loss in LOSSES
    torch.manual_seed(0)
    moa = create_model("tiny-moa", for_training=True)
    objective = DepthObjective(moa)
    assert objective.kind == get_method("moa").loss == "moa"
    assert DepthObjective(moa, loss="silog").kind == "silog"
    with pytest.raises(ConfigError, match="unknown loss 'l2'.*silog, moa"):
        DepthObjective(moa, loss="l2")
    model = copy.deepcopy(moa).train()
    x = random_batch(model.config, n=2, seed=3)
    depth, aux = model.forward_with_aux(x)
    batch = {"depth": torch.full_like(depth, 2.0),
             "valid_mask": torch.ones_like(depth, dtype=torch.bool)}
    loss = objective(depth, batch, torch.device("cpu"), aux)
    assert torch.isfinite(loss) and loss.requires_grad
    with pytest.raises(ValueError, match="bin logits"):
        objective(depth, batch, torch.device("cpu"))


def test_config_module_stays_torch_free():
    script = ("import sys; import clip_depth_ros.config as c; "
              "print(c.METHODS, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("False"), proc.stdout


def test_the_pattern_catches_method_dispatch():
    for line in ('if config.method == "moa":', "if self.config.method != 'depthclip':",
                 'if method in ("mirror", "moa"):', 'elif method not in ["depthclip"]:',
                 'if "moa" == model.config.method:'):
        assert METHOD_LITERAL_COMPARISON.search(line), line
    for line in ("if recorded.method != config.method:", 'print(f"{cfg.method:10s}")',
                 "get_method(config.method).loss"):
        assert not METHOD_LITERAL_COMPARISON.search(line), line


def test_no_module_outside_the_registry_compares_method_names():
    hits = []
    for package in ("clip_depth_ros", "training"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in REGISTRY_FILES:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if METHOD_LITERAL_COMPARISON.search(line.split("#")[0]):
                    hits.append(f"{rel}:{number}: {line.strip()}")
    assert not hits, "dispatch on method names (use clip_depth_ros.model.methods):\n" + \
        "\n".join(hits)
