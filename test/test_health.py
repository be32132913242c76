"""The node's health record without ROS, and the /diagnostics message built from it."""
from __future__ import annotations

import math

import pytest

from clip_depth_ros.health import NodeHealth

KEYS = ["input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p95_ms",
        "frames_received", "frames_dropped", "frames_processed", "camera_info"]


def test_fresh_record_is_ok_and_reports_the_fixed_keys():
    health = NodeHealth()
    values = health.snapshot(now=100.0)
    assert list(values) == KEYS
    assert values["camera_info"] == "none received" and values["frames_received"] == 0
    assert math.isnan(values["latency_p50_ms"]) and values["output_rate_hz"] == 0.0
    assert health.summary() == (False, "ok")


def test_counters_rates_and_backend_in_published_order():
    health = NodeHealth()
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
    assert health.summary() == (False, "ok")  # events, not problems


def test_missing_camera_info_and_problems_warn():
    health = NodeHealth()
    health.set_camera_info("missing")
    assert health.summary() == (True, "camera_info missing: depth only")
    health.set_camera_info("ok")
    health.problem("rejected_bad_image", "unsupported image encoding '8UC3'")
    assert health.summary() == (True, "ok; last problem: unsupported image encoding '8UC3'")
    health.problem("errors", "RuntimeError: boom")
    assert health.snapshot()["errors"] == 1 and health.snapshot()["rejected_bad_image"] == 1
    assert health.summary()[1].endswith("last problem: RuntimeError: boom")
    with pytest.raises(ValueError, match="camera_info state"):
        health.set_camera_info("fine")


def test_diagnostics_message_carries_the_record():
    from diagnostic_msgs.msg import DiagnosticStatus
    from builtin_interfaces.msg import Time

    from clip_depth_ros.ros.diagnostics import build_diagnostics
    health = NodeHealth()
    health.backend = {"backend": "torch", "device": "cpu"}
    array = build_diagnostics(health, "/cam/clip_depth_node", Time(sec=7), now=1.0)
    (status,) = array.status
    assert array.header.stamp.sec == 7
    assert status.name == "/cam/clip_depth_node: depth" and status.hardware_id == "cpu"
    assert status.level == DiagnosticStatus.OK and status.message == "ok"
    values = {kv.key: kv.value for kv in status.values}
    assert [kv.key for kv in status.values] == KEYS + ["backend", "device"]
    assert values["latency_p50_ms"] == "nan" and values["input_rate_hz"] == "0.00"
    health.set_camera_info("invalid")
    (status,) = build_diagnostics(health, "/n", Time(), now=1.0).status
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "camera_info invalid: depth only"
