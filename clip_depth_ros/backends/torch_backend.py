"""PyTorch backend: CPU or CUDA, fp32 / fp16 / bf16, eager or with a fast fixed-shape path.

On the CPU the default is eager torch with the shared numpy pre/post-processing.  On CUDA the
default is the fast path (:class:`FrameRunner`): the uint8 image is copied into a pinned,
preallocated buffer, uploaded once, resized and normalised on the GPU, run through the model
and resized back, all into preallocated device tensors; that fixed-shape sequence is captured
once per image size as a CUDA graph and replayed, so a frame costs one graph launch instead of
hundreds of kernel launches.  ``compile=True`` additionally wraps the model in torch.compile.
:meth:`TorchBackend.infer_with_outputs` also builds the point-cloud body and the colorized
depth on the device, so the host only copies the final bytes.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..geometry import Intrinsics
from ..model import create_model
from ..model.factory import PRECISIONS
from . import torch_ops
from .base import check_image, model_focal_px, preprocess, resize_back

log = logging.getLogger("clip_depth_ros")

FAST_PATH_MODES = ("auto", "always", "never")  # not on/off: YAML reads those as bools
_MAX_RUNNERS = 4  # image sizes kept captured at once (each holds its buffers and graph)


@dataclass
class DeviceOutputs:
    """What :meth:`TorchBackend.infer_with_outputs` returns, all numpy on the host."""

    depth_m: np.ndarray  # (H, W) float32 metres
    cloud_body: Optional[np.ndarray] = None  # (H', W', 3 | 4) float32 PointCloud2 body
    colored_bgr: Optional[np.ndarray] = None  # (H, W, 3) uint8


class FrameRunner:
    """Fixed-shape frame execution for one input image size with preallocated buffers.

    Holds the (pinned on CUDA) host input, the device input, the focal length for camera-aware
    models (a device scalar, so a graph replays with each frame's value) and, once captured, a CUDA graph whose output tensor is reused every replay.  On the
    CPU it runs the same torch sequence eagerly (used to test it without a GPU).
    """

    def __init__(self, backend: "TorchBackend", height: int, width: int, use_graph: bool):
        self.backend = backend
        self.height, self.width = int(height), int(width)
        device = backend.device
        cuda = device.type == "cuda"
        self.host_in = torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=cuda)
        self.dev_in = (torch.empty((height, width, 3), dtype=torch.uint8, device=device)
                       if cuda else self.host_in)
        self.focal_px = torch.full((), backend.config.canonical_focal_px, dtype=torch.float32,
                                   device=device)
        self._host_out: dict[str, torch.Tensor] = {}
        self.graph = None
        self.static_out: Optional[torch.Tensor] = None
        if use_graph:
            self._capture()

    @torch.inference_mode()
    def _body(self) -> torch.Tensor:
        b = self.backend
        cfg = b.config
        x = torch_ops.preprocess_uint8(self.dev_in, cfg.input_hw, b._mean, b._inv_std, b.dtype)
        return torch_ops.resize_depth_back(b._forward(x, self.focal_px), self.height, self.width)

    def _capture(self) -> None:
        """Warm up on a side stream, then capture :meth:`_body` as a CUDA graph; on failure
        (an op that cannot be captured) warn once and stay eager for this size."""
        self.dev_in.zero_()
        try:
            side = torch.cuda.Stream(self.backend.device)
            side.wait_stream(torch.cuda.current_stream(self.backend.device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._body()
            torch.cuda.current_stream(self.backend.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.static_out = self._body()
            self.graph = graph
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager
            self.graph, self.static_out = None, None
            log.warning("CUDA graph capture failed for %dx%d input (%s: %s); running eagerly",
                        self.width, self.height, type(exc).__name__, exc)

    def run(self, image_rgb: np.ndarray, focal_px: float) -> torch.Tensor:
        """Depth (H, W) float32 on the device for this frame; reused buffer when graphed.
        focal_px: at the model input size (the canonical one when the lens is unknown)."""
        self.host_in.numpy()[...] = image_rgb
        if self.dev_in is not self.host_in:
            self.dev_in.copy_(self.host_in, non_blocking=True)
        self.focal_px.fill_(focal_px)
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
        if self.backend.device.type == "cuda":
            torch.cuda.current_stream(self.backend.device).synchronize()


class TorchBackend:
    """Runs a :class:`DepthModel` with torch (see the module docstring for the fast path)."""

    name = "torch"

    def __init__(self, model: Optional[str] = "tiny-mirror", weights: Optional[str] = None,
                 backbone_weights: Optional[str] = None, device: str = "cpu",
                 precision: str = "fp32", threads: int = 0, fast_path: str = "auto",
                 cuda_graphs: bool = True, compile: bool = False):
        if precision not in PRECISIONS:  # before PRECISIONS[...]: a clear error, not KeyError
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got '{precision}'")
        if fast_path not in FAST_PATH_MODES:
            raise ValueError(f"fast_path must be one of {FAST_PATH_MODES}, got '{fast_path}'")
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
        cuda = self.device.type == "cuda"
        # fast path: preallocated buffers + device pre/post (+ CUDA graphs on CUDA)
        self.fast_path = fast_path == "always" or (fast_path == "auto" and cuda)
        self.cuda_graphs = bool(cuda_graphs) and cuda and self.fast_path
        self.compiled = bool(compile)
        # DepthModel.infer: the network plus the camera-aware scale (and focal conditioning)
        self._forward: Callable[..., torch.Tensor] = self.model.infer
        if self.compiled:
            # fixed shapes: no dynamic-shape guards; the first frame of each size compiles
            self._forward = torch.compile(self.model.infer, dynamic=False)
        self._runners: OrderedDict[tuple[int, int], FrameRunner] = OrderedDict()
        self._rays: OrderedDict[tuple[Intrinsics, int], tuple[torch.Tensor, torch.Tensor]] = \
            OrderedDict()
        self._luts: dict[str, torch.Tensor] = {}

    @property
    def device_outputs(self) -> bool:
        """Whether :meth:`infer_with_outputs` builds points / colours on the device (the fast
        path); the pipeline then lets the backend do them."""
        return self.fast_path

    def describe(self) -> dict[str, str]:
        """Backend, device, precision, model, input size and execution mode."""
        height, width = self.config.input_hw
        mode = "eager"
        if self.fast_path:
            mode = "static buffers" + (" + CUDA graphs" if self.cuda_graphs else "")
        if self.compiled:
            mode += " + torch.compile"
        return {"backend": self.name, "device": str(self.device), "precision": self.precision,
                "model": self.config.name, "method": self.config.method,
                "backbone": self.config.backbone.name, "input_size": f"{width}x{height}",
                "mode": mode}

    def preprocess(self, image_rgb: np.ndarray) -> torch.Tensor:
        """uint8 HxWx3 RGB -> normalised 1x3xhxw tensor on the device, in the model dtype."""
        if self.device.type == "cpu":
            return torch.from_numpy(preprocess(image_rgb, self.config)).to(self.dtype)
        check_image(image_rgb)
        x = torch.from_numpy(image_rgb).to(self.device, non_blocking=True)
        return torch_ops.preprocess_uint8(x, self.config.input_hw, self._mean, self._inv_std,
                                          self.dtype)

    @torch.inference_mode()
    def run(self, batch: torch.Tensor, f_px: Optional[float] = None) -> torch.Tensor:
        """Model-resolution metric depth (1, 1, h, w) float32 on the device; f_px is the
        focal length at the model input size (used by camera-aware models)."""
        # a tensor, not a float: torch.compile would specialise on every focal length
        focal = None if f_px is None else torch.tensor(f_px, device=self.device)
        return self._forward(batch, focal).float()

    @torch.inference_mode()
    def postprocess(self, depth: torch.Tensor, width: int, height: int) -> np.ndarray:
        """Depth at the image resolution as a float32 numpy array."""
        if self.device.type == "cpu":
            return resize_back(depth[0, 0].numpy(), width, height)
        return torch_ops.resize_depth_back(depth, height, width).cpu().numpy()

    def _runner(self, height: int, width: int) -> FrameRunner:
        key = (height, width)
        runner = self._runners.get(key)
        if runner is None:
            runner = FrameRunner(self, height, width, self.cuda_graphs)
            self._runners[key] = runner
            while len(self._runners) > _MAX_RUNNERS:
                self._runners.popitem(last=False)
        self._runners.move_to_end(key)
        return runner

    def _focal(self, intrinsics: Optional[Intrinsics]) -> float:
        """The focal length at the model input; the canonical one (scale 1) when unknown."""
        f_px = model_focal_px(intrinsics, self.config)
        return self.config.canonical_focal_px if f_px is None else f_px

    def infer(self, image_rgb: np.ndarray,
              intrinsics: Optional[Intrinsics] = None) -> np.ndarray:
        """Depth (H, W) float32 metres for an (H, W, 3) uint8 RGB image."""
        if self.fast_path:
            return self.infer_with_outputs(image_rgb, intrinsics).depth_m
        batch = self.preprocess(image_rgb)
        depth = self.run(batch, model_focal_px(intrinsics, self.config))
        return self.postprocess(depth, image_rgb.shape[1], image_rgb.shape[0])

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
    def infer_with_outputs(self, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics] = None,
                           points: bool = False, stride: int = 1, max_range: float = math.inf,
                           rgb: bool = False,
                           colored: Optional[tuple[float, float, str]] = None) -> DeviceOutputs:
        """Depth, and on request the point-cloud body and colorized depth, built on the device.

        ``intrinsics`` must describe ``image_rgb`` (points need them valid); ``colored`` is
        (display min m, display max m, colormap).  Same results as the numpy pipeline.
        """
        check_image(image_rgb)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        height, width = image_rgb.shape[:2]
        runner = self._runner(height, width)
        depth = runner.run(image_rgb, self._focal(intrinsics))
        host_depth = runner.start_download("depth", depth)
        host_cloud = host_colored = None
        if points:
            if intrinsics is None or not intrinsics.is_valid():
                raise ValueError("points need valid intrinsics")
            if (intrinsics.width, intrinsics.height) != (width, height):
                raise ValueError(f"intrinsics describe a {intrinsics.width}x{intrinsics.height} "
                                 f"image but the image is {width}x{height}")
            body = torch_ops.cloud_body_torch(depth, self._rays_for(intrinsics, int(stride)),
                                              int(stride), max_range,
                                              runner.dev_in if rgb else None)
            host_cloud = runner.start_download("cloud", body)
        if colored is not None:
            lo, hi, colormap = colored
            bgr = torch_ops.colorize_torch(depth, lo, hi, self._lut(colormap))
            host_colored = runner.start_download("colored", bgr)
        runner.sync()
        # copies: the pinned / graph-owned buffers are reused by the next frame
        return DeviceOutputs(
            depth_m=host_depth.numpy().copy(),
            cloud_body=None if host_cloud is None else host_cloud.numpy().copy(),
            colored_bgr=None if host_colored is None else host_colored.numpy().copy())

    def close(self) -> None:
        """Drop the model, graphs and buffers and release cached device memory."""
        self._runners.clear()
        self._rays.clear()
        self._luts.clear()
        self.model = None
        self._forward = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
