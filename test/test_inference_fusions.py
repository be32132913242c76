"""The CPU inference shortcuts give the model's own numbers, and only where they may run.

Three shortcuts (BENCHMARKS.md, eighth session, says what each saves): the decoder's
conv + GELU as one oneDNN convolution (``layers.conv_gelu``), each decoder stage's FiLM folded
into its group norm and kept between frames (``MirrorHead._folded_films``), and the ViT's
self-attention computed directly (``backbone.TokenSelfAttention``).  Each is checked against
the plain computation in float32 (tight) and bf16 (its rounding), and each must stand aside
for autograd and ONNX tracing.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clip_depth_ros.model import create_model
from clip_depth_ros.model import layers
from clip_depth_ros.model.backbone import TokenSelfAttention
from model_helpers import camera_aware_config_file, random_batch


def _conditioned_model(tmp_path) -> nn.Module:
    """tiny-mirror, camera-aware and focal-conditioned, with a non-trivial FiLM."""
    path = camera_aware_config_file(tmp_path, "tiny-mirror-fc", focal_conditioning=True)
    torch.manual_seed(0)
    model = create_model(str(path), backbone_weights="random").eval()
    with torch.no_grad():
        for stage in model.head.stages:
            stage.camera[2].weight.normal_(0, 0.5)
            stage.film.weight.normal_(0, 0.5)
            stage.film.bias.normal_(0, 0.2)
            stage.norm.weight.normal_(1, 0.3)
            stage.norm.bias.normal_(0, 0.3)
    return model


def _plain(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that computes everything the plain way (no shortcut)."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, TokenSelfAttention):
            module.__class__ = nn.MultiheadAttention
    for stage in plain.head.stages:
        stage.forward = _plain_stage_forward.__get__(stage)
    return plain


def _plain_stage_forward(self, x, embedding, log_focal=None, folded=None):
    """FiLMUpBlock.forward as the paper writes it (the code before the shortcuts)."""
    x = self.norm(self.up(x))
    gamma, beta = self.film_params(embedding, log_focal)
    x = x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
    return F.gelu(self.conv(F.gelu(x)))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_conv_gelu_fused_matches_conv_then_gelu(dtype, tol):
    assert layers._FUSED_CONV is not None  # the pinned torch has it
    # bf16 fuses only where oneDNN computes bf16 (test_no_fused_bf16_where_onednn_lacks_it)
    fuses = dtype == torch.float32 or layers._BF16_FUSABLE
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 3, padding=1).to(dtype).to(memory_format=torch.channels_last)
    x = torch.randn(1, 16, 24, 32).to(dtype).contiguous(memory_format=torch.channels_last)
    calls = []
    real = layers._FUSED_CONV

    def spy(*args):
        calls.append(args[7])
        return real(*args)

    layers._FUSED_CONV = spy
    try:
        with torch.no_grad():
            fused = layers.conv_gelu(x, conv)
            ref = F.gelu(conv(x).float() if dtype == torch.bfloat16 else conv(x))
        assert calls == (["gelu"] if fuses else []), "fused op used (or not) wrongly"
        # with autograd the two aten ops run (the fused op has no backward)
        x.requires_grad_(True)
        trained = layers.conv_gelu(x, conv)
        assert len(calls) == int(fuses) and trained.requires_grad
        trained.sum().backward()
        assert x.grad is not None
    finally:
        layers._FUSED_CONV = real
    torch.testing.assert_close(fused.float(), ref.float(), atol=tol, rtol=tol)


def test_folded_film_matches_the_paper_form(tmp_path):
    model = _conditioned_model(tmp_path)
    plain = _plain(model)
    x = random_batch(model.config, 1)
    with torch.no_grad():
        for f_px in (90.0, 207.5, 600.0):
            torch.testing.assert_close(model.infer(x, f_px), plain.infer(x, f_px),
                                       rtol=1e-5, atol=1e-5)
        # a batch of two takes the unfolded path: the same numbers per sample
        x2 = random_batch(model.config, 2, seed=3)
        torch.testing.assert_close(model.infer(x2, 300.0), plain.infer(x2, 300.0),
                                   rtol=1e-5, atol=1e-5)


def test_folded_film_is_kept_per_lens_and_dropped_with_new_weights(tmp_path):
    model = _conditioned_model(tmp_path)
    head = model.head
    counts = []
    real = type(head.stages[0]).film_params

    def counting(stage, *args):
        counts.append(1)
        return real(stage, *args)

    x = random_batch(model.config, 1)
    for stage in head.stages:
        stage.film_params = counting.__get__(stage)
    n_stages = len(head.stages)
    with torch.no_grad():
        first = model.infer(x, 300.0)
        assert len(counts) == n_stages
        again = model.infer(x, 300.0)
        assert len(counts) == n_stages, "the same lens recomputed the FiLM"
        torch.testing.assert_close(again, first, rtol=0, atol=0)
        old_weights = model.infer(x, 450.0)  # another lens: recomputed
        assert len(counts) == 2 * n_stages
        # new weights (in place, as load_state_dict and optimisers write them) are seen
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for key in state:
            if key.endswith("stages.1.film.bias"):
                state[key] += 0.5
        model.load_state_dict(state)
        changed = model.infer(x, 450.0)
        assert len(counts) == 3 * n_stages
        assert not torch.allclose(changed, old_weights)
        torch.testing.assert_close(changed, _plain(model).infer(x, 450.0), rtol=1e-5,
                                   atol=1e-5)
    # with autograd nothing is kept: every call computes (and gradients reach the FiLM)
    for p in head.stages[0].film.parameters():
        p.requires_grad_(True)
    before = len(counts)
    out = model.infer(x, 450.0)
    out.sum().backward()
    assert len(counts) == before + n_stages
    assert head.stages[0].film.weight.grad is not None


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.03)])
def test_token_self_attention_matches_multihead_attention(dtype, tol):
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(48, 3, batch_first=True).eval().to(dtype)
    fast = copy.deepcopy(attn)
    fast.__class__ = TokenSelfAttention
    assert list(fast.state_dict()) == list(attn.state_dict())
    x = torch.randn(2, 37, 48).to(dtype)
    ref32 = copy.deepcopy(attn).float()
    with torch.no_grad():
        out, weights = fast(x, x, x, need_weights=False)
        expected = ref32(x.float(), x.float(), x.float(), need_weights=False)[0]
        assert weights is None
        torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)
        # a mask goes to nn.MultiheadAttention, with its numbers
        mask = torch.triu(torch.full((37, 37), float("-inf")), 1).to(dtype)
        torch.testing.assert_close(fast(x, x, x, need_weights=False, attn_mask=mask)[0],
                                   attn(x, x, x, need_weights=False, attn_mask=mask)[0])


def test_token_self_attention_direct_only_at_inference(monkeypatch):
    torch.manual_seed(0)
    fast = nn.MultiheadAttention(24, 2, batch_first=True).eval()
    fast.__class__ = TokenSelfAttention
    direct = []
    real = TokenSelfAttention._self_attention
    monkeypatch.setattr(TokenSelfAttention, "_self_attention",
                        lambda self, x: direct.append(1) or real(self, x))
    x = torch.randn(1, 9, 24)
    with torch.no_grad():
        fast(x, x, x, need_weights=False)
    assert direct == [1]
    fast(x, x, x, need_weights=False)[0].sum().backward()  # autograd: the torch module's path
    assert direct == [1] and fast.in_proj_weight.grad is not None
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = fast

        def forward(self, t):
            return self.attn(t, t, t, need_weights=False)[0]

    with torch.no_grad():
        torch.jit.trace(Wrapped(), x, check_trace=False)  # as the ONNX exporter traces
    assert direct == [1]


def test_vit_towers_use_token_self_attention():
    model = create_model("tiny-mirror")
    blocks = model.image_encoder.visual.transformer.resblocks
    assert all(type(block.attn) is TokenSelfAttention for block in blocks)


def test_folded_film_under_inference_mode_and_new_tensors(tmp_path):
    """The node runs the model under inference_mode; a new text embedding (a new tensor,
    even one that lands on a freed tensor's id) and a cleared cache are seen."""
    model = _conditioned_model(tmp_path)
    x = random_batch(model.config, 1)
    with torch.inference_mode():
        first = model.infer(x, 300.0)
        torch.testing.assert_close(model.infer(x, 300.0), first, rtol=0, atol=0)
        old = model.head.text_embedding
        model.head.text_embedding = old + 0.3  # a new tensor object in the buffer's place
        swapped = model.infer(x, 300.0)
        torch.testing.assert_close(swapped, _plain(model).infer(x, 300.0), rtol=1e-5,
                                   atol=1e-5)
        assert not torch.allclose(swapped, first)
    # a write through .data bumps no version counter: clear_film_cache is the way
    with torch.no_grad():
        model.infer(x, 300.0)
        model.head.stages[0].film.bias.data.add_(0.5)
        model.head.clear_film_cache()
        torch.testing.assert_close(model.infer(x, 300.0), _plain(model).infer(x, 300.0),
                                   rtol=1e-5, atol=1e-5)


def test_no_fused_bf16_where_onednn_lacks_it(monkeypatch):
    """On a CPU without native bf16 the fused op would raise: the plain ops run instead."""
    monkeypatch.setattr(layers, "_BF16_FUSABLE", False)
    calls = []
    monkeypatch.setattr(layers, "_FUSED_CONV", lambda *a: calls.append(1))
    conv = nn.Conv2d(8, 8, 3, padding=1).bfloat16()
    x = torch.randn(1, 8, 12, 16).bfloat16()
    with torch.no_grad():
        out = layers.conv_gelu(x, conv)
        assert calls == [] and out.dtype == torch.bfloat16
        layers.conv_gelu(x.float(), conv.float())  # float32 still fuses
    assert calls == [1]


def test_the_tower_runs_the_direct_attention(monkeypatch):
    model = create_model("tiny-mirror")
    calls = []
    real = TokenSelfAttention._self_attention
    monkeypatch.setattr(TokenSelfAttention, "_self_attention",
                        lambda self, x: calls.append(1) or real(self, x))
    with torch.inference_mode():
        model(random_batch(model.config, 1))
    assert calls, "the ViT blocks did not take the direct attention at inference"
