"""PyTorch backend: CPU or CUDA, fp32 / fp16 / bf16.

On the CPU, pre/post-processing is the shared numpy code; on CUDA the uint8 image is uploaded
once and resized / normalised on the GPU so the host only moves the raw bytes.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import Intrinsics
from ..model import create_model
from ..model.factory import PRECISIONS
from .base import check_image, model_focal_px, preprocess, resize_back

log = logging.getLogger("clip_depth_ros")


class TorchBackend:
    """Runs a :class:`DepthModel` eagerly with torch."""

    name = "torch"

    def __init__(self, model: Optional[str] = "tiny-mirror", weights: Optional[str] = None,
                 backbone_weights: Optional[str] = None, device: str = "cpu",
                 precision: str = "fp32", threads: int = 0):
        if precision not in PRECISIONS:  # before PRECISIONS[...]: a clear error, not KeyError
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got '{precision}'")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA GPU")
        if self.device.type == "cpu" and precision == "fp16":
            log.warning("fp16 on the CPU is slow and poorly supported; use fp32 or bf16")
        if threads > 0:
            torch.set_num_threads(threads)
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.model = create_model(model or None, weights=weights,
                                  backbone_weights=backbone_weights, device=self.device,
                                  precision=precision)
        self.config = self.model.config
        cfg = self.config
        self._mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._inv_std = 1.0 / (torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1) * 255.0)

    def describe(self) -> dict[str, str]:
        """Backend, device, precision, model and input size."""
        height, width = self.config.input_hw
        return {"backend": self.name, "device": str(self.device), "precision": self.precision,
                "model": self.config.name, "method": self.config.method,
                "backbone": self.config.backbone.name, "input_size": f"{width}x{height}"}

    def preprocess(self, image_rgb: np.ndarray) -> torch.Tensor:
        """uint8 HxWx3 RGB -> normalised 1x3xhxw tensor on the device, in the model dtype."""
        if self.device.type == "cpu":
            return torch.from_numpy(preprocess(image_rgb, self.config)).to(self.dtype)
        check_image(image_rgb)
        height, width = self.config.input_hw
        x = torch.from_numpy(image_rgb).to(self.device, non_blocking=True)
        x = x.permute(2, 0, 1).unsqueeze(0).float()
        if x.shape[-2:] != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                              antialias=x.shape[-2] > height or x.shape[-1] > width)
        return ((x - self._mean) * self._inv_std).to(self.dtype)

    @torch.inference_mode()
    def run(self, batch: torch.Tensor, f_px: Optional[float] = None) -> torch.Tensor:
        """Model-resolution metric depth (1, 1, h, w) float32 on the device; f_px is the
        focal length at the model input size (used by camera-aware models)."""
        return self.model.infer(batch, f_px).float()

    @torch.inference_mode()
    def postprocess(self, depth: torch.Tensor, width: int, height: int) -> np.ndarray:
        """Depth at the image resolution as a float32 numpy array."""
        if self.device.type == "cpu":
            return resize_back(depth[0, 0].numpy(), width, height)
        if depth.shape[-2:] != (height, width):
            depth = F.interpolate(depth, size=(height, width), mode="bilinear",
                                  align_corners=False)
        return depth[0, 0].cpu().numpy()

    def infer(self, image_rgb: np.ndarray,
              intrinsics: Optional[Intrinsics] = None) -> np.ndarray:
        """Depth (H, W) float32 metres for an (H, W, 3) uint8 RGB image."""
        batch = self.preprocess(image_rgb)
        depth = self.run(batch, model_focal_px(intrinsics, self.config))
        return self.postprocess(depth, image_rgb.shape[1], image_rgb.shape[0])

    def close(self) -> None:
        """Drop the model and release cached device memory."""
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
