"""The node's health record without ROS, and the /diagnostics message built from it.

Levels (issue 13 item 13): OK only while depth flows; WARN while inactive, without input for
input_timeout_s, or when depth flows with a problem; ERROR while unconfigured or when every
frame since the last good one failed.  Counters are there from the start.
"""
from __future__ import annotations

import math

import pytest

from clip_depth_ros.health import ERROR, OK, WARN, NodeHealth

KEYS = ["input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p95_ms",
        "frames_received", "frames_dropped", "frames_processed", "frames_failed", "camera_info",
        "lifecycle", "input_topic", "camera_info_topic"]


def active(now: float = 100.0, timeout: float = 3.0) -> NodeHealth:
    health = NodeHealth(input_timeout_s=timeout, input_topic="/cam/image_raw",
                        camera_info_topic="/cam/camera_info")
    health.set_lifecycle("inactive", now=now)
    health.set_lifecycle("active", now=now)
    return health


def test_fresh_record_is_an_error_and_reports_every_counter():
    health = NodeHealth()
    values = health.snapshot(now=100.0)
    assert list(values) == KEYS
    assert values["camera_info"] == "none received" and values["lifecycle"] == "unconfigured"
    assert values["frames_received"] == values["frames_processed"] == 0
    assert values["frames_failed"] == 0
    assert math.isnan(values["latency_p50_ms"]) and values["output_rate_hz"] == 0.0
    level, message = health.summary(now=100.0)
    assert level == ERROR and message.startswith("unconfigured: no depth")
    health.last_error = "configure failed: no such weights"
    assert health.summary(now=100.0) == (
        ERROR, "unconfigured: no depth; configure failed: no such weights")
    health.set_lifecycle("inactive")
    assert health.summary()[0] == WARN and "inactive" in health.summary()[1]
    with pytest.raises(ValueError, match="lifecycle state"):
        health.set_lifecycle("running")


def test_active_without_input_warns_naming_the_topic():
    health = active(now=100.0)
    assert health.summary(now=100.5) == (
        WARN, "no image received on /cam/image_raw (0 s since activation)")
    health.image_arrived(now=101.0)
    health.frame_queued(replaced=False)
    assert health.summary(now=101.5) == (WARN, "images arrive on /cam/image_raw, no depth "
                                               "published yet")
    health.frame_published(20.0, now=101.6)
    assert health.summary(now=101.7) == (OK, "depth ok")
    assert health.summary(now=104.5) == (OK, "depth ok")  # within input_timeout_s
    assert health.summary(now=113.0) == (WARN, "no input for 12 s on /cam/image_raw")


def test_counters_rates_and_backend_in_published_order():
    health = active(now=10.0)
    for i in range(5):  # 10 Hz in, two frames replaced in the queue, three published
        health.image_arrived(now=10.0 + 0.1 * i)
        health.frame_queued(replaced=i in (1, 3))
    for i, latency in enumerate((20.0, 30.0, 40.0)):
        health.frame_published(latency, now=10.0 + 0.2 * i)
    health.count("stamps_backwards")
    health.count("lost_in_transport", 3)
    health.set_camera_info("ok")
    health.backend = {"backend": "torch", "device": "cpu"}
    values = health.snapshot(now=10.5)
    assert list(values) == KEYS + ["lost_in_transport", "stamps_backwards", "backend", "device"]
    assert values["input_rate_hz"] == pytest.approx(10.0)
    assert values["output_rate_hz"] == pytest.approx(5.0)
    assert values["latency_p50_ms"] == 30.0
    assert (values["frames_received"], values["frames_dropped"],
            values["frames_processed"]) == (5, 2, 3)
    assert values["camera_info"] == "ok" and values["lost_in_transport"] == 3
    assert values["lifecycle"] == "active" and values["input_topic"] == "/cam/image_raw"
    assert health.summary(now=10.5) == (OK, "depth ok")  # events, not problems


def test_problems_while_depth_flows_warn_and_every_frame_failing_is_an_error():
    health = active(now=0.0)
    health.image_arrived(now=1.0)
    health.frame_published(10.0, now=1.1)
    health.set_camera_info("missing")
    assert health.summary(now=1.2) == (
        WARN, "depth ok; camera_info missing on /cam/camera_info: depth only, no points")
    health.set_camera_info("ok")
    health.problem("rejected_bad_image", "unsupported image encoding '8UC2'", now=1.5)
    assert health.summary(now=1.6) == (
        WARN, "depth ok; some frames fail, last: unsupported image encoding '8UC2'")
    for t in (2.0, 3.0, 4.0, 5.0):  # from here on every frame fails
        health.image_arrived(now=t)
        health.problem("errors", "RuntimeError: boom", now=t)
    level, message = health.summary(now=5.1)
    assert level == ERROR and message.startswith("no depth: every frame for 3 s failed")
    assert message.endswith("(5 since the last good one), last: RuntimeError: boom")
    assert health.snapshot()["errors"] == 4 and health.snapshot()["rejected_bad_image"] == 1
    assert health.snapshot()["frames_failed"] == 5
    health.image_arrived(now=5.5)
    health.frame_published(10.0, now=5.6)  # depth again
    assert health.summary(now=5.7)[0] == WARN  # recent failures still noted
    assert health.summary(now=8.5) == (OK, "depth ok")
    with pytest.raises(ValueError, match="camera_info state"):
        health.set_camera_info("fine")


def test_diagnostics_message_carries_the_record_and_level():
    from diagnostic_msgs.msg import DiagnosticStatus
    from builtin_interfaces.msg import Time

    from clip_depth_ros.ros.diagnostics import build_diagnostics
    health = NodeHealth()
    array = build_diagnostics(health, "/cam/clip_depth_node", Time(sec=7), now=1.0)
    (status,) = array.status
    assert array.header.stamp.sec == 7
    assert status.name == "/cam/clip_depth_node: depth" and status.hardware_id == ""
    assert status.level == DiagnosticStatus.ERROR and "unconfigured" in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert [kv.key for kv in status.values] == KEYS
    assert values["latency_p50_ms"] == "nan" and values["frames_received"] == "0"
    health = active(now=0.0)
    health.backend = {"backend": "torch", "device": "cpu"}
    health.image_arrived(now=0.5)
    health.frame_published(5.0, now=0.6)
    (status,) = build_diagnostics(health, "/n", Time(), now=1.0).status
    assert (status.level, status.message, status.hardware_id) == (DiagnosticStatus.OK,
                                                                   "depth ok", "cpu")
    health.set_camera_info("invalid")
    (status,) = build_diagnostics(health, "/n", Time(), now=1.0).status
    assert status.level == DiagnosticStatus.WARN and "camera_info invalid" in status.message
