"""The frame pipeline, free of ROS: image -> depth -> (points, colored depth), timed per stage.

The node is a thin adapter around this: it converts messages, keeps only the latest frame in a
:class:`LatestFrameSlot`, and calls :meth:`DepthPipeline.process` from a worker thread.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Optional, TypeVar

import numpy as np

from .backends.base import DepthBackend
from .colorize import colorize_depth
from .geometry import Intrinsics, depth_to_points

T = TypeVar("T")


@dataclass
class PipelineSettings:
    """Runtime-changeable output settings."""

    point_stride: int = 1
    max_range_m: float = 0.0  # 0 = no limit beyond the model's max depth
    colormap: str = "turbo"
    display_min_m: float = 0.0  # 0/0 = the model's depth range
    display_max_m: float = 0.0


@dataclass
class FrameResult:
    """Everything one frame produced, plus per-stage timings in milliseconds."""

    depth_m: np.ndarray
    intrinsics: Optional[Intrinsics]  # at the depth image's resolution
    points_xyz: Optional[np.ndarray] = None
    points_rgb: Optional[np.ndarray] = None
    # (H', W', 3 | 4) float32 PointCloud2 body (x, y, z [, packed rgb]) when the backend built
    # the cloud on the device; points_xyz is then a view of its first three channels
    cloud_body: Optional[np.ndarray] = None
    colored_bgr: Optional[np.ndarray] = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def cloud_parts(self) -> Optional[tuple[np.ndarray, Optional[np.ndarray]]]:
        """(points, rgb) for ``points_to_pointcloud2`` / ``cloud_layout``; None without points."""
        if self.cloud_body is not None:
            return self.cloud_body, None
        if self.points_xyz is not None:
            return self.points_xyz, self.points_rgb
        return None


class DepthPipeline:
    """Runs a backend on one frame and derives the optional outputs."""

    def __init__(self, backend: DepthBackend, settings: Optional[PipelineSettings] = None):
        self.backend = backend
        self.settings = settings or PipelineSettings()

    def display_range(self) -> tuple[float, float]:
        """Depth range mapped onto the colormap."""
        lo, hi = self.settings.display_min_m, self.settings.display_max_m
        if hi > lo >= 0 and hi > 0:
            return lo, hi
        return self.backend.config.min_depth, self.backend.config.max_depth

    def process(self, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics] = None,
                want_points: bool = False, want_rgb: bool = False,
                want_colored: bool = False) -> FrameResult:
        """Depth for one RGB frame; points only with valid intrinsics, extras only if wanted."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        height, width = image_rgb.shape[:2]
        if intrinsics is not None:
            intrinsics = intrinsics.scaled_to(width, height) if intrinsics.is_valid() else None
        if getattr(self.backend, "device_outputs", False):
            return self._process_on_device(image_rgb, intrinsics, want_points, want_rgb,
                                           want_colored, t0)
        depth = self.backend.infer(image_rgb, intrinsics)
        t1 = time.perf_counter()
        timings["inference"] = (t1 - t0) * 1e3
        result = FrameResult(depth_m=depth, intrinsics=intrinsics, timings_ms=timings)
        stride = max(1, int(self.settings.point_stride))
        if want_points and intrinsics is not None:
            max_range = self.settings.max_range_m if self.settings.max_range_m > 0 else math.inf
            result.points_xyz = depth_to_points(depth, intrinsics, stride, max_range)
            if want_rgb:
                result.points_rgb = np.ascontiguousarray(image_rgb[::stride, ::stride])
            t2 = time.perf_counter()
            timings["points"] = (t2 - t1) * 1e3
            t1 = t2
        if want_colored:
            lo, hi = self.display_range()
            result.colored_bgr = colorize_depth(depth, lo, hi, self.settings.colormap)
            timings["colorize"] = (time.perf_counter() - t1) * 1e3
        return result

    def _process_on_device(self, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics],
                           want_points: bool, want_rgb: bool, want_colored: bool,
                           t0: float) -> FrameResult:
        """The fast path: the backend makes depth, cloud body and colours in one device pass
        (one timing, 'inference', covers all of it: the device work is asynchronous)."""
        stride = max(1, int(self.settings.point_stride))
        max_range = self.settings.max_range_m if self.settings.max_range_m > 0 else math.inf
        colored = (*self.display_range(), self.settings.colormap) if want_colored else None
        out = self.backend.infer_with_outputs(
            image_rgb, intrinsics, points=want_points and intrinsics is not None, stride=stride,
            max_range=max_range, rgb=want_rgb, colored=colored)
        result = FrameResult(depth_m=out.depth_m, intrinsics=intrinsics,
                             colored_bgr=out.colored_bgr, cloud_body=out.cloud_body)
        if out.cloud_body is not None:
            result.points_xyz = out.cloud_body[..., :3]
        result.timings_ms["inference"] = (time.perf_counter() - t0) * 1e3
        return result


class LatestFrameSlot(Generic[T]):
    """A one-slot queue: a new item replaces the waiting one (counted as dropped)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Offer an item; True when it replaced an unprocessed one."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self.received += 1
            self.dropped += int(replaced)
            self._cond.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """The latest item, waiting up to ``timeout`` s; None on timeout or when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake any waiting taker; later takes return what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class RollingStats:
    """Event rate and latency percentiles over a sliding time window (for diagnostics)."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def add(self, latency_ms: float = 0.0, now: Optional[float] = None) -> None:
        """Record one event (with its latency) at time ``now`` (monotonic seconds)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._events.append((now, latency_ms))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0][0] > self.window_s:
            self._events.popleft()

    def snapshot(self, now: Optional[float] = None) -> dict[str, float]:
        """rate_hz, latency p50/p95 (ms) and count over the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            events = list(self._events)
        if not events:
            return {"rate_hz": 0.0, "latency_p50_ms": math.nan, "latency_p95_ms": math.nan,
                    "count": 0}
        lat = np.array([e[1] for e in events])
        span = events[-1][0] - events[0][0]
        rate = (len(events) - 1) / span if len(events) > 1 and span > 0 else 0.0
        return {"rate_hz": rate, "latency_p50_ms": float(np.percentile(lat, 50)),
                "latency_p95_ms": float(np.percentile(lat, 95)), "count": len(events)}
