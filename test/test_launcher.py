"""The one node-process launcher (demo, live-graph tests, benchmarks), without starting ROS."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from clip_depth_ros.ros import launcher
from clip_depth_ros.ros.launcher import DEFAULT_PARAMS, NodeProcess, node_command
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def test_command_is_params_namespace_overrides_then_ros_args():
    cmd = node_command("p.yaml", {"model": "tiny-mirror", "point_stride": 2}, "/front",
                       ["--params-file", "mine.yaml"])
    assert cmd[:2] == [sys.executable, "-m"] and cmd[2] == "clip_depth_ros.ros.main"
    assert cmd[3:] == ["--ros-args", "--params-file", "p.yaml", "-r", "__ns:=/front",
                       "-p", "model:=tiny-mirror", "-p", "point_stride:=2",
                       "--params-file", "mine.yaml"]
    assert node_command()[5] == str(DEFAULT_PARAMS) and DEFAULT_PARAMS.is_file()


def test_refuses_to_start_unconfined(monkeypatch):
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS", raising=False)
    with pytest.raises(RuntimeError, match="confine_dds"):
        NodeProcess().start()


def test_start_alive_rss_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "SHM")  # conftest confines; be explicit
    node = NodeProcess(log_path=tmp_path / "node.log", env={"MARK": "launcher-test"})
    # a stand-in for the node: prints what the launcher passed, then waits to be stopped
    node.command = [sys.executable, "-c", "import os, sys, time; "
                    "print(os.environ['MARK'], os.environ['PYTHONPATH'].split(os.pathsep)[0]); "
                    "sys.stdout.flush(); time.sleep(60)"]
    with node:
        assert node.alive() and node.rss_kib() > 0
        for _ in range(100):
            if (tmp_path / "node.log").read_text():
                break
            time.sleep(0.05)
    assert not node.alive() and node.rss_kib() == 0
    assert (tmp_path / "node.log").read_text().split() == ["launcher-test",
                                                           str(launcher.PACKAGE_ROOT)]
    node.stop()  # twice is fine


def test_another_checkout_runs_first_on_the_path(tmp_path, monkeypatch):
    # benchmarks.live_graph --node-root: an older commit's node under the same harness
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "SHM")
    other = tmp_path / "old_checkout"
    other.mkdir()
    node = NodeProcess(log_path=tmp_path / "node.log", package_root=other)
    node.command = [sys.executable, "-c", "import os; "
                    "print(os.environ['PYTHONPATH'].split(os.pathsep)[0])"]
    with node:
        assert wait_until(lambda: not node.alive(), 5.0)
    assert (tmp_path / "node.log").read_text().split() == [str(other)]


def test_live_graph_refuses_a_node_root_without_the_package(tmp_path, capsys):
    from clip_depth_ros.benchmarks.live_graph import main
    assert main(["--closed-loop", "3", "--node-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--node-root" in err and "clip_depth_ros/ros/main.py" in err
    assert main(["--closed-loop", "3", "--params-file", str(tmp_path / "no.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_importing_the_launcher_and_demo_imports_no_rclpy():
    """The demo imports the launcher before it confines DDS: neither may pull rclpy in."""
    script = ("import sys\nimport clip_depth_ros.ros.launcher, clip_depth_ros.ros.demo\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy'))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
