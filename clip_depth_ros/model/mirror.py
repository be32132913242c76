"""Mirror (Kim et al., Pattern Recognition 2025): a learnable static prompt + a FiLM decoder.

The "mirror" is an s x d_token matrix fed to the frozen text encoder in place of token
embeddings; its pooled output e conditions a compact deconvolutional decoder over the
patch-token grids (FiLM: gamma, beta = linear maps of e at every stage).  Where the paper is
silent the choices are config fields (see METHODS.md).  In eval mode e is a constant buffer.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MirrorConfig
from .backbone import ImageEncoder, TextEncoder


class FiLMUpBlock(nn.Module):
    """x2 transposed-conv upsampling, FiLM from the prompt embedding, then a 3x3 conv."""

    def __init__(self, in_ch: int, out_ch: int, embed_dim: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)
        self.norm = nn.GroupNorm(1, out_ch)
        self.film = nn.Linear(embed_dim, 2 * out_ch)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)  # starts as identity: gamma = 1, beta = 0
        self.conv = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Upsample x (B, in, h, w) to (B, out, 2h, 2w), modulated by embedding (1 or B, D)."""
        x = self.norm(self.up(x))
        gamma, beta = self.film(embedding).chunk(2, dim=-1)
        x = x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return F.gelu(self.conv(F.gelu(x)))


class MirrorHead(nn.Module):
    """Learnable text prompt + FiLM-conditioned deconvolutional depth decoder."""

    learns_text = True

    def __init__(self, config: MirrorConfig, n_taps: int, width: int, embed_dim: int,
                 text_width: int, patch_size: int, max_depth: float):
        super().__init__()
        self.config = config
        self.max_depth = float(max_depth)
        self.mirror = nn.Parameter(torch.randn(config.tokens, text_width) * config.init_std)
        self.register_buffer("text_embedding", torch.zeros(1, embed_dim))
        channels = list(config.decoder_channels)
        n_up = int(round(math.log2(patch_size)))
        if 2 ** n_up != patch_size:
            raise ValueError(f"patch size {patch_size} is not a power of two")
        # one x2 stage per halving of the patch size; repeat the last width if needed
        channels = (channels + [channels[-1]] * n_up)[:n_up]
        self.taps = nn.ModuleList(nn.Conv2d(width, channels[0], kernel_size=1)
                                  for _ in range(n_taps))
        ins = [channels[0]] + channels[:-1]
        self.stages = nn.ModuleList(FiLMUpBlock(i, o, embed_dim) for i, o in zip(ins, channels))
        self.out = nn.Conv2d(channels[-1], 1, kernel_size=3, padding=1)

    def compute_text_embedding(self, text: TextEncoder) -> torch.Tensor:
        """The prompt embedding e (1, D) from the mirror through the frozen text encoder."""
        return text.encode_token_embeddings(self.mirror.unsqueeze(0))

    def forward(self, encoder: ImageEncoder, image: torch.Tensor,
                text_embedding: torch.Tensor) -> torch.Tensor:
        """Depth (B, 1, H, W) in metres at (about) the input resolution."""
        maps = encoder.feature_maps(image)
        x = sum(tap(m) for tap, m in zip(self.taps, maps))
        emb = text_embedding.to(x.dtype)
        for stage in self.stages:
            x = stage(x, emb)
        return torch.sigmoid(self.out(x)) * self.max_depth
