"""/diagnostics says what works, against a live node (issue 13 items 12-14).

It said OK with frames_received=0 on a wrong topic, OK 12 s after the input stopped, OK with
every frame rejected, and nothing while unconfigured.  Now: ERROR while unconfigured (published
from start-up, counters at 0), WARN with no input for input_timeout_s (naming the topic), OK
only while depth flows, ERROR when every frame fails, WARN while inactive.  The node here has
`image` remapped and `camera_info` not, so it listens for camera_info next to the image and
says so in its startup line and in the "no camera_info" warning.  The tests run in order on
one node process.
"""
from __future__ import annotations

import threading
import time

import pytest
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CameraInfo, Image

from ros_harness import RELIABLE, Probe, camera_info, node_process, rgb_image

NODE = "/diag/clip_depth_node"
IMAGE, INFO = "/diag_cam/color/image_raw", "/diag_cam/color/camera_info"
W, H = 160, 120
pytestmark = [pytest.mark.ros]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    log = tmp_path_factory.mktemp("diag") / "node.log"
    rclpy.init()
    with node_process("-p", "autostart:=false", "-p", "input_timeout_s:=1.0",
                      "-p", "diagnostics_period_s:=0.2", "-r", f"image:={IMAGE}",
                      namespace="/diag", log_path=log) as proc:
        probe = Probe("diag_probe")
        probe.subscribe(DiagnosticArray, "/diagnostics")
        pubs = {"image": probe.node.create_publisher(Image, IMAGE, RELIABLE),
                "info": probe.node.create_publisher(CameraInfo, INFO, RELIABLE)}
        yield {"probe": probe, "proc": proc, "log": log, **pubs}
        probe.close()
    rclpy.shutdown()


def latest(probe: Probe, name: str = NODE):
    """The latest status of the node (None before any)."""
    for msg in reversed(probe.messages("/diagnostics")):
        for status in msg.status:
            if status.name == f"{name}: depth":
                return status
    return None


def wait_level(graph, level: bytes, needle: str = "", timeout: float = 20.0):
    probe = graph["probe"]

    def ok() -> bool:
        status = latest(probe)
        return status is not None and status.level == level and needle in status.message
    assert probe.wait_for(ok, timeout), (latest(probe), graph["log"].read_text()[-3000:])
    status = latest(probe)
    return status, {kv.key: kv.value for kv in status.values}


def call(graph, srv_type, name: str, request, timeout: float = 120.0):
    probe = graph["probe"]
    client = probe.node.create_client(srv_type, f"{NODE}/{name}")
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(request)
    assert probe.wait_for(future.done, timeout)
    probe.node.destroy_client(client)
    return future.result()


def transition(graph, transition_id: int) -> None:
    assert call(graph, ChangeState, "change_state",
                ChangeState.Request(transition=Transition(id=transition_id))).success


def set_param(graph, name: str, value: float):
    request = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE, double_value=value))])
    return call(graph, SetParameters, "set_parameters", request).results[0]


class Camera:
    """Publishes frames (optionally broken, optionally with camera_info) at ~5 Hz."""

    def __init__(self, graph, info: bool = True, encoding: str = "rgb8"):
        self.graph, self.info, self.encoding = graph, info, encoding
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            stamp = Time(sec=2000 + i)
            if self.info:
                self.graph["info"].publish(camera_info(W, H, 150.0, 150.0, 79.5, 59.5, stamp))
            msg = rgb_image(W, H, stamp, seed=i)
            msg.encoding = self.encoding
            self.graph["image"].publish(msg)
            i += 1
            self._stop.wait(0.2)

    def __enter__(self) -> "Camera":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_unconfigured_node_publishes_an_error_with_every_counter(graph):
    status, values = wait_level(graph, DiagnosticStatus.ERROR, "unconfigured")
    assert "waiting to be configured" in status.message
    for key in ("frames_received", "frames_dropped", "frames_processed", "frames_failed"):
        assert values[key] == "0", key
    assert values["lifecycle"] == "unconfigured" and values["input_rate_hz"] == "0.00"


def test_active_without_input_warns_naming_the_topic(graph):
    transition(graph, Transition.TRANSITION_CONFIGURE)
    status, _ = wait_level(graph, DiagnosticStatus.WARN, "inactive")
    transition(graph, Transition.TRANSITION_ACTIVATE)
    status, values = wait_level(graph, DiagnosticStatus.WARN, "no image received on " + IMAGE)
    assert values["input_topic"] == IMAGE and values["camera_info_topic"] == INFO
    assert values["frames_received"] == "0" and values["lifecycle"] == "active"
    log = graph["log"].read_text()
    assert (f"listening on {IMAGE} (raw image), {INFO} (camera_info, next to the remapped "
            "image), /diag/sparse_depth (sparse_depth); publishing on /diag/depth, "
            "/diag/depth/camera_info, /diag/points, /diag/depth/colored, "
            "/diag/depth/confidence, /diagnostics") in log


def test_depth_without_camera_info_warns_naming_the_camera_info_topic(graph):
    with Camera(graph, info=False):
        status, _ = wait_level(graph, DiagnosticStatus.WARN, f"camera_info missing on {INFO}")
    assert status.message.startswith("depth ok")
    assert f"no camera_info received on {INFO}" in graph["log"].read_text()


def test_ok_only_while_depth_flows_then_warn_when_the_input_stops(graph):
    with Camera(graph, info=True):
        status, values = wait_level(graph, DiagnosticStatus.OK, "depth ok")
        assert int(values["frames_processed"]) > 0 and values["camera_info"] == "ok"
    status, _ = wait_level(graph, DiagnosticStatus.WARN, f"no input for")
    assert IMAGE in status.message


def test_every_frame_failing_is_an_error(graph):
    with Camera(graph, encoding="bayer_unicorn8"):
        status, values = wait_level(graph, DiagnosticStatus.ERROR, "no depth: every frame")
    assert "bayer_unicorn8" in status.message and int(values["frames_failed"]) > 0
    assert int(values["rejected_bad_image"]) > 0


def test_display_min_above_max_is_refused_at_the_parameter(graph):
    assert set_param(graph, "display_max_m", 4.0).successful
    refused = set_param(graph, "display_min_m", 6.0)
    assert not refused.successful and "must be below display_max_m" in refused.reason
    assert set_param(graph, "display_min_m", 1.0).successful
    set_param(graph, "display_min_m", 0.0)
    set_param(graph, "display_max_m", 0.0)


def test_deactivated_warns_and_cleaned_up_is_an_error_again(graph):
    transition(graph, Transition.TRANSITION_DEACTIVATE)
    wait_level(graph, DiagnosticStatus.WARN, "inactive")
    transition(graph, Transition.TRANSITION_CLEANUP)
    status, values = wait_level(graph, DiagnosticStatus.ERROR, "unconfigured")
    assert int(values["frames_processed"]) > 0  # the counters stay
    assert graph["proc"].poll() is None


def test_bad_display_range_at_start_leaves_the_node_unconfigured_and_says_why(tmp_path, graph):
    with node_process("-p", "display_min_m:=5.0", "-p", "display_max_m:=1.0",
                      "-p", "diagnostics_period_s:=0.2", namespace="/baddisplay",
                      log_path=tmp_path / "node.log"):
        probe = graph["probe"]
        name = "/baddisplay/clip_depth_node"
        assert probe.wait_for(lambda: latest(probe, name) is not None, 60)
        status = latest(probe, name)
        assert status.level == DiagnosticStatus.ERROR
        assert "unconfigured" in status.message and "display_min_m" in status.message


@pytest.mark.parametrize("transport,remaps,follow,expected", [
    ("raw", [], True, ("/ns/image", "/ns/camera_info", "next to the image")),
    ("raw", ["image:=/cam/color/image_raw"], True,
     ("/cam/color/image_raw", "/cam/color/camera_info", "next to the remapped image")),
    ("raw", ["image:=/cam/color/image_raw"], False,
     ("/cam/color/image_raw", "/ns/camera_info", "camera_info_follows_image off")),
    ("raw", ["image:=/cam/color/image_raw", "camera_info:=/calib/info"], True,
     ("/cam/color/image_raw", "/calib/info", "remapped")),
    ("compressed", ["image/compressed:=/front/image_raw/compressed"], True,
     ("/front/image_raw/compressed", "/front/camera_info", "next to the remapped image")),
])
def test_camera_info_topic_follows_a_remapped_image(graph, transport, remaps, follow, expected):
    from clip_depth_ros.ros.topics import input_topics
    args = ["--ros-args"] + [x for rule in remaps for x in ("-r", rule)]
    node = rclpy.create_node("topics_probe", namespace="/ns", cli_args=args,
                             use_global_arguments=False)
    try:
        topics = input_topics(node, transport, follow)
        resolved = (node.resolve_topic_name(topics.image),
                    node.resolve_topic_name(topics.camera_info), topics.camera_info_source)
        assert resolved == expected
    finally:
        node.destroy_node()
