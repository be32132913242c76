"""The depth node's health as a plain record: what /diagnostics reports, kept apart from ROS.

The node updates one :class:`NodeHealth` as frames arrive, queue, leave or fail; the
diagnostics publisher (clip_depth_ros/ros/diagnostics.py) reads :meth:`NodeHealth.snapshot`
and :meth:`NodeHealth.summary`, never the node's own fields.  Pure Python (no rclpy), safe to
update from the subscription callbacks and the worker thread at once.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from .pipeline import RollingStats

# camera_info states: none received yet, paired, missing for a frame, invalid for a frame
CAMERA_INFO_STATES = ("none received", "ok", "missing", "invalid")


@dataclass
class NodeHealth:
    """Counters, input/output rates and latency, camera_info state, last problem, backend."""

    frames_received: int = 0  # queued for the worker
    frames_dropped: int = 0  # replaced in the one-slot queue before the worker took them
    frames_processed: int = 0  # published
    counts: Counter = field(default_factory=Counter)  # rejected_*, errors, lost_in_transport..
    in_stats: RollingStats = field(default_factory=RollingStats)
    out_stats: RollingStats = field(default_factory=RollingStats)
    camera_info_state: str = "none received"
    last_error: str = ""
    backend: dict[str, Any] = field(default_factory=dict)  # the loaded backend's describe()
    trust: dict[str, Any] = field(default_factory=dict)  # scale anchor and point filters
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def image_arrived(self, now: Optional[float] = None) -> None:
        """An image reached the subscription callback (counted in the input rate)."""
        self.in_stats.add(now=now)

    def frame_queued(self, replaced: bool) -> None:
        """A frame went into the one-slot queue; ``replaced``: it pushed out a waiting one."""
        with self._lock:
            self.frames_received += 1
            self.frames_dropped += int(replaced)

    def frame_published(self, latency_ms: float, now: Optional[float] = None) -> None:
        """A frame's outputs went out ``latency_ms`` after its image arrived."""
        with self._lock:
            self.frames_processed += 1
        self.out_stats.add(latency_ms, now=now)

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to an event counter (qos_incompatible, lost_in_transport, ...)."""
        with self._lock:
            self.counts[key] += n

    def problem(self, key: str, detail: str) -> None:
        """A problem with a frame (``rejected_<reason>`` or ``errors``): counted, remembered."""
        with self._lock:
            self.counts[key] += 1
            self.last_error = detail

    def set_camera_info(self, state: str) -> None:
        """The camera_info state of the latest frame (one of :data:`CAMERA_INFO_STATES`)."""
        if state not in CAMERA_INFO_STATES:
            raise ValueError(f"unknown camera_info state {state!r}")
        self.camera_info_state = state

    def snapshot(self, now: Optional[float] = None) -> dict[str, Any]:
        """Every reported value, in the published order: rates and latency, frame counts,
        camera_info state, event counters (sorted), then the backend's description."""
        inputs, outputs = self.in_stats.snapshot(now), self.out_stats.snapshot(now)
        with self._lock:
            values: dict[str, Any] = {
                "input_rate_hz": inputs["rate_hz"],
                "output_rate_hz": outputs["rate_hz"],
                "latency_p50_ms": outputs["latency_p50_ms"],
                "latency_p95_ms": outputs["latency_p95_ms"],
                "frames_received": self.frames_received,
                "frames_dropped": self.frames_dropped,
                "frames_processed": self.frames_processed,
                "camera_info": self.camera_info_state,
            }
            values.update(sorted(self.counts.items()))
            values.update(self.trust)
        values.update(self.backend)
        return values

    def summary(self) -> tuple[bool, str]:
        """(warn, message): a warning while camera_info is missing or invalid, or once any
        frame was rejected or failed (the message then names the last problem)."""
        warn, message = False, "ok"
        if self.camera_info_state in ("missing", "invalid"):
            warn, message = True, f"camera_info {self.camera_info_state}: depth only"
        with self._lock:
            problems = any(k.startswith("rejected_") or k == "errors" for k in self.counts)
            last_error = self.last_error
        if problems:
            warn, message = True, f"{message}; last problem: {last_error}"
        return warn, message
