"""Mirror (Kim et al., Pattern Recognition 2025): a learnable static prompt + a FiLM decoder.

The "mirror" is an s x d_token matrix fed to the frozen text encoder in place of token
embeddings; its pooled output e conditions a compact deconvolutional decoder over the
patch-token grids (FiLM: gamma, beta = linear maps of e at every stage).  Where the paper is
silent the choices are config fields (see METHODS.md).  In eval mode e is a constant buffer.
Taps at the deepest stride (all of a ViT's) are summed before the first stage; shallower taps
of a convolutional tower join, U-Net style, the stage whose input has their stride.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MirrorConfig
from .backbone import ImageEncoder, TextEncoder
from .layers import compiling, conv_fp32, conv_gelu

CAMERA_HIDDEN = 16  # width of the focal-conditioning MLP of each decoder stage


class FiLMUpBlock(nn.Module):
    """x2 transposed-conv upsampling, FiLM from the prompt embedding, then a 3x3 conv."""

    def __init__(self, in_ch: int, out_ch: int, embed_dim: int, camera: bool = False):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1)
        self.norm = nn.GroupNorm(1, out_ch)
        self.film = nn.Linear(embed_dim, 2 * out_ch)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)  # starts as identity: gamma = 1, beta = 0
        # focal conditioning: gamma, beta also from log(f / canonical f); zero-initialised, so
        # a model fine-tuned into it starts exactly where its unconditioned weights were
        self.camera = None
        if camera:
            self.camera = nn.Sequential(nn.Linear(1, CAMERA_HIDDEN), nn.GELU(),
                                        nn.Linear(CAMERA_HIDDEN, 2 * out_ch))
            nn.init.zeros_(self.camera[2].weight)
            nn.init.zeros_(self.camera[2].bias)
        self.conv = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1)

    def film_params(self, embedding: torch.Tensor, log_focal: Optional[torch.Tensor] = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta), each (1 or B, out): the FiLM of the prompt embedding and, with focal
        conditioning, of log_focal (B, 1) = log(f_px / canonical f)."""
        film = self.film(embedding)
        if self.camera is not None and log_focal is not None:
            film = film + self.camera(log_focal.to(film.dtype))
        gamma, beta = film.chunk(2, dim=-1)
        return gamma, beta

    def folded_norm(self, gamma: torch.Tensor, beta: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The GroupNorm's affine and one sample's FiLM as one affine, in float32: (weight,
        bias) with norm(x) * weight + bias == (norm(x) * w + b) * (1 + gamma) + beta."""
        scale = 1 + gamma[0].float()
        return self.norm.weight.float() * scale, self.norm.bias.float() * scale + beta[0].float()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor,
                log_focal: Optional[torch.Tensor] = None,
                folded: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """Upsample x (B, in, h, w) to (B, out, 2h, 2w), modulated by embedding (1 or B, D)
        and, with focal conditioning, by log_focal (B, 1) = log(f_px / canonical f).

        ``folded`` (from :meth:`folded_norm`, one sample) replaces the FiLM: the group norm
        then applies it (one pass over x instead of three; on a CPU the norm takes float32
        weights for bf16 x, so the folded affine is not rounded)."""
        x = self.up(x)
        if folded is None and _fold_allowed(x.shape[0], x.device):
            gamma, beta = self.film_params(embedding, log_focal)
            if gamma.shape[0] == 1:
                folded = self.folded_norm(gamma, beta)
        if folded is not None:
            weight, bias = folded
            x = F.group_norm(x, 1, weight, bias, self.norm.eps)
        else:
            gamma, beta = self.film_params(embedding, log_focal)
            x = self.norm(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return conv_gelu(F.gelu(x), self.conv)


def _exporting() -> bool:
    """Tracing for ONNX (the exported graph keeps the FiLM as the paper writes it)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _fold_allowed(batch: int, device: torch.device) -> bool:
    """The folded FiLM runs for one sample at inference on a CPU (a mixed-precision group
    norm, measured there); training, GPUs and ONNX tracing keep the paper's form."""
    return (batch == 1 and device.type == "cpu" and not torch.is_grad_enabled()
            and not _exporting())


def _same_key(a: tuple, b: tuple) -> bool:
    """Two _film_key keys are equal: dtype, lens, the same tensor objects, same versions."""
    return (a[0] == b[0] and a[1] == b[1] and len(a[2]) == len(b[2])
            and all(x is y for x, y in zip(a[2], b[2])) and a[3] == b[3])


class MirrorHead(nn.Module):
    """Learnable text prompt + FiLM-conditioned deconvolutional depth decoder."""

    learns_text = True

    def __init__(self, config: MirrorConfig, tap_channels: Sequence[int], embed_dim: int,
                 text_width: int, patch_size: int, max_depth: float,
                 tap_strides: Optional[Sequence[int]] = None, focal_conditioning: bool = False):
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
        ins = [channels[0]] + channels[:-1]
        strides = [patch_size] * len(tap_channels) if tap_strides is None else list(tap_strides)
        # the decoder stage each tap joins: its input has the tap's stride
        self.tap_stages = [int(round(math.log2(patch_size / s))) for s in strides]
        if any(not 0 <= k < n_up or patch_size != s * 2 ** k
               for k, s in zip(self.tap_stages, strides)):
            raise ValueError(f"tap strides {strides} do not fit a decoder from stride "
                             f"{patch_size} in x2 steps")
        self.taps = nn.ModuleList(nn.Conv2d(c, ins[k], kernel_size=1)
                                  for c, k in zip(tap_channels, self.tap_stages))
        self.stages = nn.ModuleList(FiLMUpBlock(i, o, embed_dim, focal_conditioning)
                                    for i, o in zip(ins, channels))
        self.out = nn.Conv2d(channels[-1], 1, kernel_size=3, padding=1)
        # uncertainty: log of the Laplace scale b of the log-depth error (b = 0.1: ~10%
        # typical error); starts at a constant log(0.2) so an untrained head says "unsure"
        self.uncertainty: Optional[nn.Conv2d] = None
        # (key, folded FiLM per stage) of the last inference call (_folded_films)
        self._film_cache: Optional[tuple[tuple, list]] = None
        if config.uncertainty:
            self.add_uncertainty()

    def add_uncertainty(self) -> None:
        """Add the (untrained) uncertainty output to this head, e.g. to fine-tune it alone."""
        self.uncertainty = nn.Conv2d(self.out.in_channels, 1, kernel_size=3, padding=1).to(
            self.out.weight.device, self.out.weight.dtype)
        nn.init.zeros_(self.uncertainty.weight)
        nn.init.constant_(self.uncertainty.bias, math.log(0.2))

    def compute_text_embedding(self, text: TextEncoder) -> torch.Tensor:
        """The prompt embedding e (1, D) from the mirror through the frozen text encoder."""
        return text.encode_token_embeddings(self.mirror.unsqueeze(0))

    def forward(self, encoder: ImageEncoder, image: torch.Tensor,
                text_embedding: torch.Tensor,
                log_focal: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Depth (B, 1, H, W) in metres at (about) the input resolution; log_focal (B, 1):
        log(f_px / canonical f) for a focal-conditioned decoder (None: the canonical camera)."""
        return self.forward_with_aux(encoder, image, text_embedding, log_focal)[0]

    def forward_with_aux(self, encoder: ImageEncoder, image: torch.Tensor,
                         text_embedding: torch.Tensor, log_focal: Optional[torch.Tensor] = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(depth as ``forward`` returns it, aux): with an uncertainty output, aux holds
        ``log_b`` (B, 1, H, W), the log Laplace scale of the log-depth error; else {}."""
        maps = encoder.feature_maps(image)
        x = self._join_taps(None, maps, 0)
        emb = text_embedding.to(x.dtype)
        folded = self._folded_films(text_embedding, emb, log_focal, x.shape[0])
        for k, stage in enumerate(self.stages):
            x = stage(self._join_taps(x, maps, k) if k else x, emb, log_focal,
                      None if folded is None else folded[k])
        # the outputs in float32 (layers.py says why)
        if self.uncertainty is None:
            return torch.sigmoid(conv_fp32(x, self.out)) * self.max_depth, {}
        # both 1-channel 3x3 outputs as one 2-channel convolution: the same numbers, and on a
        # CPU half the time (oneDNN runs a 2-channel output about as fast as a 1-channel one)
        both = conv_fp32(x, self.out, torch.cat([self.out.weight, self.uncertainty.weight]),
                         torch.cat([self.out.bias, self.uncertainty.bias]))
        return torch.sigmoid(both[:, :1]) * self.max_depth, {"log_b": both[:, 1:]}

    def _folded_films(self, text_embedding: torch.Tensor, emb: torch.Tensor,
                      log_focal: Optional[torch.Tensor], batch: int
                      ) -> Optional[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Every stage's FiLM folded into its norm (``FiLMUpBlock.folded_norm``) for one
        sample, or None where :func:`_fold_allowed` says no (a batch, autograd, a GPU, ONNX
        tracing: the stages do it the paper's way).

        They depend only on the prompt embedding, log_focal and the stages' weights, so at
        inference on a CPU they are kept and reused while those stay the same (a fixed camera:
        computed once, not 24 small ops a frame); the key holds the weights' version
        counters and storage, so loading or training new weights recomputes them."""
        if not _fold_allowed(batch, emb.device) \
                or (log_focal is not None and log_focal.numel() != 1):
            return None
        key = self._film_key(text_embedding, emb, log_focal)
        cache = self._film_cache  # read once: another thread may replace it
        if key is not None and cache is not None and _same_key(cache[0], key):
            return cache[1]
        folded = [stage.folded_norm(*stage.film_params(emb, log_focal))
                  for stage in self.stages]
        if key is not None:
            self._film_cache = (key, folded)
        return folded

    def clear_film_cache(self) -> None:
        """Forget the kept FiLM (needed only after writing weights through ``.data``, which
        no version counter sees)."""
        self._film_cache = None

    def _film_key(self, text_embedding: torch.Tensor, emb: torch.Tensor,
                  log_focal: Optional[torch.Tensor]) -> Optional[tuple]:
        """What the folded FiLM depends on, or None where it must not be kept (torch.compile:
        reading log_focal would break the graph).  The tensors themselves are
        held (compared by identity: a freed tensor's id and storage can be reused), with
        their version counters and storage, so loading, training or moving weights
        recomputes the FiLM."""
        if compiling():
            return None
        tensors = (text_embedding, *self.stages.parameters())
        try:
            versions = tuple((t.data_ptr(), t._version) for t in tensors)
        except RuntimeError:  # inference tensors keep no version counter: do not keep
            return None
        focal = None if log_focal is None else float(log_focal.reshape(()))
        return emb.dtype, focal, tensors, versions

    def _join_taps(self, x: Optional[torch.Tensor], maps: list[torch.Tensor],
                   stage: int) -> torch.Tensor:
        """x plus the projected taps that join the decoder at ``stage``."""
        for tap, fmap, k in zip(self.taps, maps, self.tap_stages):
            if k != stage:
                continue
            y = tap(fmap)
            if x is None:
                x = y
                continue
            # a shallower stride than the decoder's start: odd input sizes round apart
            if stage and y.shape[-2:] != x.shape[-2:]:
                y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + y
        return x
