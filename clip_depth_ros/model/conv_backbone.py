"""open_clip timm towers (convolutional / hybrid, e.g. MobileCLIP's FastViT-MCi) for dense features.

Same interface as :class:`~.backbone.ImageEncoder`: ``feature_maps`` returns NCHW maps of the
configured stages through timm's ``forward_intermediates`` (no hooks), ``tap_channels`` /
``tap_strides`` describe them, ``patch_size`` is the stride of the deepest tap.

``project`` is the dense form of the tower's image embedding.  The pooled embedding is
``linear(avg_pool(tail(x)))`` where ``tail`` is the trunk's post-stage block (FastViT's
``final_conv``) and ``linear`` the timm classifier ``fc`` and/or open_clip's ``proj``.  Average
pooling commutes with linear maps, so applying the linears per location (1x1 convs) after the
tail gives a map whose spatial mean is exactly the image embedding -- the MaskCLIP-style dense
projection.  (FastViT's tail has a squeeze-excite, whose channel gate is a global average.)
Towers with attention pooling, an MLP projection or a norm after pooling have no such map.

BatchNorm statistics stay frozen (eval) in train mode: the backbone's running statistics come
from CLIP pretraining, and small dense-prediction batches would only corrupt them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ImageEncoder


def _dense_projection(visual: nn.Module) -> tuple[nn.Module, list[nn.Linear], Optional[str]]:
    """(tail, linears, reason): how to map the last stage to the joint space per location;
    ``reason`` says why that is impossible (None when it is possible)."""
    trunk = visual.trunk
    tail = getattr(trunk, "final_conv", None)
    tail = nn.Identity() if tail is None else tail
    linears: list[nn.Linear] = []
    head = getattr(trunk, "head", None)
    if head is not None and hasattr(head, "global_pool"):
        pool = getattr(head.global_pool, "pool_type", "")
        extra = [n for n, m in head.named_children()
                 if n not in ("global_pool", "drop", "fc", "flatten") and not
                 isinstance(m, nn.Identity)]
        if pool not in ("avg", "") or extra:
            return tail, [], f"timm head pools with '{pool}' / has {extra}"
        if isinstance(head.fc, nn.Linear):
            linears.append(head.fc)
    elif head is not None and not isinstance(head, nn.Identity):
        return tail, [], f"timm head {type(head).__name__} is not avg-pool + linear"
    for name, module in visual.head.named_children():  # open_clip's own pooling / projection
        if isinstance(module, nn.Linear):
            linears.append(module)
        elif not isinstance(module, (nn.Dropout, nn.Identity)):
            return tail, [], f"open_clip head has a '{name}' ({type(module).__name__})"
    return tail, linears, None


class ConvImageEncoder(nn.Module):
    """An open_clip ``TimmModel`` tower returning NCHW maps of chosen stages, shallow to deep."""

    def __init__(self, visual: nn.Module, feature_layers: Sequence[int]):
        super().__init__()
        trunk = getattr(visual, "trunk", None)
        if trunk is None or not hasattr(trunk, "forward_intermediates") \
                or not hasattr(trunk, "feature_info"):
            raise TypeError(f"backbone vision tower {type(visual).__name__} is not an open_clip "
                            "timm tower with forward_intermediates and feature_info")
        self.visual = visual
        info = list(trunk.feature_info)  # one entry per stage: the indices of forward_intermediates
        n_stages = len(info)
        if not feature_layers or any(not -n_stages <= i < n_stages for i in feature_layers):
            raise ValueError(f"feature_layers {list(feature_layers)} out of range for "
                             f"{n_stages} stages")
        self.feature_layers = sorted({i % n_stages for i in feature_layers})
        self.tap_channels = [int(info[i]["num_chs"]) for i in self.feature_layers]
        self.tap_strides = [int(info[i]["reduction"]) for i in self.feature_layers]
        self.width = self.tap_channels[-1]
        self.patch_size = self.tap_strides[-1]
        self._last_stage = n_stages - 1
        self._last_channels = int(info[-1]["num_chs"])
        _, linears, self._no_projection = _dense_projection(visual)
        if linears:
            self.embed_dim = int(linears[-1].out_features)
        else:
            self.embed_dim = int(getattr(trunk, "num_features", self._last_channels))
        self.freeze_batchnorm = True
        self.reparameterized = False

    def feature_maps(self, image: torch.Tensor, normalize: bool = False) -> list[torch.Tensor]:
        """Stage outputs (B, tap_channels[i], H/stride, W/stride), one per feature layer.

        ``normalize`` is accepted for the shared interface; these trunks have no per-stage norm.
        """
        out = self.visual.forward_intermediates(
            image, indices=self.feature_layers, stop_early=True,
            normalize_intermediates=normalize, intermediates_only=True, output_fmt="NCHW")
        return out["image_intermediates"]

    def project(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Map the last stage's output (B, C, h, w) into the joint image-text space, NCHW."""
        # looked up per call (cheap): reparameterize() may replace the tail's modules
        tail, linears, reason = _dense_projection(self.visual)
        if reason is not None:
            raise NotImplementedError(f"no dense projection for this timm tower: {reason}")
        if feature_map.shape[1] != self._last_channels:
            raise ValueError(f"project needs the last stage's map ({self._last_channels} "
                             f"channels, feature layer {self._last_stage}), got "
                             f"{feature_map.shape[1]} channels")
        x = tail(feature_map)
        for linear in linears:
            x = F.conv2d(x, linear.weight[:, :, None, None].to(x.dtype),
                         None if linear.bias is None else linear.bias.to(x.dtype))
        return x

    def train(self, mode: bool = True) -> "ConvImageEncoder":
        """Switch mode, keeping BatchNorm running statistics frozen (see the module docstring)."""
        super().train(mode)
        if mode and self.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuse MobileOne / RepMixer branches and BatchNorms for inference (timm), in place.

        The fused tower computes the same function in eval mode but has other modules and
        state-dict keys: train and save trained parts before, export after.  It is frozen.
        """
        if self.reparameterized:
            return
        from timm.models import reparameterize_model
        reparameterize_model(self.visual.trunk, inplace=True)
        self.visual.requires_grad_(False)
        self.reparameterized = True


def build_image_encoder(visual: nn.Module, feature_layers: Sequence[int]) -> nn.Module:
    """The encoder for an open_clip vision tower: ConvImageEncoder for timm towers, else the
    ViT ImageEncoder (which rejects other tower types with a clear error)."""
    if hasattr(visual, "trunk"):
        return ConvImageEncoder(visual, feature_layers)
    return ImageEncoder(visual, feature_layers)
