"""Helpers for tests against a live ROS graph: the node as a process, a spinning probe node."""
from __future__ import annotations

import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from clip_depth_ros.ros.launcher import DEFAULT_PARAMS, NodeProcess
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = DEFAULT_PARAMS
RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.BEST_EFFORT)


@contextmanager
def node_process(*ros_args: str, namespace: str = "",
                 log_path: Optional[Path] = None) -> Iterator[subprocess.Popen]:
    """The node process with the shipped params file (env inherited: SHM transport, own
    domain), stopped after; yields its Popen."""
    with NodeProcess(PARAMS_FILE, namespace=namespace, ros_args=ros_args, log_path=log_path,
                     cwd=ROOT) as node:
        yield node.proc


class Probe:
    """A node spinning in a background thread that publishes and records messages."""

    def __init__(self, name: str = "probe"):
        self.node: Node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def subscribe(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE) -> None:
        """Record every message on topic."""
        self.received.setdefault(topic, [])

        def store(msg: Any, topic: str = topic) -> None:
            with self._lock:
                self.received[topic].append(msg)
        self.node.create_subscription(msg_type, topic, store, qos)

    def messages(self, topic: str) -> list[Any]:
        """A copy of what arrived on topic so far."""
        with self._lock:
            return list(self.received.get(topic, []))

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll until predicate() is true or timeout seconds pass."""
        return wait_until(predicate, timeout)

    def close(self) -> None:
        """Stop spinning and destroy the node."""
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


def camera_info(width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                stamp: Any, frame_id: str = "camera_optical_frame") -> CameraInfo:
    """A CameraInfo with K and P for an undistorted pinhole camera."""
    info = CameraInfo()
    info.header.stamp, info.header.frame_id = stamp, frame_id
    info.width, info.height = width, height
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def rgb_image(width: int, height: int, stamp: Any, seed: int = 0,
              frame_id: str = "camera_optical_frame") -> Image:
    """A random rgb8 image message."""
    rng = np.random.default_rng(seed)
    msg = Image()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.height, msg.width, msg.encoding, msg.step = height, width, "rgb8", width * 3
    msg.data = rng.integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes()
    return msg
