"""The demo's side of the live graph: a synthetic camera publisher and a recorder."""
from __future__ import annotations

import argparse
import subprocess
import threading
import time
from typing import Any, Optional

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ..geometry import Intrinsics, unpack_rgb
from ..stamps import stamp_ns
from ..synthetic import demo_trajectory, random_indoor_scene, render
from .conversions import (image_to_numpy, intrinsics_to_camera_info, numpy_to_image,
                          pointcloud2_to_array)

FRAME_ID = "camera_optical_frame"
RELIABLE = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE)


class Recorder:
    """Collects depth images and the latest point cloud, keyed by the input stamp."""

    def __init__(self, node: Any):
        self.lock = threading.Lock()
        self.depth: dict[int, tuple[np.ndarray, float]] = {}
        self.confidence: dict[int, np.ndarray] = {}
        self.cloud: Optional[PointCloud2] = None
        self.n_points = 0
        node.create_subscription(Image, "depth", self._on_depth, RELIABLE)
        node.create_subscription(Image, "depth/confidence", self._on_confidence, RELIABLE)
        node.create_subscription(PointCloud2, "points", self._on_points, RELIABLE)

    def _on_depth(self, msg: Image) -> None:
        key = stamp_ns(msg.header.stamp)
        with self.lock:
            self.depth[key] = (np.array(image_to_numpy(msg)), time.monotonic())

    def _on_confidence(self, msg: Image) -> None:
        with self.lock:
            self.confidence[stamp_ns(msg.header.stamp)] = np.array(image_to_numpy(msg))

    def _on_points(self, msg: PointCloud2) -> None:
        with self.lock:
            self.cloud, self.n_points = msg, self.n_points + 1


def wait_for_node(pub: Any, proc: subprocess.Popen, timeout: float) -> bool:
    """True once the node subscribes to our image topic (it is active)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if pub.get_subscription_count() > 0:
            return True
        time.sleep(0.1)
    return False


def run_graph(args: argparse.Namespace, proc: subprocess.Popen) -> Optional[dict[str, Any]]:
    """Publish the synthetic camera, record the node's outputs; None if the node never came up."""
    rclpy.init()
    node = rclpy.create_node("demo_camera")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        return _publish_and_record(args, proc, node)
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


def _publish_and_record(args: argparse.Namespace, proc: subprocess.Popen,
                        node: Any) -> Optional[dict[str, Any]]:
    image_pub = node.create_publisher(Image, "image", RELIABLE)
    info_pub = node.create_publisher(CameraInfo, "camera_info", RELIABLE)
    recorder = Recorder(node)
    # a Kinect-like camera: 525 px focal at 640x480, scaled to the requested size
    intrinsics = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480).scaled_to(args.width,
                                                                              args.height)
    scene = random_indoor_scene(args.seed)
    poses = demo_trajectory(scene, args.frames, height_m=args.camera_height)
    print(f"waiting for the depth node (model load)...", flush=True)
    if not wait_for_node(image_pub, proc, args.startup_timeout):
        return None
    time.sleep(0.5)  # let the node's publishers match our subscriptions
    sent: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    period = 1.0 / args.rate
    t_next = time.monotonic()
    for i, pose in enumerate(poses):
        rgb, depth = render(scene, pose, intrinsics)
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
        stamp = node.get_clock().now().to_msg()
        header = _header(stamp)
        info_pub.publish(intrinsics_to_camera_info(intrinsics, header))
        image_pub.publish(numpy_to_image(rgb, "rgb8", header))
        sent[stamp_ns(stamp)] = (rgb, depth, time.monotonic())
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and len(recorder.depth) < len(sent):
        time.sleep(0.05)
    record = _collect(recorder, sent, node)
    record["intrinsics"] = intrinsics
    return record


def _header(stamp: Any):
    from std_msgs.msg import Header
    return Header(stamp=stamp, frame_id=FRAME_ID)


def _collect(recorder: Recorder, sent: dict, node: Any) -> dict[str, Any]:
    with recorder.lock:
        depth = dict(recorder.depth)
        confidence = dict(recorder.confidence)
        cloud, n_points = recorder.cloud, recorder.n_points
    pairs, out_times = [], []
    for key, (pred, t_out) in sorted(depth.items()):
        if key in sent:
            rgb, truth, t_in = sent[key]
            pairs.append((rgb, pred, truth, (t_out - t_in) * 1e3, confidence.get(key)))
            out_times.append(t_out)
    cloud_arrays = None
    if cloud is not None:
        arr = pointcloud2_to_array(cloud)
        xyz = np.stack([arr["x"], arr["y"], arr["z"]], axis=-1)
        rgb = unpack_rgb(arr["rgb"]) if "rgb" in arr.dtype.names else None
        cloud_arrays = (xyz, rgb)
    params = _node_params(node)
    return {"pairs": pairs, "cloud": cloud_arrays, "n_points_msgs": n_points,
            "first_output_t": min(out_times, default=0.0),
            "last_output_t": max(out_times, default=0.0), **params}


def _node_params(node: Any) -> dict[str, Any]:
    """Model, weights and depth range as the running node reports them."""
    from rcl_interfaces.srv import GetParameters
    client = node.create_client(GetParameters, "/clip_depth_node/get_parameters")
    names = ["model", "weights"]
    result = {"model": "?", "weights": "", "max_depth": 10.0}
    if client.wait_for_service(timeout_sec=3.0):
        future = client.call_async(GetParameters.Request(names=names))
        deadline = time.monotonic() + 3.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        if future.done():
            values = future.result().values
            result["model"], result["weights"] = values[0].string_value, values[1].string_value
    from ..model.factory import resolve_config
    from ..config import resolve_weights
    try:
        config = resolve_config(result["model"] or None, resolve_weights(result["weights"]) or None)
        result["model"], result["max_depth"] = config.name, config.max_depth
    except (ValueError, RuntimeError):
        pass
    return result
