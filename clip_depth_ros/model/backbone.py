"""open_clip towers wrapped for dense prediction: image feature taps and a text encoder.

The image side reads patch-token grids through ``visual.forward_intermediates`` (no hooks);
timm towers (convolutional / hybrid, e.g. MobileCLIP) have their own encoder in conv_backbone.py.
The text side is only needed while a text embedding is being computed (model build,
export, Mirror training); inference keeps the resulting embedding as a buffer instead.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import compiling


class TokenSelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (same weights, same state dict) whose unmasked self-attention at
    inference on a CPU is computed directly: the in-projection, the scores and softmax in
    float32, the weighted sum in the model's precision, the out-projection.  For a ViT's few
    hundred tokens torch's fused CPU attention (flash) costs more than the arithmetic: the
    demo model's 193 tokens, 3 heads, bf16: 0.37 -> 0.27 ms for the attention itself on 2
    cores, about flash's error against float32 (BENCHMARKS.md).  Everything else (masks,
    autograd, a GPU, ONNX tracing, torch.compile) goes to nn.MultiheadAttention unchanged."""

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        if (query is key and key is value and key_padding_mask is None and attn_mask is None
                and not need_weights and not is_causal and self.batch_first
                and self._qkv_same_embed_dim and self.in_proj_bias is not None
                and self.bias_k is None and not self.add_zero_attn and query.dim() == 3
                and query.device.type == "cpu"
                and query.dtype in (torch.float32, torch.bfloat16)
                and not torch.is_grad_enabled() and not torch.jit.is_tracing()
                and not compiling()):
            return self._self_attention(query), None
        return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                               need_weights=need_weights, attn_mask=attn_mask,
                               average_attn_weights=average_attn_weights, is_causal=is_causal)

    def _self_attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        heads = self.num_heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        # scores and softmax in float32 (rounding the scores to bf16 would cost accuracy on
        # peaked attention); the weighted sum in the model's precision
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2))
        weights = scores.mul_((width // heads) ** -0.5).softmax(dim=-1).to(x.dtype)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, tokens, width)
        return F.linear(out, self.out_proj.weight, self.out_proj.bias)


class ImageEncoder(nn.Module):
    """The open_clip vision tower, returning NCHW patch-token maps from chosen blocks."""

    def __init__(self, visual: nn.Module, feature_layers: Sequence[int]):
        super().__init__()
        if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "transformer"):
            raise TypeError(f"backbone vision tower {type(visual).__name__} is not a ViT with "
                            "forward_intermediates; timm towers (e.g. MobileCLIP) go through "
                            "conv_backbone.ConvImageEncoder, other towers are not supported")
        self.visual = visual
        for block in visual.transformer.resblocks:  # same weights, a faster CPU inference
            if type(getattr(block, "attn", None)) is nn.MultiheadAttention:
                block.attn.__class__ = TokenSelfAttention
        n_blocks = len(visual.transformer.resblocks)
        layers = sorted({i % n_blocks for i in feature_layers})
        # empty would build fine and fail on the first frame inside forward_intermediates
        if not feature_layers or any(not -n_blocks <= i < n_blocks for i in feature_layers):
            raise ValueError(f"feature_layers {list(feature_layers)} out of range for "
                             f"{n_blocks} blocks")
        self.feature_layers = layers
        self.width = int(visual.transformer.width)
        self.embed_dim = int(visual.proj.shape[1]) if visual.proj is not None else self.width
        patch = visual.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        # per-tap channels and strides, the interface shared with ConvImageEncoder
        self.tap_channels = [self.width] * len(layers)
        self.tap_strides = [self.patch_size] * len(layers)

    def feature_maps(self, image: torch.Tensor, normalize: bool = False) -> list[torch.Tensor]:
        """Patch-token maps (B, width, H/p, W/p), one per feature layer, shallow to deep."""
        out = self.visual.forward_intermediates(
            image, indices=self.feature_layers, stop_early=True,
            normalize_intermediates=normalize, intermediates_only=True, output_fmt="NCHW")
        return out["image_intermediates"]

    def project(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Project a (post-norm) token map into the joint image-text space, NCHW."""
        if self.visual.proj is None:
            return feature_map
        return torch.einsum("bchw,cd->bdhw", feature_map, self.visual.proj)

    def reparameterize(self) -> None:
        """Nothing to fuse in a ViT (kept for the interface shared with ConvImageEncoder)."""


class TextEncoder(nn.Module):
    """The open_clip text tower: prompts or raw token embeddings in, joint-space vectors out."""

    def __init__(self, clip_model: nn.Module, tokenizer):
        super().__init__()
        # CustomTextCLIP (e.g. MobileCLIP) keeps its text tower in .text; CLIP holds it inline
        tower = clip_model.text if isinstance(getattr(clip_model, "text", None), nn.Module) \
            else clip_model
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)
        self.pool_type = getattr(tower, "text_pool_type", None) or tower.pool_type
        self.tokenizer = tokenizer
        self.width = int(self.token_embedding.weight.shape[1])
        self.context_length = int(self.positional_embedding.shape[0])

    def _project(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            return pooled
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(pooled)
        return pooled @ self.text_projection

    def _transform(self, token_embeddings: torch.Tensor) -> torch.Tensor:
        n = token_embeddings.shape[1]
        x = token_embeddings + self.positional_embedding[:n].to(token_embeddings.dtype)
        mask = self.attn_mask[:n, :n] if self.attn_mask is not None else None
        return self.ln_final(self.transformer(x, attn_mask=mask))

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """L2-normalised embeddings (N, D) of text prompts."""
        device = self.token_embedding.weight.device
        tokens = self.tokenizer(list(prompts)).to(device)
        x = self._transform(self.token_embedding(tokens))
        if self.pool_type == "argmax":
            pooled = x[torch.arange(x.shape[0], device=device), tokens.argmax(dim=-1)]
        elif self.pool_type == "first":
            pooled = x[:, 0]
        else:  # "last" / "eos" with right padding: the last non-padding position
            last = (tokens != 0).sum(dim=-1) - 1
            pooled = x[torch.arange(x.shape[0], device=device), last]
        return F.normalize(self._project(pooled), dim=-1)

    def encode_token_embeddings(self, token_embeddings: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, D) of raw token-embedding sequences (B, S, width), pooled at the last
        position -- the Mirror's static prompt path."""
        if token_embeddings.shape[1] > self.context_length:
            raise ValueError(f"prompt of {token_embeddings.shape[1]} tokens exceeds the text "
                             f"context length {self.context_length}")
        x = self._transform(token_embeddings)
        return self._project(x[:, -1])
