"""The depth node as a separate process on a live (shared-memory) DDS graph.

One node process serves the contract tests and the bad-input matrix; the order of the tests
in this module matters only in that the bad inputs run after the good-frame checks and are
followed by another good frame.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import rclpy

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402

from clip_depth_ros.backends import auto_backends  # noqa: E402
from clip_depth_ros.colorize import colorize_depth, robust_range  # noqa: E402
from clip_depth_ros.confidence import flying_pixels  # noqa: E402
from clip_depth_ros.geometry import project_points  # noqa: E402
from clip_depth_ros.ros.conversions import (camera_info_to_intrinsics, image_to_numpy,  # noqa: E402
                                            pointcloud2_to_array)
from ros_harness import (BEST_EFFORT, RELIABLE, Probe, camera_info, node_process,  # noqa: E402
                         rgb_image)

W, H = 320, 240
OUTPUTS = {"depth": Image, "depth/camera_info": CameraInfo, "points": PointCloud2,
           "depth/colored": Image}
pytestmark = [pytest.mark.ros]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """A running node, a probe subscribed to every output, and reliable input publishers."""
    log = tmp_path_factory.mktemp("node") / "node.log"
    rclpy.init()
    with node_process("-p", "camera_info_tolerance_s:=0.001", log_path=log) as proc:
        probe = Probe("contract_probe")
        for topic, msg_type in OUTPUTS.items():
            probe.subscribe(msg_type, topic)
        probe.subscribe(DiagnosticArray, "/diagnostics")
        image_pub = probe.node.create_publisher(Image, "image", RELIABLE)
        info_pub = probe.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
        assert probe.wait_for(lambda: image_pub.get_subscription_count() > 0, 120), \
            f"node never subscribed; log:\n{log.read_text()}"
        assert probe.wait_for(lambda: all(
            probe.node.count_publishers(t) > 0 for t in OUTPUTS), 20)
        time.sleep(0.5)
        yield {"probe": probe, "image": image_pub, "info": info_pub, "proc": proc, "log": log}
        probe.close()
    rclpy.shutdown()


def stamp(i: int) -> Time:
    return Time(sec=1000 + i, nanosec=123456789)


def send(graph, i: int, info: bool = True, **info_kw) -> Time:
    """Publish camera_info (optional) then an image with stamp i."""
    st = stamp(i)
    if info:
        params = dict(width=W, height=H, fx=260.0, fy=255.0, cx=161.0, cy=118.5)
        params.update(info_kw)
        graph["info"].publish(camera_info(stamp=st, **params))
        time.sleep(0.02)
    graph["image"].publish(rgb_image(W, H, st, seed=i))
    return st


def outputs_for(probe: Probe, topic: str, st: Time) -> list:
    return [m for m in probe.messages(topic) if m.header.stamp == st]


def wait_all(probe: Probe, st: Time, topics=tuple(OUTPUTS), timeout: float = 30.0) -> bool:
    return probe.wait_for(lambda: all(outputs_for(probe, t, st) for t in topics), timeout)


def test_every_output_carries_the_input_header_and_contract(graph):
    probe = graph["probe"]
    st = send(graph, 1)
    assert wait_all(probe, st), f"missing outputs; log:\n{graph['log'].read_text()}"
    depth = outputs_for(probe, "depth", st)[0]
    info = outputs_for(probe, "depth/camera_info", st)[0]
    cloud = outputs_for(probe, "points", st)[0]
    colored = outputs_for(probe, "depth/colored", st)[0]
    for msg in (depth, info, cloud, colored):
        assert msg.header.frame_id == "camera_optical_frame"
        assert msg.header.stamp == st
    assert (depth.encoding, depth.width, depth.height) == ("32FC1", W, H)
    assert (colored.encoding, colored.width, colored.height) == ("bgr8", W, H)
    assert (info.width, info.height) == (W, H)
    assert list(info.k)[:3] == pytest.approx([260.0, 0.0, 161.0])
    depth_m = image_to_numpy(depth)
    assert depth_m.dtype == np.float32 and np.isfinite(depth_m).all()
    assert depth_m.min() >= 1e-3 and depth_m.max() <= 10.0
    # depth/colored spans the depth's own robust range by default (the node's first frame:
    # nothing to smooth with yet), not the model's 0.001-10 m
    lo, hi = robust_range(depth_m)
    np.testing.assert_array_equal(image_to_numpy(colored), colorize_depth(depth_m, lo, hi))
    assert (cloud.height, cloud.width, cloud.is_dense) == (H, W, False)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]


def test_points_reproject_onto_the_depth_image(graph):
    probe = graph["probe"]
    st = send(graph, 2)
    assert wait_all(probe, st, ("depth", "points", "depth/camera_info"))
    depth_m = image_to_numpy(outputs_for(probe, "depth", st)[0])
    intrinsics = camera_info_to_intrinsics(outputs_for(probe, "depth/camera_info", st)[0])
    cloud = pointcloud2_to_array(outputs_for(probe, "points", st)[0])
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)
    # the edge filter (on by default) removes exactly the flying pixels of the depth image
    # from the cloud; every other point is depth_image_proc's back-projection of depth
    removed = ~np.isfinite(cloud["z"])
    np.testing.assert_array_equal(removed, flying_pixels(depth_m))
    assert removed.mean() < 0.9
    u, v = project_points(xyz[~removed], intrinsics)
    grid_v, grid_u = np.mgrid[0:H, 0:W]
    np.testing.assert_allclose(u, grid_u[~removed], atol=1e-3)
    np.testing.assert_allclose(v, grid_v[~removed], atol=1e-3)
    np.testing.assert_allclose(cloud["z"][~removed], depth_m[~removed], rtol=1e-6)


def test_best_effort_camera_publisher_connects(graph):
    probe = graph["probe"]
    pub = probe.node.create_publisher(Image, "image", BEST_EFFORT)
    try:
        assert probe.wait_for(lambda: pub.get_subscription_count() > 0, 10)
        # delivery of large best-effort samples is not asserted (see ENVIRONMENT.md)
    finally:
        probe.node.destroy_publisher(pub)


def test_diagnostics_report_rates_backend_and_model(graph):
    probe = graph["probe"]
    # /diagnostics runs from start-up: wait for a report made after the frames above
    assert probe.wait_for(lambda: int(_diag_value(probe, "frames_processed") or 0) >= 2, 10)
    status = probe.messages("/diagnostics")[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    # the default backend is auto: what auto_backends() tries first on this machine
    # (openvino on a CPU with native bf16 and openvino installed, else torch)
    assert values["backend"] == auto_backends("auto")[0] and values["model"] == "demo-mirror"
    for key in ("input_rate_hz", "output_rate_hz", "latency_p50_ms", "frames_dropped"):
        assert key in values


def _set_param(probe: Probe, name: str, value: ParameterValue):
    client = probe.node.create_client(SetParameters, "/clip_depth_node/set_parameters")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(SetParameters.Request(
        parameters=[Parameter(name=name, value=value)]))
    assert probe.wait_for(future.done, 10)
    probe.node.destroy_client(client)
    return future.result().results[0]


def test_runtime_parameters_apply_and_fixed_ones_are_refused(graph):
    probe = graph["probe"]
    fixed = _set_param(probe, "model", ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                      string_value="tiny-mirror"))
    assert not fixed.successful and "fixed" in fixed.reason
    bad = _set_param(probe, "colormap", ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                       string_value="rainbow-unicorn"))
    assert not bad.successful and "turbo" in bad.reason
    ok = _set_param(probe, "point_stride", ParameterValue(type=ParameterType.PARAMETER_INTEGER,
                                                          integer_value=4))
    assert ok.successful
    st = send(graph, 3)
    assert wait_all(probe, st, ("points",))
    cloud = outputs_for(probe, "points", st)[0]
    assert (cloud.height, cloud.width) == (H // 4, W // 4)
    _set_param(probe, "point_stride", ParameterValue(type=ParameterType.PARAMETER_INTEGER,
                                                     integer_value=1))


def _bad_image(kind: str, st: Time) -> Image:
    msg = rgb_image(W, H, st)
    if kind == "step_too_small":
        msg.step = W * 3 - 1
    elif kind == "data_too_short":
        msg.data = bytes(W * 3 * H // 2)
    elif kind == "unknown_encoding":
        msg.encoding = "bayer_unicorn16"
    elif kind == "zero_size":
        msg.width, msg.height, msg.step, msg.data = 0, 0, 0, b""
    elif kind == "float_image":
        msg.encoding, msg.step = "32FC1", W * 4
        msg.data = np.ones((H, W), np.float32).tobytes()
    return msg


BAD_IMAGES = ["step_too_small", "data_too_short", "unknown_encoding", "zero_size",
              "float_image"]


def test_bad_images_are_rejected_counted_and_the_node_keeps_serving(graph):
    probe = graph["probe"]
    for i, kind in enumerate(BAD_IMAGES):
        st = stamp(100 + i)
        graph["image"].publish(_bad_image(kind, st))
        time.sleep(0.3)  # one at a time: each must be seen, not replaced in the slot
        assert not outputs_for(probe, "depth", st), f"{kind} produced depth"
    assert graph["proc"].poll() is None, "node died on bad input"
    st = send(graph, 200)
    assert wait_all(probe, st), "no answer to a good frame after bad input"
    assert probe.wait_for(lambda: _diag_value(probe, "rejected_bad_image") is not None
                          and int(_diag_value(probe, "rejected_bad_image")) >= len(BAD_IMAGES),
                          5)


def _diag_value(probe: Probe, key: str):
    diags = probe.messages("/diagnostics")
    if not diags:
        return None
    return {kv.key: kv.value for kv in diags[-1].status[0].values}.get(key)


def test_camera_info_of_another_size_scales_intrinsics(graph):
    probe = graph["probe"]
    st = send(graph, 300, width=2 * W, height=2 * H, fx=520.0, fy=510.0, cx=322.5, cy=237.5)
    assert wait_all(probe, st, ("depth/camera_info", "points"))
    info = outputs_for(probe, "depth/camera_info", st)[0]
    assert (info.width, info.height) == (W, H)
    assert info.k[0] == pytest.approx(260.0) and info.k[4] == pytest.approx(255.0)
    assert info.k[2] == pytest.approx((322.5 + 0.5) / 2 - 0.5)


def test_zero_focal_camera_info_gives_depth_without_points(graph):
    probe = graph["probe"]
    st = send(graph, 400, fx=0.0, fy=0.0)
    assert wait_all(probe, st, ("depth",))
    time.sleep(0.5)
    assert not outputs_for(probe, "points", st)
    assert graph["proc"].poll() is None


def test_node_process_opens_no_udp_socket(graph):
    pid = graph["proc"].pid
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    udp = [line for path in ("/proc/net/udp", "/proc/net/udp6")
           for line in open(path).read().splitlines()[1:] if line.split()[9] in inodes]
    assert udp == [], "DDS opened UDP sockets: traffic could leave the machine"
