"""The node's process entry point on its way out (no ROS graph needed beyond rclpy)."""
from __future__ import annotations

import pytest

import rclpy

from clip_depth_ros.ros import main as node_main


def _spin_that_fails(shutdown_first: bool):
    def spin(node):
        if shutdown_first:
            rclpy.shutdown()  # as rclpy's SIGTERM handler does, mid-callback
        raise RuntimeError("publisher's context is invalid")
    return spin


def test_a_publish_refused_during_shutdown_ends_the_node_quietly(monkeypatch):
    rclpy.init(args=["--ros-args", "-p", "autostart:=false"])
    monkeypatch.setattr(rclpy, "spin", _spin_that_fails(shutdown_first=True))
    assert node_main._spin() == 0


def test_an_error_while_the_context_is_up_is_not_swallowed(monkeypatch):
    rclpy.init(args=["--ros-args", "-p", "autostart:=false"])
    monkeypatch.setattr(rclpy, "spin", _spin_that_fails(shutdown_first=False))
    with pytest.raises(RuntimeError, match="context is invalid"):
        node_main._spin()
    assert not rclpy.ok()  # the finally shut it down all the same
