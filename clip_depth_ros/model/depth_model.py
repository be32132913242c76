"""The depth model: image encoder -> head, with the text side folded into a buffer.

``forward(image)`` returns depth in the canonical camera (metres, clamped to the config's
range); ``infer(image, f_px)`` turns that into metric depth for the actual camera;
``forward_with_aux`` adds the head's auxiliary outputs, which training losses read.  What
differs between methods (head, tower adaptation) comes from their ``MethodSpec``.  Device
choice, image decoding and resizing live in the backends, never here.  Before inference or
export, ``merge_lora`` folds LoRA adapters into the tower and ``reparameterize`` fuses
MobileOne-style branches of convolutional towers (the factory does both for inference builds).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .backbone import TextEncoder
from .lora import apply_lora, has_lora, merge_lora
from .methods import get_method

AuxOutputs = dict[str, torch.Tensor]


def build_head(config: ModelConfig, encoder: nn.Module, text_width: int) -> nn.Module:
    """The head for the config's method."""
    return get_method(config.method).build_head(config, encoder, text_width)


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
        method = get_method(config.method)
        if method.adapt_encoder is not None:
            method.adapt_encoder(image_encoder, config)
        if config.lora is not None:
            apply_lora(image_encoder, config.lora)
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        text_width = text_encoder.width if text_encoder is not None else 0
        self.head = method.build_head(config, image_encoder, text_width)

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
        depth = self.head(*self._head_inputs(image, focal_scale))
        return self._to_input_size(depth, image)

    def forward_with_aux(self, image: torch.Tensor,
                         focal_scale: Union[float, torch.Tensor, None] = None
                         ) -> tuple[torch.Tensor, AuxOutputs]:
        """(depth as ``forward`` returns it, the head's auxiliary outputs) for training.

        The aux dict holds what a method's loss reads besides the depth, at the head's own
        resolution and unclamped -- MoA: ``bin_logits`` (B, n_bins, H, W) and ``regression``
        (B, 1, H, W); empty for DepthCLIP and Mirror.  A future per-pixel uncertainty output
        belongs here too.  Nothing is kept on the model between calls.
        """
        depth, aux = self.head.forward_with_aux(*self._head_inputs(image, focal_scale))
        return self._to_input_size(depth, image), aux

    def _head_inputs(self, image: torch.Tensor,
                     focal_scale: Union[float, torch.Tensor, None]) -> tuple:
        """The head's arguments: tower, image, text embedding (+ log focal ratio (B, 1))."""
        inputs = (self.image_encoder, image, self.text_embedding())
        if not self.config.focal_conditioning:
            return inputs
        ratio = 1.0 if focal_scale is None else focal_scale
        ratio = torch.as_tensor(ratio, dtype=torch.float32, device=image.device)
        return inputs + (torch.log(ratio.reshape(-1, 1)).expand(image.shape[0], 1),)

    def _to_input_size(self, depth: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Head depth resized (bilinear) to the image's size and clamped to the depth range."""
        height, width = image.shape[-2:]
        if depth.shape[-2:] != (height, width):
            depth = F.interpolate(depth, size=(height, width), mode="bilinear",
                                  align_corners=False)
        return depth.clamp(self.config.min_depth, self.config.max_depth)

    def infer(self, image: torch.Tensor, f_px: Union[float, torch.Tensor, None] = None,
              image_width: Union[float, torch.Tensor, None] = None) -> torch.Tensor:
        """Metric depth (B, 1, H, W) for a normalised image batch: the one camera contract.

        f_px is the camera's focal length in pixels *at the source image's resolution* (as in
        CameraInfo) and image_width that image's width; the conversion to the model input size
        happens here, inside every exported graph too (``image_width`` None: f_px is already
        at the model input size).  f_px None or <= 0 means an unknown lens: the canonical
        camera.  With ``camera_aware_scale`` on, depth = canonical * f_model / canonical_f
        (a focal-conditioned decoder also reads that ratio); otherwise f_px is ignored.
        """
        return self._infer(image, f_px, image_width, with_confidence=False)[0]

    def infer_with_confidence(self, image: torch.Tensor,
                              f_px: Union[float, torch.Tensor, None] = None,
                              image_width: Union[float, torch.Tensor, None] = None
                              ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(metric depth as :meth:`infer` gives it, the model's confidence (B, 1, H, W) in
        [0, 1] or None when the model has no such output)."""
        return self._infer(image, f_px, image_width, with_confidence=True)

    def _infer(self, image: torch.Tensor, f_px: Union[float, torch.Tensor, None],
               image_width: Union[float, torch.Tensor, None], with_confidence: bool
               ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        scale = None
        if self.config.camera_aware_scale and f_px is not None:
            focal = torch.as_tensor(f_px, dtype=torch.float32, device=image.device).reshape(-1)
            if image_width is not None:
                width = torch.as_tensor(image_width, dtype=torch.float32,
                                        device=image.device).reshape(-1)
                focal = focal * (float(image.shape[-1]) / width.clamp_min(1.0))
            scale = torch.where(focal > 0, focal / self.config.canonical_focal_px,
                                torch.ones_like(focal))
        if with_confidence and self.config.has_confidence:
            canonical, aux = self.forward_with_aux(image, scale)
            confidence = self._to_input_size_raw(model_confidence(aux), image)
        else:
            canonical, confidence = self.forward(image, scale), None
        if scale is None:
            return canonical, confidence
        depth = canonical * scale.to(canonical.dtype).reshape(-1, 1, 1, 1)
        return depth.clamp(self.config.min_depth, self.config.max_depth), confidence

    @staticmethod
    def _to_input_size_raw(values: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """A per-pixel map resized (bilinear) to the image's size, unclamped."""
        if values.shape[-2:] != image.shape[-2:]:
            values = F.interpolate(values, size=image.shape[-2:], mode="bilinear",
                                   align_corners=False)
        return values


CONFIDENCE_LOG_ERROR = 0.1  # Laplace scale b (log depth) at which the confidence is exp(-1)


def model_confidence(aux: "AuxOutputs") -> torch.Tensor:
    """The model's own confidence (B, 1, h, w) in [0, 1] from a head's auxiliary outputs:
    exp(-b / 0.1) for a Laplace scale b of the log-depth error (an uncertainty head), or
    1 - normalised entropy of a bin distribution (bin heads)."""
    if "log_b" in aux:
        return torch.exp(-torch.exp(aux["log_b"].float()) / CONFIDENCE_LOG_ERROR)
    probs = aux["bin_probs"].float() if "bin_probs" in aux else \
        torch.softmax(aux["bin_logits"].float(), dim=1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-8))).sum(dim=1, keepdim=True)
    return 1.0 - entropy / math.log(probs.shape[1])
