"""What the backends that run an exported graph (onnxruntime, tensorrt) have in common.

The graph computes canonical-camera depth at the model input size; the camera-aware scale,
the clamp after it and the resize back to the image size happen here in numpy, with the
shared pre/post-processing of :mod:`.base`.  No heavy import: subclasses bring their runtime.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..config import ModelConfig
from ..geometry import Intrinsics
from .base import model_focal_px, preprocess, resize_back
from .engine_cache import DEFAULT_CACHE_DIR

log = logging.getLogger("clip_depth_ros")


def apply_camera_scale(depth_m: np.ndarray, f_px: Optional[float],
                       config: ModelConfig) -> np.ndarray:
    """Canonical -> metric depth for a camera of focal length f_px (at the model input size),
    clamped to the model range; unchanged when the model is not camera-aware or f_px unknown."""
    if not config.camera_aware_scale or f_px is None:
        return depth_m
    scaled = depth_m * np.float32(f_px / config.canonical_focal_px)
    return np.clip(scaled, config.min_depth, config.max_depth).astype(np.float32, copy=False)


def resolve_onnx(onnx_path: Optional[str], model: Union[str, ModelConfig, None],
                 weights: Optional[str], backbone_weights: Optional[str],
                 cache_dir: Union[str, os.PathLike, None]) -> Path:
    """The ONNX graph to run: ``onnx_path`` as given, else model/weights exported into
    ``cache_dir`` (the export needs torch and onnx, not the training package)."""
    if onnx_path:
        path = Path(onnx_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        if weights:
            log.warning("onnx_path %s is given: ignoring weights %s (the graph holds its own)",
                        path, weights)
        return path
    if not model and not weights:
        raise ValueError("give an onnx_path, or a model name/config (and weights) to export")
    from ..export_onnx import cached_export
    return cached_export(model, weights, backbone_weights, cache_dir or DEFAULT_CACHE_DIR)


class ExportedGraphBackend:
    """infer/describe for a fixed-shape graph: image (1x3xHxW) in, depth (1x1xHxW) out.

    Subclasses set ``name``, ``config``, ``device``, ``precision``, ``onnx_path`` and
    implement :meth:`run` and :meth:`close`.
    """

    name = "exported"
    config: ModelConfig
    device: str
    precision: str
    onnx_path: Path

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Canonical depth (1, 1, h, w) float32 for a normalised (1, 3, h, w) batch."""
        raise NotImplementedError

    def infer(self, image_rgb: np.ndarray,
              intrinsics: Optional[Intrinsics] = None) -> np.ndarray:
        """Depth (H, W) float32 metres for an (H, W, 3) uint8 RGB image."""
        batch = preprocess(image_rgb, self.config)
        depth = np.asarray(self.run(batch), dtype=np.float32)[0, 0]
        depth = apply_camera_scale(depth, model_focal_px(intrinsics, self.config), self.config)
        return resize_back(depth, image_rgb.shape[1], image_rgb.shape[0])

    def describe(self) -> dict[str, str]:
        """Backend, device, precision, model, input size and the graph file."""
        height, width = self.config.input_hw
        return {"backend": self.name, "device": str(self.device), "precision": self.precision,
                "model": self.config.name, "method": self.config.method,
                "backbone": self.config.backbone.name, "input_size": f"{width}x{height}",
                "onnx": str(self.onnx_path)}

    def close(self) -> None:
        """Free the runtime session / engine."""
