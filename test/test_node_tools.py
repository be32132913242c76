"""`clip-depth node` against a live node process (issue 13 item 17), and `depth_node --help` /
a bad `--params-file` without starting ROS (item 9).

The pip-only user has no `ros2` command; each troubleshooting step has a `clip-depth node`
counterpart that speaks to the lifecycle and parameter services and to /diagnostics through
rclpy. DDS stays on shared memory in this session's domain (test/conftest.py).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from clip_depth_ros.ros.params import PARAMS
from ros_harness import ROOT, node_process

NODE = "/tools_ns/clip_depth_node"


def clip_depth_node(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`clip-depth node ARGS` in a fresh interpreter (rclpy there, never in the test process;
    test_packaging checks that `clip-depth` registers it)."""
    return subprocess.run([sys.executable, "-m", "clip_depth_ros.ros.tools", *args],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)


def node_tool(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return clip_depth_node(*args, "--node", NODE, "--timeout", "30", timeout=timeout)


def depth_node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clip_depth_ros.ros.main", *args],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The single line a user mistake prints (no traceback)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def idle_node(tmp_path_factory):
    """A node left unconfigured (autostart false), as a lifecycle manager would start it."""
    log = tmp_path_factory.mktemp("tools") / "node.log"
    with node_process("-p", "autostart:=false", namespace="/tools_ns", log_path=log) as proc:
        yield proc


@pytest.mark.ros
def test_lifecycle_state_and_transitions(idle_node):
    state = node_tool("state")
    assert state.returncode == 0, state.stderr
    assert state.stdout.strip() == f"{NODE}: unconfigured [1]"
    refused = node_tool("transition", "activate")
    assert refused.returncode == 2
    assert "unconfigured: cannot activate (possible now: configure, shutdown)" in one_line(
        refused)
    for transition, now in (("configure", "inactive"), ("activate", "active")):
        proc = node_tool("transition", transition)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"{NODE}: {transition} ok, now {now}"
    assert node_tool("state").stdout.strip() == f"{NODE}: active [3]"


@pytest.mark.ros
def test_param_get_set_and_one_line_mistakes(idle_node):
    got = node_tool("param", "get", "point_stride", "colormap", "points_rgb")
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ["point_stride: 1 (integer)", "colormap: turbo (string)",
                                       "points_rgb: true (bool)"]
    every = node_tool("param", "get")
    assert {line.split(":")[0] for line in every.stdout.splitlines()} >= {
        p.name for p in PARAMS}
    assert node_tool("param", "set", "point_stride", "4").stdout.strip() == \
        "point_stride set to 4"
    assert node_tool("param", "get", "point_stride").stdout.strip() == \
        "point_stride: 4 (integer)"
    cases = {("point_stride", "fast"): "point_stride is an integer: 'fast' is not an integer",
             ("point_stride", "500"): "point_stride not set: ",
             ("points_rgb", "maybe"): "points_rgb is a bool: 'maybe' is not a bool",
             ("no_such_param", "1"): f"{NODE} has no parameter 'no_such_param'"}
    for (name, value), expected in cases.items():
        proc = node_tool("param", "set", name, value)
        assert proc.returncode == 2, (name, value, proc.stderr)
        assert expected in one_line(proc)
    node_tool("param", "set", "point_stride", "1")


@pytest.mark.ros
def test_diagnostics_once_and_topic_rate(idle_node):
    assert node_tool("transition", "configure").returncode in (0, 2)  # already done is fine
    node_tool("transition", "activate")
    diag = node_tool("diagnostics")
    assert diag.returncode == 0, diag.stderr
    first, *values = diag.stdout.splitlines()
    assert first.startswith(f"{NODE}: depth: ")
    assert any(v.strip().startswith("frames_received: ") for v in values)
    rate = node_tool("hz", "/diagnostics", "--window", "3.5")
    assert rate.returncode == 0, rate.stderr
    hz = float(rate.stdout.split("average rate ")[1].split(" Hz")[0])
    assert 0.5 < hz < 2.0  # diagnostics_period_s 1.0


@pytest.mark.ros
def test_an_absent_node_is_one_line_and_exit_1():
    proc = clip_depth_node("--node", "/nobody_here", "--timeout", "1", "state")
    assert proc.returncode == 1
    assert "no service /nobody_here/get_state within 1 s" in one_line(proc)


def test_depth_node_help_lists_every_parameter_without_starting_ros():
    proc = depth_node("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: depth_node")
    for spec in PARAMS:
        default = repr(spec.default) if isinstance(spec.default, str) else str(spec.default)
        assert f"  {spec.name} (default {default})" in proc.stdout, spec.name
    # no node started: rcl logs nothing and the process needs no DDS
    assert proc.stderr == ""


def test_depth_node_help_imports_no_rclpy():
    script = ("import sys, io, contextlib\nfrom clip_depth_ros.ros.main import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n    rc = main(['--help'])\n"
              "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy'))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "0 []", proc.stderr


def test_bad_params_file_is_one_line_and_exit_2(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    cases = {str(tmp_path / "missing.yaml"): "does not exist",
             str(tmp_path): "does not exist",
             str(bad_yaml): "is not valid YAML (line 2)",
             str(binary): "cannot be read"}
    for path, expected in cases.items():
        proc = depth_node("--ros-args", "--params-file", path)
        assert proc.returncode == 2, (path, proc.stderr)
        line = one_line(proc)
        assert line.startswith("depth_node: params file ") and expected in line, line
