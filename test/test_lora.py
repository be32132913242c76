"""LoRA (through peft) on the tiny open_clip ViT: trainable groups, gradients, save/load of
unmerged weights, merge equality, merged towers free of peft, ONNX export, config checks."""
import copy
import dataclasses

import pytest
import torch

from clip_depth_ros.config import ConfigError, LoRAConfig, ModelConfig, get_model_config
from clip_depth_ros.model import create_model, save_weights
from clip_depth_ros.model.lora import has_lora, lora_parameters
from clip_depth_ros.model.trainable import trainable_parameter_groups
from clip_depth_ros.weights import read_sidecar
from model_helpers import eval_copy as _eval_copy, forward as _out, random_batch as _batch

# q/k/v through peft target_parameters (the default); peft's MultiheadAttention layer + an MLP
TARGETS = {"in_proj": ["attn.in_proj"], "attn+mlp": ["attn", "mlp.c_fc"]}


def _config(targets, base="tiny-mirror", dropout=0.0):
    cfg = get_model_config(base)
    return dataclasses.replace(cfg, name=f"{base}-lora",
                               lora=LoRAConfig(rank=4, alpha=8.0, dropout=dropout,
                                               targets=list(targets)))


@pytest.fixture(scope="module", params=sorted(TARGETS))
def trained(request):
    """A training build with non-zero LoRA B (peft starts B at 0) and a perturbed head."""
    torch.manual_seed(0)
    dropout = 0.1 if request.param == "attn+mlp" else 0.0
    model = create_model(_config(TARGETS[request.param], dropout=dropout), for_training=True)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in lora_parameters(model.image_encoder):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for p in model.head.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model


def test_only_lora_and_head_are_trainable(trained):
    model = copy.deepcopy(trained)
    groups = trainable_parameter_groups(model, apply=True)
    lora = lora_parameters(model.image_encoder)
    assert lora and {id(p) for p in groups["adapters"]} == {id(p) for p in lora}
    assert not groups["backbone"]
    for name, p in model.named_parameters():
        assert p.requires_grad == (name.startswith("head.") or ".lora_" in name), name
    n_lora = sum(p.numel() for p in lora)
    assert 0 < n_lora < 0.1 * sum(p.numel() for p in model.image_encoder.parameters())


def test_gradients_reach_the_lora_parameters(trained):
    model = copy.deepcopy(trained)
    trainable_parameter_groups(model, apply=True)
    model.train()
    model(_batch(model.config, n=1, seed=2)).mean().backward()
    for name, p in model.image_encoder.named_parameters():
        if ".lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_lora_starts_as_the_pretrained_tower():
    """peft's zero-initialised B: the adapted tower computes exactly the plain one."""
    x = _batch(get_model_config("tiny-mirror"), n=1, seed=3)
    maps = []
    for cfg in (get_model_config("tiny-mirror"), _config(["attn.in_proj", "mlp.c_proj"])):
        torch.manual_seed(0)  # the same random backbone (built before LoRA goes in)
        encoder = create_model(cfg, for_training=True).image_encoder
        with torch.no_grad():
            maps.append(encoder.feature_maps(x))
    for plain, adapted in zip(*maps):
        assert torch.equal(plain, adapted)


def test_merge_matches_unmerged_and_leaves_no_peft(trained):
    model = _eval_copy(trained)
    x = _batch(model.config, n=2, seed=4)
    unmerged = _out(model, x)
    assert model.has_lora
    assert model.merge_lora() is True
    assert not model.has_lora and not has_lora(model)
    assert not any(type(m).__module__.startswith("peft") for m in model.modules())
    assert not any("lora" in k or "base_layer" in k or "parametriz" in k
                   for k in model.state_dict())
    torch.manual_seed(0)
    plain = create_model("tiny-mirror")
    assert set(model.image_encoder.state_dict()) == set(plain.image_encoder.state_dict())
    torch.testing.assert_close(_out(model, x), unmerged, rtol=0, atol=1e-5)
    assert model.merge_lora() is False  # nothing left to merge


def test_lora_changes_the_output(trained):
    """The adapters are in the forward path (non-zero B moves the depth)."""
    model = _eval_copy(trained)
    x = _batch(model.config, n=1, seed=5)
    before = _out(model, x)
    with torch.no_grad():
        for p in lora_parameters(model.image_encoder):
            p.mul_(3.0)
    assert not torch.allclose(_out(model, x), before)


def test_save_unmerged_and_load_back(trained, tmp_path):
    path = save_weights(trained, tmp_path / "lora.safetensors", parts=("image_encoder", "head"))
    keys = read_sidecar(path)["config"]["lora"]
    assert keys["rank"] == 4 and keys["targets"] == trained.config.lora.targets
    expected = _out(_eval_copy(trained), _batch(trained.config, n=2, seed=6))
    torch.manual_seed(7)  # another random backbone: the file must overwrite all of it
    again = create_model(weights=str(path), for_training=True)
    assert again.has_lora and again.config == trained.config
    for a, b in zip(lora_parameters(again.image_encoder), lora_parameters(trained.image_encoder)):
        assert torch.equal(a, b)
    torch.manual_seed(8)
    merged = create_model(weights=str(path))  # inference build: merged automatically
    assert not merged.has_lora and merged.config.lora == trained.config.lora
    x = _batch(trained.config, n=2, seed=6)
    torch.testing.assert_close(_out(merged, x), expected, rtol=0, atol=1e-5)
    # a merged tower is a plain one: saved, it records no LoRA and loads as such
    path2 = save_weights(merged, tmp_path / "merged.safetensors",
                         parts=("image_encoder", "head"))
    assert read_sidecar(path2)["config"]["lora"] is None
    plain = create_model(weights=str(path2))
    assert torch.equal(_out(plain, x), _out(merged, x))


def test_onnx_export_of_the_merged_model(trained, tmp_path):
    import onnx  # noqa: F401
    model = _eval_copy(trained)
    model.drop_text_encoder()
    model.merge_lora()
    path = tmp_path / "lora.onnx"
    torch.onnx.export(model, (_batch(model.config, n=1),), str(path), dynamo=False,
                      opset_version=17, input_names=["image"], output_names=["depth"])
    assert path.stat().st_size > 0


def test_lora_with_moa_keeps_the_groups_apart():
    torch.manual_seed(0)
    model = create_model(_config(["attn.in_proj"], base="tiny-moa"), for_training=True)
    groups = trainable_parameter_groups(model, apply=True)
    ids = {k: {id(p) for p in v} for k, v in groups.items()}
    lora = {id(p) for p in lora_parameters(model.image_encoder)}
    assert lora and lora <= ids["adapters"] and len(ids["adapters"]) > len(lora)
    assert not (ids["backbone"] & ids["adapters"]) and not (ids["head"] & ids["adapters"])


@pytest.mark.parametrize("lora, match", [
    ({"targets": ["attn.out_proj"]}, "ignored"),
    ({"targets": ["attn", "attn.in_proj"]}, "overlap"),
    ({"targets": ["attn.in_proj"], "dropout": 0.1}, "dropout"),
    ({"rank": 0}, "rank"),
    ({"targets": []}, "target"),
    ({"rnak": 4}, "rnak"),
])
def test_lora_config_validation(lora, match):
    data = get_model_config("tiny-mirror").to_dict()
    data["lora"] = lora
    with pytest.raises(ConfigError, match=match):
        ModelConfig.from_dict(data)


def test_lora_config_defaults_and_unknown_target():
    data = get_model_config("tiny-mirror").to_dict()
    assert data["lora"] is None  # off unless configured
    data["lora"] = {}
    cfg = ModelConfig.from_dict(data)
    assert cfg.lora == LoRAConfig(rank=8, alpha=16.0, dropout=0.0, targets=["attn.in_proj"])
    with pytest.raises(ConfigError, match="no_such_layer"):
        create_model(_config(["no_such_layer"]))
