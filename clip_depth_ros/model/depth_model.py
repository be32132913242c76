"""The depth model: image encoder -> head, with the text side folded into a buffer.

``forward(image)`` returns depth in the canonical camera (metres, clamped to the config's
range); ``infer(image, f_px)`` turns that into metric depth for the actual camera.  Device
choice, image decoding and resizing live in the backends, never here.  Before inference or
export, ``merge_lora`` folds LoRA adapters into the tower and ``reparameterize`` fuses
MobileOne-style branches of convolutional towers (the factory does both for inference builds).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .backbone import TextEncoder
from .depthclip import DepthCLIPHead
from .lora import apply_lora, has_lora, merge_lora
from .mirror import MirrorHead
from .moa import MoAHead, adapt_image_encoder


def build_head(config: ModelConfig, encoder: nn.Module, text_width: int) -> nn.Module:
    """The head for the config's method."""
    if config.method == "depthclip":
        return DepthCLIPHead(config.depthclip, encoder.embed_dim)
    if config.method == "mirror":
        return MirrorHead(config.mirror, encoder.tap_channels, encoder.embed_dim, text_width,
                          encoder.patch_size, config.max_depth, encoder.tap_strides,
                          focal_conditioning=config.focal_conditioning)
    if config.method == "moa":
        return MoAHead(config.moa, encoder.tap_channels, encoder.embed_dim,
                       encoder.patch_size, config.min_depth, config.max_depth)
    raise ValueError(f"no head for method '{config.method}'")


class DepthModel(nn.Module):
    """CLIP image encoder + a depth head; the text encoder is optional after build.

    image_encoder: an ImageEncoder (ViT) or a ConvImageEncoder (timm tower).
    """

    def __init__(self, config: ModelConfig, image_encoder: nn.Module,
                 text_encoder: Optional[TextEncoder]):
        super().__init__()
        self.config = config
        # The tower arrives with its CLIP weights loaded under the original keys; adapters
        # (MoA, LoRA) go in now, before any trained parts (which include them) are loaded.
        if config.method == "moa":
            adapt_image_encoder(image_encoder, config.moa)
        if config.lora is not None:
            apply_lora(image_encoder, config.lora)
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        text_width = text_encoder.width if text_encoder is not None else 0
        self.head = build_head(config, image_encoder, text_width)

    def text_embedding(self) -> torch.Tensor:
        """The head's text embedding: live while training a learnable prompt, else the buffer."""
        if self.training and self.head.learns_text and self.text_encoder is not None:
            return self.head.compute_text_embedding(self.text_encoder)
        return self.head.text_embedding

    @torch.no_grad()
    def refresh_text_embedding(self) -> None:
        """Recompute the constant text embedding from the text encoder (once, not per frame)."""
        if self.text_encoder is None:
            raise RuntimeError("the text encoder was dropped; the text embedding is final")
        emb = self.head.compute_text_embedding(self.text_encoder)
        self.head.text_embedding.copy_(emb.to(self.head.text_embedding.dtype))

    def drop_text_encoder(self) -> None:
        """Free the text tower; inference only needs the folded embedding buffer."""
        self.text_encoder = None

    def train(self, mode: bool = True) -> "DepthModel":
        """Switch mode; leaving training refreshes the folded text embedding."""
        was_training = self.training
        super().train(mode)
        if was_training and not mode and self.head.learns_text and self.text_encoder is not None:
            self.refresh_text_embedding()
        return self

    @property
    def has_lora(self) -> bool:
        """Whether unmerged LoRA adapters are in the image tower."""
        return has_lora(self.image_encoder)

    def merge_lora(self) -> bool:
        """Fold LoRA into the tower's base weights (peft merge_and_unload); False if none."""
        return merge_lora(self.image_encoder)

    def reparameterize(self) -> "DepthModel":
        """Fuse the tower's train-time branches and BatchNorms for inference (no-op for ViTs).

        Eval mode only (BatchNorm folds its running statistics).  The fused tower has other
        state-dict keys: save trained image_encoder weights before, export after.
        """
        if self.training:
            raise RuntimeError("reparameterize an eval-mode model (BatchNorm statistics are "
                               "folded into the convolutions)")
        self.image_encoder.reparameterize()
        return self

    def forward(self, image: torch.Tensor,
                focal_scale: Union[float, torch.Tensor, None] = None) -> torch.Tensor:
        """Canonical-camera depth (B, 1, H, W) in metres for a normalised image batch.

        focal_scale = f_px / canonical_focal_px (scalar or (B,)) is only read by a
        focal-conditioned model (None: the canonical camera itself).
        """
        height, width = image.shape[-2:]
        if self.config.focal_conditioning:
            ratio = 1.0 if focal_scale is None else focal_scale
            ratio = torch.as_tensor(ratio, dtype=torch.float32, device=image.device)
            log_focal = torch.log(ratio.reshape(-1, 1)).expand(image.shape[0], 1)
            depth = self.head(self.image_encoder, image, self.text_embedding(), log_focal)
        else:
            depth = self.head(self.image_encoder, image, self.text_embedding())
        if depth.shape[-2:] != (height, width):
            depth = F.interpolate(depth, size=(height, width), mode="bilinear",
                                  align_corners=False)
        return depth.clamp(self.config.min_depth, self.config.max_depth)

    def infer(self, image: torch.Tensor,
              f_px: Union[float, torch.Tensor, None] = None) -> torch.Tensor:
        """Metric depth (B, 1, H, W); f_px is the focal length at the model input size.

        With ``camera_aware_scale`` on and f_px known, depth = canonical * f_px / canonical_f.
        """
        if not self.config.camera_aware_scale or f_px is None:
            return self.forward(image)
        scale = torch.as_tensor(f_px, dtype=torch.float32, device=image.device) \
            / self.config.canonical_focal_px
        canonical = self.forward(image, scale)
        depth = canonical * scale.to(canonical.dtype).reshape(-1, 1, 1, 1)
        return depth.clamp(self.config.min_depth, self.config.max_depth)
