"""MoA-DepthCLIP on the tiny open_clip tower: adapters in the forward path, gate, scene context,
dual head, trainable groups, weight round trips and the adapter insertion order."""
import copy
import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from clip_depth_ros.config import ConfigError, ModelConfig, get_model_config
from clip_depth_ros.model import create_model, save_weights
from clip_depth_ros.model.factory import _open_clip
from clip_depth_ros.model.moa import (AdaptedBlock, MixtureOfAdapters, adapter_modules,
                                      bin_centres, insert_adapters, scaled_size)
from clip_depth_ros.model.trainable import trainable_parameter_groups
from model_helpers import forward as _out, random_batch as _batch

NAME = "tiny-moa"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(NAME)


@pytest.fixture(scope="module")
def train_model():
    torch.manual_seed(0)
    return create_model(NAME, for_training=True)


def _randomise_experts(model, seed=3, scale=0.1):
    """Experts start as zero maps (identity adapters); give their up-projections values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in adapter_modules(model.image_encoder.visual):
            for expert in adapter.experts:
                expert[-1].weight.copy_(scale * torch.randn(expert[-1].weight.shape,
                                                            generator=gen))


def test_output_contract(model):
    cfg = model.config
    x = _batch(cfg)
    depth = _out(model, x)
    assert depth.shape == (2, 1, *cfg.input_hw) and depth.dtype == torch.float32
    assert torch.isfinite(depth).all()
    assert depth.min() >= cfg.min_depth and depth.max() <= cfg.max_depth
    assert not torch.allclose(depth[0], depth[1])  # depends on the image
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert not hasattr(model.head, "last_logits")  # nothing kept on the model


def test_adapters_at_exactly_the_configured_blocks(model):
    blocks = model.image_encoder.visual.transformer.resblocks
    assert [i for i, b in enumerate(blocks) if isinstance(b, AdaptedBlock)] == [0, 1, 2, 3]
    adapter = blocks[0].adapter
    assert len(adapter.experts) == 4
    # the paper's 64 / 128 (for width 768) scaled to the tiny tower's width 96
    assert adapter.experts[0][0].out_features == 8
    assert adapter.gate[0].out_features == 16 and adapter.gate[-1].out_features == 4

    cfg = model.config
    sparse = dataclasses.replace(cfg, moa=dataclasses.replace(cfg.moa, adapter_blocks=[1, -1]))
    blocks = create_model(sparse).image_encoder.visual.transformer.resblocks
    assert [i for i, b in enumerate(blocks) if isinstance(b, AdaptedBlock)] == [1, 3]


@pytest.mark.parametrize("blocks", [[4], [0, -5]])
def test_adapter_block_out_of_range_names_the_count(blocks):
    visual = _open_clip().create_model("cdr-tiny-vit", force_image_size=(192, 256)).visual
    with pytest.raises(ValueError, match="4 blocks"):
        insert_adapters(visual, blocks)


def test_adapters_are_in_the_forward_path(model):
    x = _batch(model.config, n=1, seed=2)
    adapted = copy.deepcopy(model)
    base = _out(adapted, x)
    _randomise_experts(adapted)
    changed = _out(adapted, x)
    assert not torch.allclose(base, changed)
    with torch.no_grad():  # scaling one expert's output weights moves the depth again
        adapter_modules(adapted.image_encoder.visual)[0].experts[1][-1].weight.mul_(3.0)
    assert not torch.allclose(changed, _out(adapted, x))


def test_zero_initialised_adapters_keep_pretrained_features(model):
    """At build the adapted tower computes exactly what the plain tower does."""
    visual = model.image_encoder.visual
    plain = copy.deepcopy(visual)
    blocks = plain.transformer.resblocks
    for i, block in enumerate(blocks):
        blocks[i] = block.block
    x = _batch(model.config, n=1, seed=4)
    with torch.no_grad():
        ours = model.image_encoder.feature_maps(x)
        theirs = plain.forward_intermediates(x, indices=model.image_encoder.feature_layers,
                                             stop_early=True, intermediates_only=True,
                                             output_fmt="NCHW")["image_intermediates"]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_gate_weights_sum_to_one_and_mixing_matches_definition():
    torch.manual_seed(0)
    moa = MixtureOfAdapters(width=24, n_experts=3, hidden=5, gate_hidden=7, temperature=2.0)
    for expert in moa.experts:
        torch.nn.init.normal_(expert[-1].weight)
    tokens = torch.randn(2, 10, 24)
    with torch.no_grad():
        gates = moa.gate_weights(tokens)
        out = moa(tokens)
        expected = tokens + sum(gates[..., k:k + 1] * moa.experts[k](tokens) for k in range(3))
        raw = moa.gate(tokens)
    assert gates.shape == (2, 10, 3) and (gates >= 0).all()
    torch.testing.assert_close(gates.sum(dim=-1), torch.ones(2, 10))
    torch.testing.assert_close(gates, torch.softmax(raw / 2.0, dim=-1))
    torch.testing.assert_close(out, expected)


def test_scene_context_folded_and_text_tower_dropped(model, train_model):
    assert model.text_encoder is None
    emb = model.head.text_embedding
    assert emb.shape == (1, model.image_encoder.embed_dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(1))
    assert "head.text_embedding" in model.state_dict()
    assert not model.head.learns_text
    with torch.no_grad():
        prompts = train_model.text_encoder.encode_prompts(model.config.moa.scene_prompts)
    assert prompts.shape[0] == len(model.config.moa.scene_prompts) == 8
    expected = prompts.mean(dim=0, keepdim=True)
    torch.testing.assert_close(emb, expected / expected.norm())


def test_train_mode_exposes_logits_and_fuses_by_mean(train_model):
    model = copy.deepcopy(train_model)
    model.train()
    cfg, head = model.config, model.head
    x = _batch(cfg, n=2, seed=5)
    depth, aux = model.forward_with_aux(x)
    assert set(aux) == {"bin_logits", "regression"}
    assert aux["bin_logits"].shape == (2, cfg.moa.n_bins, *cfg.input_hw)
    assert aux["regression"].shape == (2, 1, *cfg.input_hw)
    assert aux["bin_logits"].requires_grad
    with torch.no_grad():
        probs = torch.softmax(aux["bin_logits"], dim=1)
        cls = (probs * head.bin_centres[None, :, None, None]).sum(dim=1, keepdim=True)
        fused = (0.5 * (cls + aux["regression"])).clamp(cfg.min_depth, cfg.max_depth)
    torch.testing.assert_close(depth.detach(), fused)
    # forward returns the same depth, alone (what inference and export run)
    plain = model(x)
    assert isinstance(plain, torch.Tensor)
    torch.testing.assert_close(plain.detach(), depth.detach())
    # the outputs are returned, never kept: a trained head can still be copied / pickled
    assert not hasattr(head, "last_logits") and not hasattr(head, "last_regression")
    clone = copy.deepcopy(model)
    assert not hasattr(clone.head, "last_logits")
    model.eval()
    with torch.no_grad():
        eval_depth, eval_aux = model.forward_with_aux(x)
    torch.testing.assert_close(eval_depth, _out(model, x))
    assert eval_aux["bin_logits"].shape == (2, cfg.moa.n_bins, *cfg.input_hw)


def test_bin_centres(model):
    cfg, head = model.config, model.head
    centres = head.bin_centres
    assert centres.shape == (cfg.moa.n_bins,) and centres.dtype == torch.float32
    assert (centres[1:] > centres[:-1]).all()
    assert centres[0] > cfg.min_depth and centres[-1] < cfg.max_depth
    ratios = centres[1:] / centres[:-1]
    torch.testing.assert_close(ratios, ratios[0].expand_as(ratios))  # log spacing
    linear = bin_centres(4, 1.0, 9.0, "linear")
    torch.testing.assert_close(linear, torch.tensor([2.0, 4.0, 6.0, 8.0]))
    assert torch.equal(head.bin_index(centres), torch.arange(cfg.moa.n_bins))
    ends = head.bin_index(torch.tensor([cfg.min_depth, cfg.max_depth]))
    assert ends.tolist() == [0, cfg.moa.n_bins - 1]
    with pytest.raises(ValueError, match="spacing"):
        bin_centres(4, 1.0, 9.0, "cubic")


def _flags(module):
    return {name: p.requires_grad for name, p in module.named_parameters()}


def test_trainable_groups_moa(train_model):
    model = copy.deepcopy(train_model)
    groups = trainable_parameter_groups(model, apply=True)
    ids = {k: {id(p) for p in v} for k, v in groups.items()}
    assert all(ids.values()) and not (ids["head"] & ids["adapters"])
    assert not (ids["backbone"] & ids["adapters"])
    trained = set().union(*ids.values())
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) in trained), name
    flags = _flags(model.image_encoder.visual.transformer.resblocks)
    # unfreeze_last_blocks = 2 of 4: blocks 2, 3 train; blocks 0, 1 only through their adapters
    for name, grad in flags.items():
        index, part = name.split(".")[:2]
        assert grad == (part == "adapter" or int(index) >= 2), name
    assert not any(_flags(model.text_encoder).values())
    assert not model.image_encoder.visual.conv1.weight.requires_grad
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < n_trained < sum(p.numel() for p in model.image_encoder.parameters())
    # gradients arrive in every group
    model.train()
    out, aux = model.forward_with_aux(_batch(model.config, n=1, seed=6))
    (out.mean() + aux["bin_logits"].logsumexp(dim=1).mean()).backward()
    for group in ("head", "adapters", "backbone"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in groups[group]), group


def test_trainable_groups_other_methods():
    torch.manual_seed(0)
    mirror = create_model("tiny-mirror", for_training=True)
    groups = trainable_parameter_groups(mirror, apply=True)
    assert not groups["adapters"] and not groups["backbone"]
    head_ids = {id(p) for p in mirror.head.parameters()}
    assert {id(p) for p in groups["head"]} == head_ids and id(mirror.head.mirror) in head_ids
    for name, p in mirror.named_parameters():
        assert p.requires_grad == name.startswith("head."), name
    depthclip = create_model("tiny-depthclip", for_training=True)
    groups = trainable_parameter_groups(depthclip, apply=True)
    assert not any(groups.values())
    assert not any(p.requires_grad for p in depthclip.parameters())


def test_save_image_encoder_and_head_round_trip(model, tmp_path):
    trained = copy.deepcopy(model)
    _randomise_experts(trained)
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for p in trained.head.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        trained.image_encoder.visual.transformer.resblocks[3].block.mlp.c_fc.weight.mul_(1.5)
    path = save_weights(trained, tmp_path / "moa.safetensors", parts=("image_encoder", "head"))
    torch.manual_seed(5)  # another random backbone: the file must overwrite all of it
    loaded = create_model(weights=str(path))
    assert loaded.config == trained.config
    x = _batch(model.config, n=2, seed=7)
    assert torch.equal(_out(loaded, x), _out(trained, x))
    assert not torch.allclose(_out(model, x), _out(trained, x))
    adapter_keys = [k for k in loaded.state_dict() if ".adapter." in k]
    assert adapter_keys and all(k.startswith("image_encoder.") for k in adapter_keys)


def test_plain_clip_backbone_weights_load_into_moa(tmp_path):
    """Backbone files have un-adapted keys: adapters go in after they are loaded."""
    torch.manual_seed(11)
    clip = _open_clip().create_model("cdr-tiny-vit", force_image_size=(192, 256))
    state = {k: v.contiguous() for k, v in clip.state_dict().items()}
    assert not any("adapter" in k for k in state)
    path = tmp_path / "clip.safetensors"
    save_file(state, str(path))
    torch.manual_seed(0)
    model = create_model(NAME, backbone_weights=str(path))
    visual = model.image_encoder.visual.state_dict()
    for key, value in state.items():
        if not key.startswith("visual."):
            continue
        key = key[len("visual."):]
        if key.startswith("transformer.resblocks."):
            index, rest = key[len("transformer.resblocks."):].split(".", 1)
            key = f"transformer.resblocks.{index}.block.{rest}"
        assert torch.equal(visual[key], value), key


def test_gradient_checkpointing_path_matches(train_model):
    """open_clip's checkpointing calls blocks positionally (x, None, None, attn_mask)."""
    model = copy.deepcopy(train_model)
    _randomise_experts(model)
    model.train()
    x = _batch(model.config, n=1, seed=9)
    plain = model(x)
    model.image_encoder.visual.set_grad_checkpointing(True)
    checkpointed = model(x)
    checkpointed.mean().backward()
    torch.testing.assert_close(checkpointed, plain)


def test_moa_config_defaults_and_validation():
    data = get_model_config(NAME).to_dict()
    data.pop("moa")
    config = ModelConfig.from_dict(data)
    assert config.moa.adapter_blocks == [2, 5, 8, 11] and config.moa.n_bins == 128
    assert config.moa.bin_spacing == "log" and config.moa.gate_temperature == 2.0
    assert config.mirror is None and config.depthclip is None
    big = get_model_config("ViT-B-32-moa")
    assert big.backbone.feature_layers == [2, 5, 8, 11] and big.moa.unfreeze_last_blocks == 4
    assert big.input_hw == (224, 224) and big.canonical_focal_px == 181.6
    assert scaled_size(64, 768, 768) == 64 and scaled_size(64, 1024, None) == 64
    for bad in ({"bin_spacing": "cubic"}, {"n_bins": 1}, {"gate_temperature": 0.0}):
        broken = get_model_config(NAME).to_dict()
        broken["moa"].update(bad)
        with pytest.raises(ConfigError, match="moa"):
            ModelConfig.from_dict(broken)
    broken = get_model_config(NAME).to_dict()
    broken["moa"]["n_expert"] = 3
    with pytest.raises(ConfigError, match="n_expert"):
        ModelConfig.from_dict(broken)


@pytest.mark.slow
def test_vit_b32_moa_sizes_match_the_paper():
    model = create_model("ViT-B-32-moa", backbone_weights="random", for_training=True)
    blocks = model.image_encoder.visual.transformer.resblocks
    assert [i for i, b in enumerate(blocks) if isinstance(b, AdaptedBlock)] == [2, 5, 8, 11]
    adapter = blocks[2].adapter
    assert [tuple(e[0].weight.shape) for e in adapter.experts] == [(64, 768)] * 4
    assert tuple(adapter.gate[0].weight.shape) == (128, 768)
    assert tuple(adapter.gate[-1].weight.shape) == (4, 128)
    groups = trainable_parameter_groups(model)
    counts = {k: sum(p.numel() for p in v) for k, v in groups.items()}
    assert counts["adapters"] == 4 * (4 * (768 * 64 + 64 + 64 * 768 + 768)
                                      + 768 * 128 + 128 + 128 * 4 + 4)
    last4 = sum(p.numel() for b in blocks[8:] for p in b.parameters())
    assert counts["backbone"] == last4 - 2 * sum(p.numel() for p in adapter.parameters())
