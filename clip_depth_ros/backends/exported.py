"""What the backends that run an exported graph (onnxruntime, tensorrt) have in common.

The graph is the model's ``infer``: the camera contract (focal length in, metric depth out)
travels inside it, so these backends only feed it the frame's :func:`camera_inputs` and use
the shared numpy frame path of :class:`HostFrameBackend`.  No heavy import: subclasses bring
their runtime.  Imports go one way: model -> export -> backends.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..config import ModelConfig
from ..errors import ConfigError
from ..export_onnx import (FOCAL_INPUT, INPUT_NAME, WIDTH_INPUT, cached_export, graph_inputs,
                           graph_outputs)
from .base import HostFrameBackend
from .engine_cache import DEFAULT_CACHE_DIR

log = logging.getLogger("clip_depth_ros")


def resolve_onnx(onnx_path: Optional[str], model: Union[str, ModelConfig, None],
                 weights: Optional[str], backbone_weights: Optional[str],
                 cache_dir: Union[str, os.PathLike, None]) -> Path:
    """The ONNX graph to run: ``onnx_path`` as given, else model/weights exported (and checked
    against torch) into ``cache_dir`` (needs torch and onnx, not the training package)."""
    if onnx_path:
        path = Path(onnx_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        if weights:
            log.warning("onnx_path %s is given: ignoring weights %s (the graph holds its own)",
                        path, weights)
        return path
    if not model and not weights:
        raise ConfigError("give an onnx_path, or a model name/config (and weights) to export")
    return cached_export(model, weights, backbone_weights, cache_dir or DEFAULT_CACHE_DIR)


def check_graph_io(source: Union[str, Path], config: ModelConfig, inputs: Sequence[str],
                   input_shape: Sequence, outputs: Sequence[str]) -> None:
    """The graph's I/O must be the exporter's fixed-shape contract for this config."""
    height, width = config.input_hw
    expected, expected_out = list(graph_inputs(config)), list(graph_outputs(config))
    if list(inputs) != expected or sorted(outputs) != sorted(expected_out) \
            or list(input_shape) != [1, 3, height, width]:
        raise ConfigError(f"{source}: expected inputs {expected} (image [1, 3, {height}, "
                          f"{width}]) and outputs {expected_out}, got {list(inputs)} -> "
                          f"{list(outputs)} with image shape {list(input_shape)}; re-export it "
                          "with this version (python -m training.export)")


def graph_feed(config: ModelConfig, batch: np.ndarray, f_px: np.ndarray,
               image_width: np.ndarray) -> dict[str, np.ndarray]:
    """The named inputs of a model's graph for one frame."""
    feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
    if config.camera_aware_scale:
        feed[FOCAL_INPUT], feed[WIDTH_INPUT] = f_px, image_width
    return feed


class ExportedGraphBackend(HostFrameBackend):
    """describe() for a fixed-shape graph; subclasses set ``name``, ``precisions``,
    ``config``, ``device``, ``precision``, ``onnx_path`` and implement predict/close."""

    name = "exported"
    config: ModelConfig
    device: str
    precision: str
    onnx_path: Path

    def describe(self) -> dict[str, str]:
        """Backend, device, precision, model, input size and the graph file."""
        height, width = self.config.input_hw
        return {"backend": self.name, "device": str(self.device), "precision": self.precision,
                "model": self.config.name, "method": self.config.method,
                "backbone": self.config.backbone.name, "input_size": f"{width}x{height}",
                "onnx": str(self.onnx_path)}

    def close(self) -> None:
        """Free the runtime session / engine."""
