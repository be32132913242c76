"""The live graph under benchmark: the depth node as its own process (the runtime's one
launcher, clip_depth_ros.ros.launcher.NodeProcess), a player, a recorder.

Shared by clip_depth_ros/benchmarks/live_graph.py (fixed rate, peak search), benchmarks/soak.py and
test/test_soak_short.py.  The player publishes pre-rendered synthetic frames (rgb8 image +
camera_info, rendered once so rendering stays outside the measurement) at a fixed rate, each
under a unique stamp; the recorder subscribes reliably to depth (and points) and matches
outputs to inputs by stamp; the node's own /diagnostics counters are read before and after.

Importing this module confines DDS to this machine (config/fastdds_shm.xml, shared memory
only, a private ROS_DOMAIN_ID) unless that is already done, and only then imports rclpy.
"""
from __future__ import annotations

import os
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional


import numpy as np  # noqa: E402

from ..ros.launcher import (DEFAULT_PARAMS, NodeProcess,  # noqa: E402  (no rclpy)
                                         confine_dds, dds_confined)

if not dds_confined():
    confine_dds()  # before rclpy is imported; pytest's conftest has already confined DDS

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ..geometry import Intrinsics  # noqa: E402
from ..stamps import NS_PER_S, stamp_from_ns, stamp_ns  # noqa: E402
from ..ros.conversions import intrinsics_to_camera_info, numpy_to_image  # noqa: E402
from ..synthetic import demo_trajectory, random_indoor_scene, render  # noqa: E402

FRAME_ID = "camera_optical_frame"
INPUT_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                       reliability=ReliabilityPolicy.RELIABLE)
OUTPUT_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.RELIABLE)
COUNTERS = ("frames_received", "frames_processed", "frames_dropped")


def cdr_stamp_ns(data: bytes) -> int:
    """header.stamp (ns) read straight from a serialized (CDR) message whose first field is a
    Header, without deserialising it (a 1.2 MB depth image stays bytes)."""
    order = "<" if data[1] & 1 else ">"  # encapsulation id: 0x0001 little, 0x0000 big endian
    sec, nanosec = struct.unpack_from(order + "iI", data, 4)
    return sec * NS_PER_S + nanosec


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies in ms (NaN when empty)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {k: float("nan") for k in ("p50", "p95", "p99", "max")}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(arr.max())}


def rate_of(times: list[float]) -> float:
    """Events per second between the first and the last time."""
    span = max(times) - min(times) if len(times) > 1 else 0.0
    return (len(times) - 1) / span if span > 0 else 0.0


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(v, 2) for v in os.getloadavg()]


def render_frames(width: int, height: int, count: int, seed: int = 7) -> tuple[list, Intrinsics]:
    """Distinct rgb8 frames of a synthetic room and their (Kinect-like) intrinsics."""
    intrinsics = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480).scaled_to(width, height)
    scene = random_indoor_scene(seed)
    return [render(scene, pose, intrinsics)[0] for pose in demo_trajectory(scene, count)], \
        intrinsics


class Player:
    """Publishes pre-built frames at a fixed rate, each under a new unique stamp."""

    def __init__(self, node: Any, frames: list[np.ndarray], intrinsics: Intrinsics):
        self.node = node
        self.images = [numpy_to_image(rgb, "rgb8") for rgb in frames]
        self.info = intrinsics_to_camera_info(intrinsics, Header(frame_id=FRAME_ID))
        for image in self.images:
            image.header.frame_id = FRAME_ID
        self.image_pub = node.create_publisher(Image, "image", INPUT_QOS)
        self.info_pub = node.create_publisher(CameraInfo, "camera_info", INPUT_QOS)
        self.sent: dict[int, float] = {}  # stamp ns -> monotonic publish time
        self._seq = 0
        self._last_ns = 0

    def publish_one(self) -> int:
        """Publish the next frame (camera_info first, same stamp); returns its stamp in ns."""
        now_ns = max(self.node.get_clock().now().nanoseconds, self._last_ns + 1)
        self._last_ns = now_ns
        stamp = stamp_from_ns(now_ns, Time)
        image = self.images[self._seq % len(self.images)]
        self._seq += 1
        image.header.stamp = self.info.header.stamp = stamp
        self.info_pub.publish(self.info)
        self.sent[now_ns] = time.monotonic()
        self.image_pub.publish(image)
        return now_ns

    def play(self, rate_hz: float, n_frames: int,
             on_frame: Optional[Callable[[int], None]] = None) -> dict[str, float]:
        """n_frames at rate_hz on an absolute schedule; a late frame shifts it (no bursts)."""
        period, lateness = 1.0 / rate_hz, []
        t_next = time.monotonic()
        for i in range(n_frames):
            while (wait := t_next - time.monotonic()) > 0:
                time.sleep(wait - 5e-4 if wait > 1e-3 else 0)  # sleep, then spin the last 0.5 ms
            late = time.monotonic() - t_next
            lateness.append(late * 1e3)
            self.publish_one()
            t_next = (t_next if late < period else time.monotonic()) + period
            if on_frame is not None:
                on_frame(i)
        return {"lateness_p99_ms": percentiles(lateness)["p99"],
                "late_frames": int(sum(v > 0.1 * period * 1e3 for v in lateness))}


class Recorder:
    """Arrival times of depth (and points) by stamp, plus the node's latest /diagnostics."""

    def __init__(self, node: Any, points: bool):
        self.lock = threading.Condition()  # notified on every arrival (closed loop waits)
        self.arrivals: dict[str, dict[int, float]] = {"depth": {}, "points": {}}
        self.messages = {"depth": 0, "points": 0}
        self.diagnostics: tuple[int, dict[str, str]] = (0, {})
        node.create_subscription(Image, "depth", self._on("depth"), OUTPUT_QOS, raw=True)
        if points:
            node.create_subscription(PointCloud2, "points", self._on("points"), OUTPUT_QOS,
                                     raw=True)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on(self, topic: str) -> Callable[[bytes], None]:
        def store(data: bytes) -> None:  # raw: no deserialisation of the 1.2 MB payload
            t = time.monotonic()
            with self.lock:
                self.arrivals[topic].setdefault(cdr_stamp_ns(data), t)  # first copy counts
                self.messages[topic] += 1
                self.lock.notify_all()
        return store

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": depth"):
                stamp = stamp_ns(msg.header.stamp)
                with self.lock:
                    self.diagnostics = (stamp, {kv.key: kv.value for kv in status.values})

    def reset(self) -> None:
        """Forget what arrived so far (between runs)."""
        with self.lock:
            self.arrivals = {"depth": {}, "points": {}}
            self.messages = {"depth": 0, "points": 0}

    def wait_for(self, key: int, topics: tuple[str, ...], deadline: float) -> bool:
        """Block (no polling: the node gets the CPU) until frame ``key`` arrived on every
        topic, or until ``deadline`` (monotonic s); True when it arrived."""
        with self.lock:
            return self.lock.wait_for(
                lambda: all(key in self.arrivals[t] for t in topics),
                timeout=max(0.0, deadline - time.monotonic()))

    def snapshot(self) -> tuple[dict[str, dict[int, float]], dict[str, int]]:
        """Copies of the arrivals and message counts."""
        with self.lock:
            return {k: dict(v) for k, v in self.arrivals.items()}, dict(self.messages)


def _counter(diag: dict[str, str], key: str) -> int:
    try:
        return int(float(diag.get(key, "0")))
    except ValueError:
        return 0


def summarise(rate_hz: float, sent: dict[int, float], arrivals: dict[str, dict[int, float]],
              messages: dict[str, int], before: dict[str, str],
              after: dict[str, str]) -> dict[str, Any]:
    """One run's figures: ours from stamps, the node's as /diagnostics deltas over the run."""
    depth, points = arrivals["depth"], arrivals["points"]
    matched = [k for k in sent if k in depth]
    delta = {k: _counter(after, k) - _counter(before, k) for k in COUNTERS}
    problems = {k for k in set(after) | set(before) if k.startswith("rejected_") or k == "errors"}
    published = len(sent)
    return {
        "rate_hz": rate_hz, "published": published,
        "publish_rate_hz": rate_of(list(sent.values())),
        "depth_received": len(matched),
        "drop_rate": 1.0 - len(matched) / published if published else float("nan"),
        "output_rate_hz": rate_of([depth[k] for k in matched]),
        "latency_ms": percentiles([(depth[k] - sent[k]) * 1e3 for k in matched]),
        "depth_messages": messages["depth"],
        "points_received": sum(k in points for k in sent),
        "points_latency_ms": percentiles([(points[k] - sent[k]) * 1e3 for k in sent
                                          if k in points]),
        "node": {**delta, "rejected": sum(_counter(after, k) - _counter(before, k)
                                          for k in problems),
                 "latency_p50_ms": float(after.get("latency_p50_ms", "nan")),
                 "latency_p95_ms": float(after.get("latency_p95_ms", "nan"))},
        # frames the node never saw (best-effort input) and outputs that never reached us
        "lost_before_node": published - delta["frames_received"],
        "processed_not_received": delta["frames_processed"] - messages["depth"],
    }


class LiveGraph:
    """The node process plus a player/recorder node in a private rclpy context."""

    def __init__(self, width: int = 640, height: int = 480, points: bool = False,
                 overrides: Optional[dict[str, str]] = None,
                 params_file: str = str(DEFAULT_PARAMS), distinct_frames: int = 30,
                 log_path: Optional[Path] = None,
                 startup_timeout: float = 180.0, node_root: Optional[Path] = None,
                 domain_id: Optional[int] = None, env: Optional[dict[str, str]] = None):
        self.width, self.height, self.points = width, height, points
        # a graph of its own (another node on the same topics, ab_loop.py); None: the
        # process's confined domain
        self.domain_id = domain_id
        self.env = dict(env or {})  # more environment for the node process
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.params_file, self.distinct_frames = params_file, distinct_frames
        self.node_root = node_root  # another checkout's node (None: this one)
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="depth_node_", suffix=".log")[1])
        self.startup_timeout = startup_timeout
        self.node_proc: Optional[NodeProcess] = None
        self.context = self.ros = self.executor = None
        self._spinner: Optional[threading.Thread] = None

    def __enter__(self) -> "LiveGraph":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _start(self) -> None:
        # the node loads its model while the frames render
        env = dict(self.env)
        if self.domain_id is not None:
            env["ROS_DOMAIN_ID"] = str(self.domain_id)
        self.node_proc = NodeProcess(self.params_file, self.overrides, self.log_path,
                                     package_root=self.node_root, env=env).start()
        frames, intrinsics = render_frames(self.width, self.height, self.distinct_frames)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        name = "live_graph_bench" + ("" if self.domain_id is None else f"_{self.domain_id}")
        self.ros = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.ros)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self.player = Player(self.ros, frames, intrinsics)
        self.recorder = Recorder(self.ros, self.points)
        deadline = time.monotonic() + self.startup_timeout
        while not (self.player.image_pub.get_subscription_count() > 0
                   and self.ros.count_publishers("depth") > 0):
            if (not self.node_proc.alive() or time.monotonic() > deadline
                    or "configure failed" in self.log_path.read_text()):
                raise RuntimeError(f"the depth node did not come up; log {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            time.sleep(0.1)
        time.sleep(0.5)  # let the node's publishers match our subscriptions

    def close(self) -> None:
        """Stop spinning, leave the graph and stop the node process."""
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
            # the spin thread must be out of its wait before the node's handles go (else it
            # can add a destroyed event handler to its wait set: InvalidHandle at exit)
            if self._spinner is not None:
                self._spinner.join(timeout=5.0)
        if self.ros is not None:
            self.ros.destroy_node()
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)
        if self.node_proc is not None:
            self.node_proc.stop()
        self.context = self.ros = self.executor = self.node_proc = None

    def fresh_diagnostics(self, timeout: float = 5.0) -> dict[str, str]:
        """The node's /diagnostics values from a message stamped after this call."""
        since = self.ros.get_clock().now().nanoseconds
        deadline = time.monotonic() + timeout
        while self.recorder.diagnostics[0] <= since and time.monotonic() < deadline:
            time.sleep(0.05)
        return dict(self.recorder.diagnostics[1])

    def drain(self, quiet_s: float = 2.0, limit_s: float = 60.0) -> None:
        """Wait until every frame's depth arrived, or none arrived for quiet_s."""
        t_end = time.monotonic() + limit_s
        while time.monotonic() < t_end:
            arrivals, _ = self.recorder.snapshot()
            depth = arrivals["depth"]
            if all(k in depth for k in self.player.sent):
                return
            last = max([*depth.values(), *self.player.sent.values()], default=0.0)
            if time.monotonic() - last > quiet_s:
                return
            time.sleep(0.05)

    def measure(self, rate_hz: float, n_frames: int,
                on_frame: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
        """Publish n_frames at rate_hz, drain, and summarise the run."""
        before = self.fresh_diagnostics()
        self.recorder.reset()
        self.player.sent.clear()
        play = self.player.play(rate_hz, n_frames, on_frame)
        self.drain()
        after = self.fresh_diagnostics()
        result = summarise(rate_hz, dict(self.player.sent), *self.recorder.snapshot(),
                           before, after)
        return {**result, **play, "node_alive": self.node_proc.alive()}

    def closed_loop(self, n_frames: int = 20, timeout: float = 10.0) -> dict[str, Any]:
        """One frame in flight: send a frame, wait until its depth (and its points, when
        subscribed) arrived, send the next.  frames/s over the whole run and the median
        round trip; a frame that never came back counts as lost after ``timeout``."""
        self.recorder.reset()
        round_trips, lost = [], 0
        start = time.monotonic()
        for _ in range(n_frames):
            t0 = time.monotonic()
            key = self.player.publish_one()
            deadline = t0 + timeout
            topics = ("depth", "points") if self.points else ("depth",)
            if not self.recorder.wait_for(key, topics, deadline):
                lost += 1
            round_trips.append(time.monotonic() - t0)
        total = time.monotonic() - start
        return {"frames": n_frames, "lost": lost, "seconds": total,
                "fps": (n_frames - lost) / total if total > 0 else 0.0,
                "round_trip_ms": percentiles([1e3 * r for r in round_trips])}

    def processing_rate(self, n_frames: int = 20, timeout: float = 10.0) -> float:
        """Frames per second the node sustains, from the median round trip of frames sent one
        at a time (send, wait for its depth); the median shrugs off a loaded machine's spikes."""
        loop = self.closed_loop(n_frames, timeout)
        return 1e3 / loop["round_trip_ms"]["p50"]

    def describe(self) -> dict[str, Any]:
        """Model and backend as the node reports them, the image size, and the machine's load."""
        diag = self.fresh_diagnostics()
        info = {k: diag[k] for k in ("model", "backend", "device", "precision", "input_size")
                if k in diag}
        return {**info, "image": f"{self.width}x{self.height}", "points": self.points,
                "cores": os.cpu_count(), "loadavg": loadavg()}


