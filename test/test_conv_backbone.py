"""Convolutional (timm) image towers: FastViT-T8 in place of a tiny conv tower, MobileCLIP-S2.

Output contract of Mirror and DepthCLIP on a conv tower, declared feature taps, the dense
projection, U-Net style taps, frozen BatchNorm, save/load, reparameterisation, and the clear
error for MoA adapters on a conv tower.
"""
import copy
import dataclasses

import pytest
import torch
from torch import nn

from clip_depth_ros.config import ConfigError, DepthCLIPConfig, MoAConfig, get_model_config
from clip_depth_ros.model import create_model, save_weights
from clip_depth_ros.model.backbone import ImageEncoder
from clip_depth_ros.model.conv_backbone import ConvImageEncoder, build_image_encoder
from clip_depth_ros.model.factory import _open_clip
from clip_depth_ros.weights import WeightsError
from model_helpers import eval_copy as _eval_copy, forward as _out, random_batch as _batch

NAME = "tiny-fastvit-mirror"


@pytest.fixture(scope="module")
def train_model():
    torch.manual_seed(0)
    return create_model(NAME, for_training=True)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(NAME)


def test_mirror_output_contract(model):
    cfg = model.config
    assert isinstance(model.image_encoder, ConvImageEncoder)
    depth = _out(model, _batch(cfg))
    assert depth.shape == (2, 1, *cfg.input_hw) and depth.dtype == torch.float32
    assert torch.isfinite(depth).all()
    assert depth.min() >= cfg.min_depth and depth.max() <= cfg.max_depth
    assert not torch.allclose(depth[0], depth[1])  # depends on the image
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.text_encoder is None and model.head.text_embedding.abs().sum() > 0
    assert model.image_encoder.reparameterized  # inference builds are fused


def test_input_not_a_multiple_of_the_stride(model):
    """Stage maps round apart (63 vs 64 rows...); the taps are resized to the decoder's grid."""
    depth = _out(model, _batch(model.config, n=1, hw=(100, 132)))
    assert depth.shape == (1, 1, 100, 132) and torch.isfinite(depth).all()


def test_depthclip_contract():
    cfg = get_model_config(NAME)
    cfg = dataclasses.replace(
        cfg, name="tiny-fastvit-depthclip", method="depthclip", mirror=None,
        depthclip=DepthCLIPConfig(),
        backbone=dataclasses.replace(cfg.backbone, feature_layers=[-1]))
    torch.manual_seed(0)
    model = create_model(cfg)
    x = _batch(cfg, seed=1)
    depth = _out(model, x)
    bins = cfg.depthclip.bins_m
    assert depth.shape == (2, 1, *cfg.input_hw) and torch.isfinite(depth).all()
    assert depth.min() >= min(bins) - 1e-5 and depth.max() <= max(bins) + 1e-5
    with torch.no_grad():  # the head itself works at the deepest stride (32)
        coarse = model.head(model.image_encoder, x, model.head.text_embedding)
    assert coarse.shape == (2, 1, cfg.input_hw[0] // 32, cfg.input_hw[1] // 32)
    assert model.head.text_embedding.shape == (len(bins), model.image_encoder.embed_dim)


def test_feature_maps_have_declared_channels_and_strides(train_model):
    enc = train_model.image_encoder
    assert enc.feature_layers == [0, 1, 2, 3]
    assert enc.tap_channels == [48, 96, 192, 384]  # FastViT-T8 stage widths
    assert enc.tap_strides == [4, 8, 16, 32] and enc.patch_size == 32
    assert enc.width == 384 and enc.embed_dim == 64
    h, w = train_model.config.input_hw
    with torch.no_grad():
        maps = enc.feature_maps(_batch(train_model.config, n=1))
    assert [tuple(m.shape) for m in maps] == [
        (1, c, h // s, w // s) for c, s in zip(enc.tap_channels, enc.tap_strides)]
    sparse = ConvImageEncoder(enc.visual, [-1, 1])
    assert sparse.feature_layers == [1, 3] and sparse.tap_strides == [8, 32]
    with pytest.raises(ValueError, match="4 stages"):
        ConvImageEncoder(enc.visual, [4])
    with pytest.raises(ValueError, match="out of range"):
        ConvImageEncoder(enc.visual, [])


def test_build_image_encoder_picks_the_class(train_model):
    assert isinstance(build_image_encoder(train_model.image_encoder.visual, [2]),
                      ConvImageEncoder)
    vit = _open_clip().create_model("cdr-tiny-vit", force_image_size=(192, 256)).visual
    encoder = build_image_encoder(vit, [1, 3])
    assert type(encoder) is ImageEncoder
    assert encoder.tap_channels == [96, 96] and encoder.tap_strides == [16, 16]


def test_dense_projection_averages_to_the_image_embedding(train_model):
    """avg-pool commutes with the per-location linear: mean(project(map)) == CLIP embedding."""
    model = _eval_copy(train_model)
    enc = model.image_encoder
    x = _batch(model.config, seed=3)
    with torch.no_grad():
        dense = enc.project(enc.feature_maps(x)[-1])
        pooled = enc.visual(x)
    assert dense.shape == (2, enc.embed_dim, 3, 4)
    torch.testing.assert_close(dense.mean(dim=(2, 3)), pooled, rtol=1e-4, atol=1e-5)
    shallow = ConvImageEncoder(enc.visual, [1])
    with pytest.raises(ValueError, match="last stage"):
        shallow.project(shallow.feature_maps(x)[-1])


def test_mirror_taps_join_the_decoder_at_their_stride(train_model):
    model = copy.deepcopy(train_model)
    head = model.head
    assert head.tap_stages == [3, 2, 1, 0]  # strides 4, 8, 16, 32 from a stride-32 start
    assert [t.in_channels for t in head.taps] == [48, 96, 192, 384]
    assert [t.out_channels for t in head.taps] == [16, 24, 32, 32]  # stage input widths
    assert len(head.stages) == 5  # log2(32) x2 steps back to the input resolution
    model.train()
    model(_batch(model.config, n=1, seed=4)).mean().backward()
    for i, tap in enumerate(head.taps):
        assert tap.weight.grad is not None and tap.weight.grad.abs().sum() > 0, i


def test_batchnorm_statistics_stay_frozen_in_train_mode(train_model):
    model = copy.deepcopy(train_model)
    model.train()
    norms = [m for m in model.image_encoder.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    with torch.no_grad():
        model(_batch(model.config, n=2, seed=5))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))


def test_save_load_round_trip(train_model, tmp_path):
    trained = copy.deepcopy(train_model)
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for p in trained.head.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        trained.image_encoder.visual.trunk.stages[3].blocks[0].mlp.fc1.weight.mul_(1.5)
    path = save_weights(trained, tmp_path / "conv.safetensors", parts=("image_encoder", "head"))
    trained.eval()
    x = _batch(trained.config, n=1, seed=7)
    expected = _out(trained, x)
    torch.manual_seed(6)  # another random backbone: the file must overwrite all of it
    loaded = create_model(weights=str(path))  # inference build: reparameterised after loading
    assert loaded.image_encoder.reparameterized and loaded.config == trained.config
    torch.testing.assert_close(_out(loaded, x), expected, rtol=0, atol=1e-4)
    assert not torch.allclose(_out(_eval_copy(train_model), x), expected, atol=1e-2)


def test_reparameterize_keeps_the_output(train_model, tmp_path):
    model = copy.deepcopy(train_model)
    with pytest.raises(RuntimeError, match="eval-mode"):
        model.reparameterize()
    model.eval()
    x = _batch(model.config, n=1, seed=9)
    before = _out(model, x)
    keys = set(model.state_dict())
    assert model.reparameterize() is model
    after = _out(model, x)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-4)
    assert set(model.state_dict()) != keys and len(model.state_dict()) < len(keys)
    model.reparameterize()  # idempotent
    torch.testing.assert_close(_out(model, x), after, rtol=0, atol=0)
    with pytest.raises(WeightsError, match="reparameterised"):
        save_weights(model, tmp_path / "fused.safetensors", parts=("image_encoder", "head"))


def test_reparameterize_is_a_noop_for_vits():
    torch.manual_seed(0)
    model = create_model("tiny-mirror")
    x = _batch(model.config, n=1)
    keys, before = set(model.state_dict()), _out(model, x)
    model.reparameterize()
    assert set(model.state_dict()) == keys and torch.equal(_out(model, x), before)


def test_moa_on_a_conv_tower_is_a_clear_config_error():
    cfg = get_model_config(NAME)
    cfg = dataclasses.replace(cfg, name="fastvit-moa", method="moa", mirror=None, moa=MoAConfig())
    with pytest.raises(ConfigError, match="ViT image tower.*mirror"):
        create_model(cfg, backbone_weights="random")


@pytest.mark.slow
def test_mobileclip_s2_builds_runs_and_reparameterizes():
    """The real MCi2 tower (random weights here): taps, one 256x256 frame, fused == unfused."""
    torch.manual_seed(0)
    model = create_model("MobileCLIP-S2-mirror", backbone_weights="random", for_training=True)
    enc = model.image_encoder
    assert enc.tap_channels == [80, 160, 320, 640] and enc.tap_strides == [4, 8, 16, 32]
    assert enc.embed_dim == 512 and model.head.mirror.shape == (64, 512)
    tower_params = sum(p.numel() for p in enc.parameters())
    assert 34e6 < tower_params < 37e6  # MCi2: 35.7 M
    model.eval()
    x = _batch(model.config, n=1)
    before = _out(model, x)
    assert before.shape == (1, 1, 256, 256) and torch.isfinite(before).all()
    model.reparameterize()
    torch.testing.assert_close(_out(model, x), before, rtol=0, atol=1e-4)
