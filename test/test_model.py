"""Depth models on the tiny open_clip tower: output contract, DepthCLIP maths, Mirror training
path, camera-aware scale."""
import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from clip_depth_ros.model import create_model
from clip_depth_ros.model.backbone import ImageEncoder
from model_helpers import random_batch as _batch

METHODS = ("tiny-depthclip", "tiny-mirror")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: create_model(name) for name in METHODS}


@pytest.fixture(scope="module")
def train_mirror():
    torch.manual_seed(1)
    return create_model("tiny-mirror", for_training=True)


@pytest.mark.parametrize("name", METHODS)
def test_output_contract(models, name):
    model = models[name]
    cfg = model.config
    x = _batch(cfg)
    with torch.no_grad():
        depth = model(x)
        metric = model.infer(x)
    h, w = cfg.input_hw
    assert depth.shape == (2, 1, h, w)
    assert depth.dtype == torch.float32
    assert torch.isfinite(depth).all()
    assert depth.min() >= cfg.min_depth and depth.max() <= cfg.max_depth
    assert torch.equal(metric, depth)  # camera_aware_scale is off in the bundled tiny configs
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_eval_output_deterministic_and_batch_independent(models, name):
    model = models[name]
    x = _batch(model.config, n=2, seed=5)
    with torch.no_grad():
        first, second = model(x), model(x)
        single = model(x[1:2])
    assert torch.equal(first, second)
    torch.testing.assert_close(single, first[1:2], rtol=1e-4, atol=1e-4)
    # the depth does depend on the image (not a constant map)
    assert not torch.allclose(first[0], first[1])


@pytest.mark.parametrize("name", METHODS)
def test_depth_clamped_to_config_range(models, name):
    """A narrow range forces clamping on both sides."""
    model = copy.deepcopy(models[name])
    x = _batch(model.config, seed=2)
    with torch.no_grad():
        raw = model(x)
    lo, hi = torch.quantile(raw, 0.25).item(), torch.quantile(raw, 0.75).item()
    model.config = dataclasses.replace(model.config, min_depth=lo, max_depth=hi)
    with torch.no_grad():
        clamped = model(x)
    torch.testing.assert_close(clamped, raw.clamp(lo, hi))


@pytest.mark.parametrize("name", METHODS)
def test_camera_aware_scale(models, name):
    base = models[name]
    model = copy.deepcopy(base)
    model.config = dataclasses.replace(base.config, camera_aware_scale=True)
    cfg = model.config
    f0 = cfg.canonical_focal_px
    x = _batch(cfg)
    with torch.no_grad():
        canonical = model(x)
        torch.testing.assert_close(model.infer(x, None), canonical)
        torch.testing.assert_close(model.infer(x, 2 * f0),
                                   (2 * canonical).clamp(cfg.min_depth, cfg.max_depth))
        # one focal length per image of the batch
        per_image = model.infer(x, torch.tensor([2 * f0, 0.5 * f0]))
        torch.testing.assert_close(per_image[0], (2 * canonical[0]).clamp(cfg.min_depth,
                                                                           cfg.max_depth))
        torch.testing.assert_close(per_image[1], (0.5 * canonical[1]).clamp(cfg.min_depth,
                                                                             cfg.max_depth))
        # with the flag off, f_px is ignored (reproduces the papers); same weights as the copy
        torch.testing.assert_close(base.infer(x, 2 * f0), canonical)


def test_depthclip_bins_buffer(models):
    head = models["tiny-depthclip"].head
    cfg = models["tiny-depthclip"].config.depthclip
    assert head.bins_m.dtype == torch.float32
    assert head.bins_m.tolist() == pytest.approx(cfg.bins_m)
    assert head.prompts()[2] == cfg.prompt_template.format(cfg.words[2])


def test_depthclip_text_embedding_folded(models):
    model = models["tiny-depthclip"]
    emb = model.head.text_embedding
    assert model.text_encoder is None  # text tower dropped after build
    assert emb.shape == (len(model.config.depthclip.words), model.image_encoder.embed_dim)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(emb.shape[0]))
    # the prompts differ, so the rows do too
    assert torch.cdist(emb, emb).fill_diagonal_(1.0).min() > 1e-4
    assert "head.text_embedding" in model.state_dict()


def test_depthclip_matches_hand_computation(models):
    """cos(projected normalised patch token, prompt) / T -> softmax -> weighted bins."""
    model = models["tiny-depthclip"]
    encoder, head = model.image_encoder, model.head
    cfg = model.config
    x = _batch(cfg, n=1, seed=3)
    visual = encoder.visual
    with torch.no_grad():
        out = head(encoder, x, head.text_embedding)
        # independent path: the tower's own forward, which returns post-LN patch tokens
        visual.output_tokens = True
        try:
            _, tokens = visual(x)
        finally:
            visual.output_tokens = False
    gh, gw = cfg.input_hw[0] // encoder.patch_size, cfg.input_hw[1] // encoder.patch_size
    assert out.shape == (1, 1, gh, gw)
    assert tokens.shape == (1, gh * gw, encoder.width)
    for i, j in [(0, 0), (gh - 1, 3), (5, gw - 1)]:
        token = tokens[0, i * gw + j].double()
        feat = token @ visual.proj.double()
        feat = feat / feat.norm()
        text = head.text_embedding.double()
        cos = (text @ feat) / text.norm(dim=-1)
        prob = torch.softmax(cos / cfg.depthclip.temperature, dim=0)
        expected = (prob * torch.tensor(cfg.depthclip.bins_m, dtype=torch.float64)).sum()
        assert out[0, 0, i, j].item() == pytest.approx(expected.item(), abs=1e-5)
    # the full model upsamples the patch-resolution map bilinearly to the input size
    with torch.no_grad():
        full = model(x)
    up = F.interpolate(out, size=cfg.input_hw, mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, up.clamp(cfg.min_depth, cfg.max_depth))


def test_depthclip_output_within_bins(models):
    model = models["tiny-depthclip"]
    bins = model.config.depthclip.bins_m
    with torch.no_grad():
        depth = model(_batch(model.config, seed=9))
    assert depth.min() >= min(bins) - 1e-5 and depth.max() <= max(bins) + 1e-5


def test_mirror_inference_model_has_no_text_encoder(models):
    model = models["tiny-mirror"]
    assert model.text_encoder is None
    emb = model.head.text_embedding
    assert emb.shape == (1, model.image_encoder.embed_dim)
    assert emb.abs().sum() > 0  # computed from the mirror at build, not left at zero
    with pytest.raises(RuntimeError, match="dropped"):
        model.refresh_text_embedding()


def test_mirror_for_training_keeps_text_encoder_and_gradients_reach_mirror(train_mirror):
    model = copy.deepcopy(train_mirror)
    model.train()
    assert model.training and model.text_encoder is not None
    head = model.head
    assert head.mirror.requires_grad
    x = _batch(model.config, n=1, seed=4)
    model(x).mean().backward()
    # FiLM starts as the identity (zero weights), so the first gradient lands on the FiLM maps
    film_grads = [s.film.weight.grad for s in head.stages]
    assert any(g is not None and g.abs().sum() > 0 for g in film_grads)
    # after one small SGD step on the head, the gradient reaches the mirror through the text
    # encoder
    with torch.no_grad():
        for p in head.parameters():
            if p.grad is not None:
                p -= 1e-2 * p.grad / (p.grad.norm() + 1e-12)
    model.zero_grad()
    model(x).mean().backward()
    assert head.mirror.grad is not None and head.mirror.grad.abs().sum() > 0
    # the output in train mode follows the mirror live (no refresh needed)
    with torch.no_grad():
        before = model(x)
        head.mirror.mul_(-3.0)
        after = model(x)
    assert not torch.allclose(before, after)


def test_mirror_eval_refreshes_text_embedding(train_mirror):
    model = copy.deepcopy(train_mirror)
    model.train()
    model.eval()
    head = model.head
    with torch.no_grad():
        expected = head.compute_text_embedding(model.text_encoder)
    torch.testing.assert_close(head.text_embedding, expected)
    old = head.text_embedding.clone()
    model.train()
    with torch.no_grad():
        head.mirror.add_(torch.randn_like(head.mirror))
    assert torch.equal(head.text_embedding, old)  # not recomputed per step in train mode
    model.eval()
    assert not torch.allclose(head.text_embedding, old)
    with torch.no_grad():
        torch.testing.assert_close(head.text_embedding,
                                   head.compute_text_embedding(model.text_encoder))
        # eval output uses the buffer and equals the live path
        x = _batch(model.config, n=1, seed=6)
        eval_out = model(x)
        model.train()
        train_out = model(x)
    torch.testing.assert_close(eval_out, train_out)


@pytest.mark.slow
def test_vit_b16_mirror_trainable_parameters_under_10m():
    model = create_model("ViT-B-16-mirror", backbone_weights="random")
    head_params = sum(p.numel() for p in model.head.parameters())
    backbone_params = sum(p.numel() for p in model.image_encoder.parameters())
    assert 0 < head_params < 10_000_000
    assert model.head.mirror.shape == (64, 512)  # tokens x ViT-B-16 text width
    assert backbone_params > 50_000_000  # it really is the ViT-B image tower
    # at eval time everything is frozen; the trained parts are only the head
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("layers", [[4], [-5], [0, 9], []])
def test_feature_layers_out_of_range(models, layers):
    visual = models["tiny-mirror"].image_encoder.visual  # 4 blocks
    with pytest.raises(ValueError, match="out of range"):
        ImageEncoder(visual, layers)


def test_empty_feature_layers_rejected_at_build(models):
    """An empty list used to build fine and fail on the first frame inside open_clip."""
    cfg = models["tiny-mirror"].config
    bad = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, feature_layers=[]))
    with pytest.raises(ValueError, match="feature_layers"):
        create_model(bad)


def test_feature_layers_negative_index_counts_from_end(models):
    visual = models["tiny-mirror"].image_encoder.visual
    assert ImageEncoder(visual, [-1, 1, -3]).feature_layers == [1, 3]


def test_feature_maps_shapes(models):
    model = models["tiny-mirror"]
    enc = model.image_encoder
    x = _batch(model.config, n=1)
    with torch.no_grad():
        maps = enc.feature_maps(x)
    h, w = model.config.input_hw
    assert len(maps) == len(model.config.backbone.feature_layers)
    for m in maps:
        assert m.shape == (1, enc.width, h // enc.patch_size, w // enc.patch_size)
    assert not torch.allclose(maps[0], maps[1])
