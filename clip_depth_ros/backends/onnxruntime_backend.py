"""onnxruntime backend: runs the exported graph on the CPU, CUDA or ORT's TensorRT provider.

The model config comes from the ONNX metadata, so an .onnx alone is enough; given a model
name / weights instead, the graph is exported into the cache directory first.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..config import ModelConfig
from ..errors import BackendError, ConfigError
from ..export_onnx import config_from_metadata, graph_outputs
from .base import check_precision
from .engine_cache import DEFAULT_CACHE_DIR
from .exported import ExportedGraphBackend, check_graph_io, graph_feed, resolve_onnx

try:
    import onnxruntime as ort
except ImportError as exc:  # the registry turns this into "backend needs onnxruntime"
    raise ImportError(f"the onnxruntime backend needs onnxruntime: pip install onnxruntime "
                      f"(CPU) or onnxruntime-gpu (CUDA/TensorRT) ({exc})") from None

log = logging.getLogger("clip_depth_ros")

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# onnxruntime's own log (its C++ logger writes straight to stderr in its own format, outside
# the node's log): errors only.  Its warnings on every session start (nodes it places on the
# CPU next to CUDA, GPU discovery notes) are not for users; our log names the providers in use.
ORT_LOG_SEVERITY = 3  # 0 verbose, 1 info, 2 warning, 3 error, 4 fatal
PROVIDER_CHAINS = {"cpu": (CPU,), "cuda": (CUDA, CPU), "tensorrt": (TRT, CUDA, CPU)}


def parse_device(device: str) -> tuple[str, int]:
    """'auto' / 'cpu' / 'cuda' / 'cuda:N' -> (type, index); auto = cuda when this
    onnxruntime has its CUDA provider, else cpu."""
    if device in ("", "auto"):
        return ("cuda" if CUDA in ort.get_available_providers() else "cpu"), 0
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{device}'")
    return kind, int(index or 0)


def choose_providers(providers: Union[str, Sequence[str], None], device: str,
                     available: Sequence[str]) -> list[str]:
    """The provider chain to ask for: a named chain (auto = by device) or explicit ORT names,
    keeping only the installed ones (CPU always last resort)."""
    if providers is None or providers in ("", "auto"):
        providers = parse_device(device)[0]
    if isinstance(providers, str):
        if providers not in PROVIDER_CHAINS:
            raise ConfigError(f"providers must be one of auto, {', '.join(PROVIDER_CHAINS)} or a "
                             f"list of onnxruntime provider names, got '{providers}'")
        wanted = list(PROVIDER_CHAINS[providers])
    else:
        wanted = list(providers)
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        log.warning("onnxruntime here has no %s (installed: %s); a GPU needs onnxruntime-gpu",
                    ", ".join(missing), ", ".join(available))
    if not chosen:
        if CPU not in available:
            raise BackendError(f"none of the providers {wanted} is available: {list(available)}")
        chosen = [CPU]
    return chosen


class OnnxRuntimeBackend(ExportedGraphBackend):
    """Runs an exported depth graph with onnxruntime."""

    name = "onnxruntime"
    precisions = ("fp32", "fp16")  # fp16 through onnxruntime's TensorRT provider only

    def __init__(self, onnx_path: Optional[str] = None, model: Union[str, ModelConfig, None] = None,
                 weights: Optional[str] = None, backbone_weights: Optional[str] = None,
                 device: str = "auto", precision: str = "fp32",
                 providers: Union[str, Sequence[str], None] = None, threads: int = 0,
                 cache_dir: str = DEFAULT_CACHE_DIR):
        kind, index = parse_device(device)
        device = kind if kind == "cpu" else f"cuda:{index}"
        chain = choose_providers(providers, device, ort.get_available_providers())
        check_precision(self.name, precision, self.precisions)
        if precision == "fp16" and TRT not in chain:
            raise ConfigError("precision fp16 needs onnxruntime's TensorRT provider "
                             "(providers: tensorrt, with onnxruntime-gpu); use fp32 here")
        self.device, self.precision = device, precision
        self.onnx_path = resolve_onnx(onnx_path, model, weights, backbone_weights, cache_dir)
        ort.set_default_logger_severity(ORT_LOG_SEVERITY)
        options = ort.SessionOptions()
        options.log_severity_level = ORT_LOG_SEVERITY
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            options.intra_op_num_threads = int(threads)
        engines = str(Path(cache_dir).expanduser())
        provider_options = {
            CUDA: {"device_id": index},
            TRT: {"device_id": index, "trt_fp16_enable": precision == "fp16",
                  "trt_engine_cache_enable": True, "trt_engine_cache_path": engines},
        }
        self._session = ort.InferenceSession(
            str(self.onnx_path), options, providers=chain,
            provider_options=[provider_options.get(p, {}) for p in chain])
        self.providers = self._session.get_providers()
        self.config = config_from_metadata(self._session.get_modelmeta().custom_metadata_map,
                                           str(self.onnx_path))
        self._check_io()
        log.info("onnxruntime %s on %s (%s); active providers: %s", ort.__version__, device,
                 self.onnx_path, ", ".join(self.providers))

    def _check_io(self) -> None:
        """The graph's I/O must be the fixed-shape contract of the exporter."""
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        check_graph_io(self.onnx_path, self.config, [i.name for i in inputs], inputs[0].shape,
                       [o.name for o in outputs])

    def predict(self, batch: np.ndarray, f_px: np.ndarray,
                image_width: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(metric depth, the model's confidence or None), (h, w) float32 at the model input
        size (the graph is ``infer``)."""
        if self._session is None:
            raise BackendError("the onnxruntime backend was closed")
        feed = graph_feed(self.config, batch, f_px, image_width)
        maps = [m[0, 0].astype(np.float32, copy=False)
                for m in self._session.run(list(graph_outputs(self.config)), feed)]
        return maps[0], (maps[1] if len(maps) > 1 else None)

    def describe(self) -> dict[str, str]:
        """The common fields plus the active onnxruntime providers."""
        return {**super().describe(), "providers": ",".join(self.providers),
                "runtime": f"onnxruntime {ort.__version__}"}

    def close(self) -> None:
        """Drop the session."""
        self._session = None
