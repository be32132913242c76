"""What one frame asks of a backend and what it gets back: the single frame contract.

Every backend answers :meth:`DepthBackend.infer_frame` with a :class:`FrameOutputs`; the
point cloud has exactly one representation, the PointCloud2 body (an (H', W', 3 | 4) float32
array of x, y, z [, packed 0x00RRGGBB rgb]), which ``points_to_pointcloud2`` and the bag writer
take as is.  The host (numpy) way of building those outputs from a depth image lives here, so
the torch-eager, onnxruntime and TensorRT backends share it; the torch device path builds the
same arrays on the GPU.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import cv2
import numpy as np

from .colorize import colorize_depth
from .geometry import Intrinsics, point_planes
from .image_codec import planes_body


@dataclass(frozen=True)
class FrameRequest:
    """The optional outputs one frame should produce, and how."""

    points: bool = False  # needs intrinsics describing the image
    points_rgb: bool = False  # xyzrgb instead of xyz
    point_stride: int = 1
    max_range_m: float = math.inf
    colored: bool = False
    display_range_m: tuple[float, float] = (0.0, 10.0)
    colormap: str = "turbo"

    def __post_init__(self) -> None:
        if int(self.point_stride) < 1:
            raise ValueError(f"point_stride must be >= 1, got {self.point_stride}")


@dataclass
class FrameContext:
    """What post-model steps may read besides the outputs: the frame's input and stamp."""

    image_rgb: np.ndarray
    intrinsics: Optional[Intrinsics] = None  # at the image's resolution (None: unknown)
    request: "FrameRequest" = None  # type: ignore[assignment]
    stamp_s: Optional[float] = None  # the image's header stamp (seconds)
    sparse_depth_m: Optional[np.ndarray] = None  # metric measurements, NaN / 0 = none
    sparse_problem: str = ""  # why sparse_depth_m is None when one was expected


@dataclass
class FrameOutputs:
    """Everything one frame produced, plus per-stage timings in milliseconds."""

    depth_m: np.ndarray  # (H, W) float32 metres at the input image's resolution
    intrinsics: Optional[Intrinsics] = None  # at the depth image's resolution
    cloud: Optional[np.ndarray] = None  # (H', W', 3 | 4) float32 PointCloud2 body
    colored_bgr: Optional[np.ndarray] = None  # (H, W, 3) uint8
    confidence: Optional[np.ndarray] = None  # (H, W) float32 in [0, 1], NaN = invalid depth
    model_confidence: Optional[np.ndarray] = None  # the model's own term, when it has one
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def points_xyz(self) -> Optional[np.ndarray]:
        """The cloud's x, y, z channels (a view), or None without a cloud."""
        return None if self.cloud is None else self.cloud[..., :3]


def multiply_xyz(cloud: np.ndarray, factor: "np.ndarray | float") -> None:
    """cloud[..., :3] *= factor in place (a scalar, or an (H', W') plane: NaN drops a point),
    one channel at a time: numpy is several times faster on three 1-channel strided loops
    than on one 3-of-4-channel loop.  The packed rgb channel is never touched."""
    for channel in range(3):
        plane = cloud[..., channel]
        np.multiply(plane, factor, out=plane)


_NAN_BITS = float(0x7FC00000)  # a quiet NaN's float32 bits: OR-ed into any float, gives NaN
DENSE_DROP_SHARE = 0.25  # above this share of points, one masked pass beats index writes


def drop_points(cloud: np.ndarray, mask: np.ndarray) -> None:
    """Set x, y, z to NaN in place where ``mask`` (the cloud's (H', W')) is True; the packed
    rgb channel is left alone.  Few points (edges: under 1% typically): index writes into the
    flat body, one 1-D scatter per channel.  Many (a low-confidence region, a min_confidence
    that drops everything): one masked OpenCV pass OR-ing NaN's bits into x, y, z (the NaN
    keeps the coordinate's sign bit; isnan / isfinite cannot tell) (640x480,
    coherent regions: 0.2-0.3 ms at any share, against 0.3-0.7 ms for index writes above
    25%)."""
    if not cloud.flags.c_contiguous:  # (the pipeline's bodies are): no view to write through
        multiply_xyz(cloud, np.where(mask, np.float32(np.nan), np.float32(1)))
        return
    count = int(np.count_nonzero(mask))
    if not count:
        return
    if count > DENSE_DROP_SHARE * mask.size and cloud.ndim == 3 and cloud.shape[-1] in (3, 4):
        bits = cloud.view(np.int32)
        nan_xyz = (_NAN_BITS, _NAN_BITS, _NAN_BITS, 0.0)  # rgb (4th channel) OR 0: unchanged
        cv2.bitwise_or(bits, nan_xyz, dst=bits,
                       mask=np.ascontiguousarray(mask, dtype=bool).view(np.uint8))
        return
    index = np.flatnonzero(mask)
    flat = cloud.reshape(-1, cloud.shape[-1])  # a view: the body is contiguous
    for channel in range(3):  # one 1-D scatter per channel: 2-3x faster than [index, :3]
        flat[:, channel][index] = np.nan


def host_outputs(depth_m: np.ndarray, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics],
                 request: FrameRequest, timings_ms: Optional[dict[str, float]] = None
                 ) -> FrameOutputs:
    """Points and colours for a depth image on the host (numpy), as the request asks.

    ``intrinsics`` must describe ``depth_m`` (None: no points).  Stages are timed into
    ``timings_ms`` ('points', 'colorize').
    """
    out = FrameOutputs(depth_m=depth_m, intrinsics=intrinsics,
                       timings_ms={} if timings_ms is None else timings_ms)
    t0 = time.perf_counter()
    if request.points and intrinsics is not None:
        stride = int(request.point_stride)
        x, y, z = point_planes(depth_m, intrinsics, stride, request.max_range_m)
        out.cloud = planes_body(x, y, z, image_rgb[::stride, ::stride] if request.points_rgb
                                else None)
        t1 = time.perf_counter()
        out.timings_ms["points"] = (t1 - t0) * 1e3
        t0 = t1
    if request.colored:
        lo, hi = request.display_range_m
        out.colored_bgr = colorize_depth(depth_m, lo, hi, request.colormap)
        out.timings_ms["colorize"] = (time.perf_counter() - t0) * 1e3
    return out


class MessageKit(Protocol):
    """Builds one transport's messages (rclpy types for the node, rosbags types for bags)."""

    def image(self, array: np.ndarray, encoding: str, header: Any) -> Any:
        """A sensor_msgs/Image of ``array`` in ``encoding``."""

    def camera_info(self, intrinsics: Intrinsics, header: Any, template: Any) -> Any:
        """A sensor_msgs/CameraInfo for ``intrinsics`` (D, R, P's translation from template)."""

    def pointcloud2(self, body: np.ndarray, header: Any) -> Any:
        """A sensor_msgs/PointCloud2 of a cloud body."""


# output key -> topic name relative to the node (or to the camera namespace in a bag)
OUTPUT_TOPICS = {"depth": "depth", "info": "depth/camera_info", "points": "points",
                 "colored": "depth/colored", "confidence": "depth/confidence"}


def frame_messages(outputs: FrameOutputs, header: Any, info_template: Any,
                   kit: MessageKit) -> dict[str, Any]:
    """The messages of one frame, keyed like :data:`OUTPUT_TOPICS`: the one output fan-out
    the node, the bag command and the benchmarks share.  Every message carries ``header``
    (the input image's stamp and frame_id, REP 118: depth along optical z in metres)."""
    messages = {"depth": kit.image(outputs.depth_m, "32FC1", header)}
    if outputs.intrinsics is not None:
        messages["info"] = kit.camera_info(outputs.intrinsics, header, info_template)
    if outputs.cloud is not None:
        messages["points"] = kit.pointcloud2(outputs.cloud, header)
    if outputs.colored_bgr is not None:
        messages["colored"] = kit.image(outputs.colored_bgr, "bgr8", header)
    if outputs.confidence is not None:
        messages["confidence"] = kit.image(outputs.confidence, "32FC1", header)
    return messages
