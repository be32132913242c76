"""The depth node's health as a plain record: what /diagnostics reports, kept apart from ROS.

The node updates one :class:`NodeHealth` as its lifecycle changes and frames arrive, queue,
leave or fail; the diagnostics publisher (clip_depth_ros/ros/diagnostics.py) reads
:meth:`NodeHealth.snapshot` and :meth:`NodeHealth.summary`, never the node's own fields.
Pure Python (no rclpy), safe to update from the subscription callbacks and the worker thread.

Levels (:meth:`NodeHealth.summary`): OK only while depth flows (a frame published within
``input_timeout_s``); WARN while inactive, with no input for that long, or while depth flows
with a problem (camera_info missing, some frames failing); ERROR while unconfigured or when
every frame since the last published one failed.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from .pipeline import RollingStats

# camera_info states: none received yet, paired, missing for a frame, invalid for a frame
CAMERA_INFO_STATES = ("none received", "ok", "missing", "invalid")
LIFECYCLE_STATES = ("unconfigured", "inactive", "active", "finalized")
OK, WARN, ERROR = "ok", "warn", "error"


@dataclass
class NodeHealth:
    """Counters, input/output rates and latency, camera_info state, last problem, backend."""

    frames_received: int = 0  # queued for the worker
    frames_dropped: int = 0  # replaced in the one-slot queue before the worker took them
    frames_processed: int = 0  # published
    frames_failed: int = 0  # rejected or failed (the reasons are in ``counts``)
    counts: Counter = field(default_factory=Counter)  # rejected_*, errors, lost_in_transport..
    in_stats: RollingStats = field(default_factory=RollingStats)
    out_stats: RollingStats = field(default_factory=RollingStats)
    camera_info_state: str = "none received"
    last_error: str = ""
    backend: dict[str, Any] = field(default_factory=dict)  # the loaded backend's describe()
    trust: dict[str, Any] = field(default_factory=dict)  # scale anchor and point filters
    lifecycle: str = "unconfigured"
    input_timeout_s: float = 3.0  # no image (or no depth) for longer: not OK
    input_topic: str = ""  # resolved names, for the messages
    camera_info_topic: str = ""
    _active_since: Optional[float] = None
    _last_input: Optional[float] = None
    _last_output: Optional[float] = None
    _last_problem: Optional[float] = None
    _failed_since_output: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set_lifecycle(self, state: str, now: Optional[float] = None) -> None:
        """The node's lifecycle state (one of :data:`LIFECYCLE_STATES`); activation restarts
        the input timeout."""
        if state not in LIFECYCLE_STATES:
            raise ValueError(f"unknown lifecycle state {state!r}")
        with self._lock:
            if state == "active" and self.lifecycle != "active":
                self._active_since = time.monotonic() if now is None else now
            self.lifecycle = state

    def image_arrived(self, now: Optional[float] = None) -> None:
        """An image reached the subscription callback (counted in the input rate)."""
        now = time.monotonic() if now is None else now
        self.in_stats.add(now=now)
        self._last_input = now

    def frame_queued(self, replaced: bool) -> None:
        """A frame went into the one-slot queue; ``replaced``: it pushed out a waiting one."""
        with self._lock:
            self.frames_received += 1
            self.frames_dropped += int(replaced)

    def frame_published(self, latency_ms: float, now: Optional[float] = None) -> None:
        """A frame's outputs went out ``latency_ms`` after its image arrived."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.frames_processed += 1
            self._last_output, self._failed_since_output = now, 0
        self.out_stats.add(latency_ms, now=now)

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to an event counter (qos_incompatible, lost_in_transport, ...)."""
        with self._lock:
            self.counts[key] += n

    def problem(self, key: str, detail: str, now: Optional[float] = None) -> None:
        """A frame that failed (``rejected_<reason>`` or ``errors``): counted, remembered."""
        with self._lock:
            self.counts[key] += 1
            self.frames_failed += 1
            self._failed_since_output += 1
            self.last_error = detail
            self._last_problem = time.monotonic() if now is None else now

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
                "frames_failed": self.frames_failed,
                "camera_info": self.camera_info_state,
                "lifecycle": self.lifecycle,
                "input_topic": self.input_topic or "-",
                "camera_info_topic": self.camera_info_topic or "-",
            }
            values.update(sorted(self.counts.items()))
            values.update(self.trust)
        values.update(self.backend)
        return values

    def summary(self, now: Optional[float] = None) -> tuple[str, str]:
        """(level, message): OK, WARN or ERROR (see the module docstring) and why."""
        now = time.monotonic() if now is None else now
        with self._lock:
            lifecycle, last_error = self.lifecycle, self.last_error
            last_in, last_out, last_problem = (self._last_input, self._last_output,
                                               self._last_problem)
            failing, since = self._failed_since_output, self._active_since
        timeout = self.input_timeout_s
        topic = self.input_topic or "the image topic"
        if lifecycle in ("unconfigured", "finalized"):
            why = last_error or "waiting to be configured (lifecycle)"
            return ERROR, f"{lifecycle}: no depth; {why}"
        if lifecycle == "inactive":
            return WARN, "inactive: model loaded, no topics (activate the node)"
        recent = lambda t: t is not None and now - t <= timeout  # noqa: E731
        if recent(last_out):
            notes = []
            if self.camera_info_state in ("missing", "invalid"):
                notes.append(f"camera_info {self.camera_info_state} on "
                             f"{self.camera_info_topic or 'camera_info'}: depth only, no points")
            if recent(last_problem):
                notes.append(f"some frames fail, last: {last_error}")
            return (WARN, "depth ok; " + "; ".join(notes)) if notes else (OK, "depth ok")
        if not recent(last_in):
            if last_in is None:
                waited = now - since if since is not None else 0.0
                return WARN, f"no image received on {topic} ({waited:.0f} s since activation)"
            return WARN, f"no input for {now - last_in:.0f} s on {topic}"
        if failing:
            return ERROR, (f"no depth: every frame for {timeout:g} s failed ({failing} since "
                           f"the last good one), last: {last_error}")
        return WARN, f"images arrive on {topic}, no depth published yet"
