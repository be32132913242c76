"""MoA-DepthCLIP (Ahani Manghotay & Liang, 2026): Mixture-of-Adapters + scene context + dual head.

Mixture-of-Adapters modules sit after chosen blocks of the CLIP image tower: K bottleneck
experts (width -> hidden -> width, GELU) mixed per token by a softmax gate (width ->
gate_hidden -> K, ReLU, temperature T), added residually; no load-balancing loss.  The head
concatenates a constant global context vector (the re-normalised mean of the scene prompts'
text embeddings) to the reduced patch-token map, decodes it to the input resolution and ends
in a dual head: classification over fixed bin centres plus direct regression, fused by the
mean.  The adapters are inserted after the backbone weights are loaded, so CLIP checkpoints
keep their original keys; they then live under ``image_encoder`` in saved weights.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, MoAConfig
from .backbone import ImageEncoder, TextEncoder
from .layers import conv_fp32


class MixtureOfAdapters(nn.Module):
    """K bottleneck experts mixed per token by a tempered softmax gate: x + sum_k g_k E_k(x)."""

    def __init__(self, width: int, n_experts: int = 4, hidden: int = 64, gate_hidden: int = 128,
                 temperature: float = 2.0):
        super().__init__()
        self.temperature = float(temperature)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
            for _ in range(n_experts))
        for expert in self.experts:
            # zero up-projection: the adapted tower starts exactly as the pretrained one
            nn.init.zeros_(expert[-1].weight)
            nn.init.zeros_(expert[-1].bias)
        self.gate = nn.Sequential(nn.Linear(width, gate_hidden), nn.ReLU(),
                                  nn.Linear(gate_hidden, n_experts))

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token mixing weights (..., K), summing to 1 over the experts."""
        return torch.softmax(self.gate(x) / self.temperature, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Adapted tokens, same shape as x (..., width)."""
        gates = self.gate_weights(x)
        mixed = torch.stack([expert(x) for expert in self.experts], dim=-1)  # (..., width, K)
        return x + (mixed * gates.unsqueeze(-2)).sum(dim=-1)


class AdaptedBlock(nn.Module):
    """An open_clip residual block followed by a Mixture-of-Adapters."""

    def __init__(self, block: nn.Module, adapter: MixtureOfAdapters):
        super().__init__()
        self.block = block
        self.adapter = adapter

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The block's output, adapted; arguments pass through (``attn_mask=``, or positional
        ``k_x, v_x, attn_mask`` as open_clip's gradient checkpointing calls blocks)."""
        return self.adapter(self.block(x, *args, **kwargs))


def insert_adapters(visual: nn.Module, blocks: Sequence[int], n_experts: int = 4,
                    hidden: int = 64, gate_hidden: int = 128,
                    temperature: float = 2.0) -> list[MixtureOfAdapters]:
    """Wrap ``visual.transformer.resblocks[i]`` for each i in blocks; returns the adapters."""
    resblocks = visual.transformer.resblocks
    n_blocks = len(resblocks)
    bad = [i for i in blocks if not -n_blocks <= i < n_blocks]
    if bad:
        raise ValueError(f"adapter_blocks {list(blocks)} out of range for {n_blocks} blocks")
    indices = sorted({i % n_blocks for i in blocks})
    if any(isinstance(resblocks[i], AdaptedBlock) for i in indices):
        raise ValueError("the image tower already has adapters at some of "
                         f"blocks {indices}; build a fresh backbone")
    width = int(visual.transformer.width)
    adapters = []
    for i in indices:
        adapter = MixtureOfAdapters(width, n_experts, hidden, gate_hidden, temperature)
        resblocks[i] = AdaptedBlock(resblocks[i], adapter)
        adapters.append(adapter)
    return adapters


def adapter_modules(visual: nn.Module) -> list[MixtureOfAdapters]:
    """The Mixture-of-Adapters modules inside a vision tower, shallow to deep."""
    return [m for m in visual.modules() if isinstance(m, MixtureOfAdapters)]


def scaled_size(size: int, width: int, reference_width: Optional[int]) -> int:
    """A size given for a tower of ``reference_width``, scaled linearly to ``width``."""
    if reference_width is None:
        return int(size)
    return max(1, int(round(size * width / reference_width)))


def adapt_image_encoder(encoder: ImageEncoder, config: MoAConfig) -> list[MixtureOfAdapters]:
    """Insert the configured adapters, sized from the tower's width, into the encoder."""
    if not hasattr(encoder.visual, "transformer"):
        raise ConfigError(f"moa adapters need a ViT image tower (transformer blocks); this "
                          f"backbone's tower is {type(encoder.visual).__name__}, a timm "
                          "(convolutional) tower -- use method 'mirror' or 'depthclip' with it")
    width = encoder.width
    return insert_adapters(
        encoder.visual, config.adapter_blocks, config.n_experts,
        scaled_size(config.expert_hidden, width, config.reference_width),
        scaled_size(config.gate_hidden, width, config.reference_width),
        config.gate_temperature)


def bin_centres(n_bins: int, min_depth: float, max_depth: float, spacing: str) -> torch.Tensor:
    """Increasing centres (n_bins,) of bins that tile [min_depth, max_depth], log or linear."""
    if spacing == "log":
        edges = torch.logspace(math.log10(min_depth), math.log10(max_depth), n_bins + 1,
                               dtype=torch.float64)
        centres = torch.sqrt(edges[:-1] * edges[1:])
    elif spacing == "linear":
        edges = torch.linspace(min_depth, max_depth, n_bins + 1, dtype=torch.float64)
        centres = 0.5 * (edges[:-1] + edges[1:])
    else:
        raise ValueError(f"bin spacing '{spacing}' is not 'log' or 'linear'")
    return centres.float()


class UpBlock(nn.Module):
    """x2 transposed-conv upsampling, then a 3x3 conv (Mirror's stage without FiLM)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)
        self.norm = nn.GroupNorm(1, out_ch)
        self.conv = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) -> (B, out, 2h, 2w)."""
        return F.gelu(self.conv(F.gelu(self.norm(self.up(x)))))


class MoAHead(nn.Module):
    """Scene-context decoder with a fused bin-classification + regression depth output.

    Fusion: depth = (depth_cls + depth_reg) / 2, the plain mean of the two estimates (the
    paper fuses them without saying how; the mean keeps both paths in every output pixel and
    needs no extra parameter).  ``forward_with_aux`` also returns the bin logits
    (B, n_bins, H, W) and the regression depth (B, 1, H, W) for the trainer's CE loss;
    ``bin_index`` maps ground truth to target bins.
    """

    learns_text = False

    def __init__(self, config: MoAConfig, tap_channels: Sequence[int], embed_dim: int,
                 patch_size: int, min_depth: float, max_depth: float):
        super().__init__()
        self.config = config
        self.max_depth = float(max_depth)
        # Constant scene context, filled from the text encoder once (build / export).
        self.register_buffer("text_embedding", torch.zeros(1, embed_dim))
        self.register_buffer("bin_centres", bin_centres(config.n_bins, min_depth, max_depth,
                                                        config.bin_spacing))
        n_up = int(round(math.log2(patch_size)))
        if 2 ** n_up != patch_size:
            raise ValueError(f"patch size {patch_size} is not a power of two")
        channels = list(config.decoder_channels)
        channels = (channels + [channels[-1]] * n_up)[:n_up]
        self.taps = nn.ModuleList(nn.Conv2d(c, channels[0], kernel_size=1)
                                  for c in tap_channels)
        self.fuse = nn.Conv2d(channels[0] + embed_dim, channels[0], kernel_size=1)
        ins = [channels[0]] + channels[:-1]
        self.stages = nn.ModuleList(UpBlock(i, o) for i, o in zip(ins, channels))
        self.classifier = nn.Conv2d(channels[-1], config.n_bins, kernel_size=3, padding=1)
        self.regressor = nn.Conv2d(channels[-1], 1, kernel_size=3, padding=1)

    def compute_text_embedding(self, text: TextEncoder) -> torch.Tensor:
        """The global context vector (1, D): re-normalised mean of the scene prompts."""
        mean = text.encode_prompts(self.config.scene_prompts).mean(dim=0, keepdim=True)
        return F.normalize(mean, dim=-1)

    def bin_index(self, depth_m: torch.Tensor) -> torch.Tensor:
        """Index (long) of the nearest bin centre for each depth, in the bins' own spacing."""
        centres = self.bin_centres.to(depth_m.dtype)
        if self.config.bin_spacing == "log":
            depth_m, centres = depth_m.clamp(min=float(centres[0])).log(), centres.log()
        edges = 0.5 * (centres[1:] + centres[:-1])
        return torch.bucketize(depth_m.contiguous(), edges)

    def forward(self, encoder: ImageEncoder, image: torch.Tensor,
                text_embedding: torch.Tensor) -> torch.Tensor:
        """Depth (B, 1, H, W) in metres at the input resolution."""
        return self.forward_with_aux(encoder, image, text_embedding)[0]

    def forward_with_aux(self, encoder: ImageEncoder, image: torch.Tensor,
                         text_embedding: torch.Tensor
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(fused depth (B, 1, H, W), {"bin_logits": (B, n_bins, H, W), "regression":
        (B, 1, H, W)}) at the input resolution, in metres."""
        maps = encoder.feature_maps(image)
        x = sum(tap(m) for tap, m in zip(self.taps, maps))
        b, _, h, w = x.shape
        context = text_embedding.to(x.dtype).reshape(1, -1, 1, 1).expand(b, -1, h, w)
        x = F.gelu(self.fuse(torch.cat([x, context], dim=1)))
        for stage in self.stages:
            x = stage(x)
        if x.shape[-2:] != image.shape[-2:]:  # input not a multiple of the patch size
            x = F.interpolate(x, size=image.shape[-2:], mode="bilinear", align_corners=False)
        logits = conv_fp32(x, self.classifier)  # the outputs in float32 (layers.py)
        probs = torch.softmax(logits, dim=1)
        depth_cls = torch.einsum("bkhw,k->bhw", probs, self.bin_centres.to(probs.dtype))
        depth_reg = torch.sigmoid(conv_fp32(x, self.regressor)) * self.max_depth
        depth = 0.5 * (depth_cls.unsqueeze(1) + depth_reg)
        return depth, {"bin_logits": logits, "regression": depth_reg}
