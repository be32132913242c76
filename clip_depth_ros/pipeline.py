"""The frame pipeline, free of ROS: image -> depth -> (points, colored depth), timed per stage.

The node, the bag command and the benchmarks are thin adapters around this: they convert
messages, keep only the latest frame in a :class:`LatestFrameSlot`, and call
:meth:`DepthPipeline.process` (the node from a worker thread).  ``process`` is linear: scale the
camera to the image, ask the backend for the frame (``infer_frame``: one method, whatever the
backend), then run the post-model steps in order.  Post-model steps (scale anchoring, temporal
filtering, confidence masks) go in ``DepthPipeline.steps`` and nowhere else.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Generic, Optional, Protocol, TypeVar

import numpy as np

from .backends.base import DepthBackend
from .colorize import DisplayRange, colorize_depth
from .frame import FrameContext, FrameOutputs, FrameRequest
from .geometry import Intrinsics

T = TypeVar("T")


@dataclass
class PipelineSettings:
    """Runtime-changeable output settings."""

    point_stride: int = 1
    max_range_m: float = 0.0  # 0 = no limit beyond the model's max depth
    colormap: str = "turbo"
    display_min_m: float = 0.0  # 0 = this end from the data (robust, smoothed over frames)
    display_max_m: float = 0.0


class PostModelStep(Protocol):
    """One step after the model (scale anchoring, confidence, point filters): it may change
    the outputs in place.  A step that changes depth must change the cloud (and the colours)
    to match."""

    changes_depth: bool  # whether it rewrites depth (then colours are made after it)

    @property
    def active(self) -> bool:
        """Whether the step has anything to do with its current settings (else skipped: a
        step that is off costs nothing)."""

    def __call__(self, outputs: FrameOutputs, ctx: FrameContext) -> FrameOutputs:
        """The frame's outputs after this step."""


class DepthPipeline:
    """Runs a backend on one frame, then the post-model steps, in one straight line."""

    def __init__(self, backend: DepthBackend, settings: Optional[PipelineSettings] = None,
                 steps: Optional[list[PostModelStep]] = None):
        self.backend = backend
        self.settings = settings or PipelineSettings()
        self.steps: list[PostModelStep] = list(steps or [])
        self._display: Optional[DisplayRange] = None
        self._display_ends: Optional[tuple[float, float]] = None
        self._data_range: Optional[tuple[float, float]] = None  # the last one from the data

    def _display_range_state(self) -> DisplayRange:
        """The colour range of the stream for the current settings (a new one, forgetting
        the smoothed data, when the fixed ends change)."""
        ends = (self.settings.display_min_m, self.settings.display_max_m)
        if self._display is None or ends != self._display_ends:
            lo, hi = ends
            if lo and hi and lo >= hi:  # refused at the node's parameters; here: the data
                lo = hi = 0.0
            self._display = DisplayRange(lo or None, hi or None)
            self._display_ends, self._data_range = ends, None
        return self._display

    def colours_from_data(self) -> bool:
        """Whether an end of the colour range comes from the data (display_min/max 0)."""
        display = self._display_range_state()
        return display.fixed_min is None or display.fixed_max is None

    def display_range(self) -> tuple[float, float]:
        """The depth range the colours span: the one place that decides it.  Fixed ends from
        the settings; an end at 0 comes from the data (2nd-98th percentile of the depth
        published, smoothed over frames so colours do not flicker), the model's range until a
        frame was coloured."""
        display = self._display_range_state()
        if not self.colours_from_data():
            return display.fixed_min, display.fixed_max
        if self._data_range is not None:
            return self._data_range
        return self.backend.config.min_depth, self.backend.config.max_depth

    def request(self, want_points: bool = False, want_rgb: bool = False,
                want_colored: bool = False) -> FrameRequest:
        """The backend request for the current settings."""
        max_range = self.settings.max_range_m if self.settings.max_range_m > 0 else math.inf
        return FrameRequest(points=want_points, points_rgb=want_points and want_rgb,
                            point_stride=max(1, int(self.settings.point_stride)),
                            max_range_m=max_range, colored=want_colored,
                            display_range_m=self.display_range(),
                            colormap=self.settings.colormap)

    def process(self, image_rgb: np.ndarray, intrinsics: Optional[Intrinsics] = None,
                want_points: bool = False, want_rgb: bool = False,
                want_colored: bool = False, stamp_s: Optional[float] = None,
                sparse_depth_m: Optional[np.ndarray] = None,
                sparse_problem: str = "") -> FrameOutputs:
        """Depth for one RGB frame; points only with valid intrinsics, extras only if wanted.

        stamp_s (the image's stamp) and sparse_depth_m (metric measurements) are for the
        post-model steps (the temporal scale filter, the sparse-depth anchor)."""
        height, width = image_rgb.shape[:2]
        if intrinsics is not None:
            intrinsics = intrinsics.scaled_to(width, height) if intrinsics.is_valid() else None
        steps = [step for step in self.steps if step.active]
        rewrites_depth = any(step.changes_depth for step in steps)
        # colours show metres: made after any step that rewrites depth, and from the final
        # depth when the range comes from the data; else by the backend (fixed range)
        colour_after = want_colored and (self.colours_from_data() or rewrites_depth)
        request = self.request(want_points and intrinsics is not None, want_rgb,
                               want_colored and not colour_after)
        model_request = request
        if math.isfinite(request.max_range_m) and rewrites_depth:
            # the range applies to the final depth: a point the model put beyond it may come
            # back inside once anchored, so the model's cloud is unbounded and the step that
            # rewrites depth applies the range (ScaleAnchor)
            model_request = replace(request, max_range_m=math.inf)
        outputs = self.backend.infer_frame(image_rgb, intrinsics, model_request)
        ctx = FrameContext(image_rgb, intrinsics, request, stamp_s, sparse_depth_m,
                           sparse_problem)
        for step in steps:
            t0 = time.perf_counter()
            outputs = step(outputs, ctx)
            outputs.timings_ms[type(step).__name__] = (time.perf_counter() - t0) * 1e3
        if colour_after:
            t0 = time.perf_counter()
            if self.colours_from_data():
                self._data_range = self._display_range_state().update(outputs.depth_m)
            lo, hi = self.display_range()
            outputs.colored_bgr = colorize_depth(outputs.depth_m, lo, hi, self.settings.colormap)
            outputs.timings_ms["colorize"] = (time.perf_counter() - t0) * 1e3
        return outputs


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
