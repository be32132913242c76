"""PyTorch backend: CPU or CUDA, fp32 / fp16 / bf16, the host frame path or a device path.

On the CPU the default is eager torch inside the shared numpy frame path
(:class:`~.base.HostFrameBackend`: only :meth:`TorchBackend.predict` is torch).  On CUDA the
default is the device path, which overrides ``infer_frame`` as a whole: the uint8 image is
copied into a pinned, preallocated buffer, uploaded once, resized and normalised on the GPU,
run through ``DepthModel.infer`` (the camera contract) and resized back, all into
preallocated device tensors (:class:`FrameRunner`); that fixed-shape sequence is captured once
per image size as a CUDA graph and replayed, so a frame costs one graph launch.  Points and
the colorized depth are built on the device too, so the host only copies the final bytes.
``compile=True`` wraps ``infer`` in torch.compile; the first frame of a size compiles, so
the node runs one probe frame at configure time (before the first real frame).
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import BackendError, ConfigError
from ..frame import FrameOutputs, FrameRequest
from ..geometry import Intrinsics
from ..model import create_model
from ..model.factory import PRECISIONS
from . import torch_ops
from .base import (DEFAULT_REQUEST, HostFrameBackend, camera_inputs, check_image,
                   check_intrinsics, check_precision, cpu_has_native_bf16)

log = logging.getLogger("clip_depth_ros")

FAST_PATH_MODES = ("auto", "always", "never")  # not on/off: YAML reads those as bools
_MAX_RUNNERS = 4  # image sizes kept captured at once (each holds its buffers and graph)


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when torch sees a GPU, else cpu; 'cpu' / 'cuda' / 'cuda:N' as given."""
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{device}'") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{device}'")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device '{device}' requested but torch sees no CUDA GPU; use "
                           "device auto or cpu")
    return resolved


class FrameRunner:
    """Fixed-shape frame execution for one input image size with preallocated buffers.

    Holds the (pinned on CUDA) host input, the device input, the focal length (a device
    scalar, so a graph replays with each frame's value; the image width is this runner's) and,
    once captured, a CUDA graph whose output tensor is reused every replay.  On the CPU it runs
    the same torch sequence eagerly (used to test it without a GPU).
    """

    def __init__(self, infer: Callable[..., torch.Tensor], input_hw: tuple[int, int],
                 normalization: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype,
                 device: torch.device, height: int, width: int, use_graph: bool):
        self.infer, self.input_hw, self.dtype, self.device = infer, input_hw, dtype, device
        self.scale, self.offset = normalization
        self.height, self.width = int(height), int(width)
        cuda = device.type == "cuda"
        self.host_in = torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=cuda)
        self.dev_in = (torch.empty((height, width, 3), dtype=torch.uint8, device=device)
                       if cuda else self.host_in)
        self.f_px = torch.zeros((1,), dtype=torch.float32, device=device)
        self.image_width = torch.full((1,), float(width), dtype=torch.float32, device=device)
        self._host_out: dict[str, torch.Tensor] = {}
        self.graph = None
        self.static_out: Optional[tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        if use_graph:
            self._capture()

    @torch.inference_mode()
    def _body(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = torch_ops.preprocess_uint8(self.dev_in, self.input_hw, self.scale, self.offset,
                                       self.dtype)
        depth, confidence = self.infer(x, self.f_px, self.image_width)
        # the model's confidence stays at the model's input size, float32, as the host path
        # gives it (the confidence step resizes it only when a consumer wants it)
        return (torch_ops.resize_depth_back(depth, self.height, self.width),
                None if confidence is None else confidence[0, 0].float())

    def _capture(self) -> None:
        """Warm up on a side stream, then capture :meth:`_body` as a CUDA graph; on failure
        (an op that cannot be captured) warn once and stay eager for this size."""
        self.dev_in.zero_()
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.static_out = self._body()
            self.graph = graph
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager
            self.graph, self.static_out = None, None
            log.warning("CUDA graph capture failed for %dx%d input (%s: %s); running eagerly",
                        self.width, self.height, type(exc).__name__, exc)

    def execute(self, image_rgb: np.ndarray, f_px: float
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Depth (H, W) float32 on the device for this frame, and the model's confidence at
        its input size (None when the model has none); reused buffers when graphed.
        f_px: the focal length at the image's resolution (0 = unknown lens)."""
        self.host_in.numpy()[...] = image_rgb
        if self.dev_in is not self.host_in:
            self.dev_in.copy_(self.host_in, non_blocking=True)
        self.f_px.fill_(f_px)
        if self.graph is not None:
            self.graph.replay()
            return self.static_out
        return self._body()

    def start_download(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """Queue a device -> host copy into a reused (pinned) buffer; valid after sync()."""
        if tensor.device.type == "cpu":
            return tensor
        buf = self._host_out.get(name)
        if buf is None or buf.shape != tensor.shape or buf.dtype != tensor.dtype:
            buf = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host_out[name] = buf
        buf.copy_(tensor, non_blocking=True)
        return buf

    def sync(self) -> None:
        """Wait for queued copies (no-op on the CPU)."""
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()


class TorchBackend(HostFrameBackend):
    """Runs a :class:`DepthModel` with torch (see the module docstring for the device path)."""

    name = "torch"
    precisions = ("fp32", "bf16", "fp16")

    @staticmethod
    def auto_precision(device: str = "auto") -> str:
        """What precision 'auto' runs: bf16 on a CPU that computes it natively (the bundled
        model 1.6x faster at the same depth: held-out d1 and AbsRel within 0.001, BENCHMARKS.md),
        else fp32 (on CUDA too: fp16 there is not measured yet)."""
        return "bf16" if resolve_device(device).type == "cpu" and cpu_has_native_bf16() \
            else "fp32"

    def __init__(self, model: Optional[str] = "tiny-mirror", weights: Optional[str] = None,
                 backbone_weights: Optional[str] = None, device: str = "auto",
                 precision: str = "fp32", threads: int = 0, fast_path: str = "auto",
                 cuda_graphs: bool = True, compile: bool = False):
        check_precision(self.name, precision, self.precisions)
        if fast_path not in FAST_PATH_MODES:
            raise ConfigError(f"fast_path must be one of {', '.join(FAST_PATH_MODES)}, got "
                              f"'{fast_path}'")
        self.device = resolve_device(device)
        cuda = self.device.type == "cuda"
        if not cuda and precision == "fp16":
            log.warning("fp16 on the CPU is slow and poorly supported; use fp32 or bf16")
        if threads > 0:
            torch.set_num_threads(threads)
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.model = create_model(model or None, weights=weights,
                                  backbone_weights=backbone_weights, device=self.device,
                                  precision=precision)
        # Channels-last convolution weights: oneDNN (CPU) and cuDNN pick their fast kernels
        # for the decoder's convolutions (1.8x on the demo model on 2 CPU cores, same depth
        # within 1e-5 m); Linear / attention weights are unaffected.
        self.model = self.model.to(memory_format=torch.channels_last)
        self.config = self.model.config
        scale, offset = self.config.uint8_normalization()
        self._normalization = (torch.from_numpy(scale).to(self.device).view(1, 3, 1, 1),
                               torch.from_numpy(offset).to(self.device).view(1, 3, 1, 1))
        # device path: preallocated buffers + device pre/post (+ CUDA graphs on CUDA)
        self.fast_path = fast_path == "always" or (fast_path == "auto" and cuda)
        self.cuda_graphs = bool(cuda_graphs) and cuda and self.fast_path
        self.compiled = bool(compile)
        # DepthModel.infer_with_confidence: the network plus the camera contract (focal length
        # in), and the model's own confidence when it has one
        self._infer: Callable[..., tuple] = self.model.infer_with_confidence
        if self.compiled:
            # fixed shapes: no dynamic-shape guards; the first frame of each size compiles
            self._infer = torch.compile(self.model.infer_with_confidence, dynamic=False)
        self._runners: OrderedDict[tuple[int, int], FrameRunner] = OrderedDict()
        self._rays: OrderedDict[tuple[Intrinsics, int], tuple[torch.Tensor, torch.Tensor]] = \
            OrderedDict()
        self._luts: dict[str, torch.Tensor] = {}

    def describe(self) -> dict[str, str]:
        """Backend, device, precision, model, input size and execution mode."""
        height, width = self.config.input_hw
        mode = "eager"
        if self.fast_path:
            mode = "device path" + (" + CUDA graphs" if self.cuda_graphs else "")
        if self.compiled:
            mode += " + torch.compile"
        return {"backend": self.name, "device": str(self.device), "precision": self.precision,
                "model": self.config.name, "method": self.config.method,
                "backbone": self.config.backbone.name, "input_size": f"{width}x{height}",
                "mode": mode}

    @torch.inference_mode()
    def predict(self, batch: np.ndarray, f_px: np.ndarray,
                image_width: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(metric depth, the model's confidence or None) at the model input size
        (``DepthModel.infer_with_confidence``)."""
        x = torch.from_numpy(batch).to(self.device, self.dtype)
        # tensors, not floats: torch.compile would specialise on every focal length
        depth, confidence = self._infer(x, torch.from_numpy(f_px).to(self.device),
                                        torch.from_numpy(image_width).to(self.device))
        return (depth[0, 0].float().cpu().numpy(),
                None if confidence is None else confidence[0, 0].float().cpu().numpy())

    def infer_frame(self, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics] = None,
                    request: FrameRequest = DEFAULT_REQUEST) -> FrameOutputs:
        """The host path on the CPU by default; the device path when ``fast_path`` is on."""
        if not self.fast_path:
            return super().infer_frame(image_rgb, intrinsics, request)
        return self._device_frame(image_rgb, intrinsics, request)

    def _runner(self, height: int, width: int) -> FrameRunner:
        key = (height, width)
        runner = self._runners.get(key)
        if runner is None:
            runner = FrameRunner(self._infer, self.config.input_hw, self._normalization,
                                 self.dtype, self.device, height, width, self.cuda_graphs)
            self._runners[key] = runner
            while len(self._runners) > _MAX_RUNNERS:
                self._runners.popitem(last=False)
        self._runners.move_to_end(key)
        return runner

    def _rays_for(self, intrinsics: Intrinsics, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (intrinsics, stride)
        rays = self._rays.get(key)
        if rays is None:
            rays = torch_ops.ray_grid_torch(intrinsics, stride, self.device)
            self._rays[key] = rays
            while len(self._rays) > 8:
                self._rays.popitem(last=False)
        return rays

    def _lut(self, colormap: str) -> torch.Tensor:
        if colormap not in self._luts:
            self._luts[colormap] = torch_ops.colormap_lut(colormap, self.device)
        return self._luts[colormap]

    @torch.inference_mode()
    def _device_frame(self, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics],
                      request: FrameRequest) -> FrameOutputs:
        """Depth, and on request the point-cloud body and colorized depth, built on the
        device (same results as the host path; one timing, 'inference', covers it all)."""
        t0 = time.perf_counter()
        check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        check_intrinsics(intrinsics, width, height)
        usable = intrinsics if intrinsics is not None and intrinsics.is_valid() else None
        runner = self._runner(height, width)
        depth, confidence = runner.execute(image_rgb,
                                           float(camera_inputs(usable, width)[0][0]))
        host_depth = runner.start_download("depth", depth)
        host_confidence = (None if confidence is None
                           else runner.start_download("confidence", confidence))
        host_cloud = host_colored = None
        if request.points and usable is not None:
            stride = int(request.point_stride)
            body = torch_ops.cloud_body_torch(depth, self._rays_for(usable, stride), stride,
                                              request.max_range_m,
                                              runner.dev_in if request.points_rgb else None)
            host_cloud = runner.start_download("cloud", body)
        if request.colored:
            lo, hi = request.display_range_m
            bgr = torch_ops.colorize_torch(depth, lo, hi, self._lut(request.colormap))
            host_colored = runner.start_download("colored", bgr)
        runner.sync()
        # copies: the pinned / graph-owned buffers are reused by the next frame
        return FrameOutputs(
            depth_m=host_depth.numpy().copy(), intrinsics=usable,
            cloud=None if host_cloud is None else host_cloud.numpy().copy(),
            colored_bgr=None if host_colored is None else host_colored.numpy().copy(),
            model_confidence=(None if host_confidence is None
                              else host_confidence.numpy().copy()),
            timings_ms={"inference": (time.perf_counter() - t0) * 1e3})

    def close(self) -> None:
        """Drop the model, graphs and buffers and release cached device memory."""
        self._runners.clear()
        self._rays.clear()
        self._luts.clear()
        self.model = None
        self._infer = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
