"""Installed means working (issue 13 item 6).

The wheel is built from a copy of this tree, installed with ``pip install --no-deps --target``
into a temporary prefix, and its console scripts run from a folder outside the checkout with
that prefix first on PYTHONPATH (this venv provides the dependencies).  Every Python process
started that way (the demo's node process included) reports, through a sitecustomize in the
audit folder, where ``clip_depth_ros`` came from and which modules it imported from the
checkout: there must be none.  Also: ``clip-depth --help`` and ``models`` import no ROS and no
benchmark code, and the wheel claims no import name but ``clip_depth_ros``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AUDIT = """
import atexit, json, os, sys

def _report():
    checkout = os.environ["CDR_AUDIT_CHECKOUT"] + os.sep
    venv = os.path.realpath(sys.prefix) + os.sep  # the venv may live inside the checkout
    leaked = []
    for name, module in list(sys.modules.items()):
        path = os.path.realpath(getattr(module, "__file__", None) or "/")
        if path.startswith(checkout) and not path.startswith(venv):
            leaked.append(name)
    package = sys.modules.get("clip_depth_ros")
    with open(os.environ["CDR_AUDIT_LOG"], "a") as log:
        log.write(json.dumps({"argv": sys.argv, "leaked": sorted(leaked),
                              "clip_depth_ros": getattr(package, "__file__", None)}) + "\\n")

atexit.register(_report)
"""
NOT_COPIED = (".git", ".venv", ".venv-jazzy", "build", "runs", "demo_output", "out",
              "__pycache__", ".pytest_cache", "*.egg-info", "*.onnx", "*.engine")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(prefix, wheel): the wheel built from a copy of this tree, installed into prefix."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", str(source), "-w",
                          str(base / "wheel")], check=True, capture_output=True, timeout=300)
    wheel = next((base / "wheel").glob("clip_depth_ros-*.whl"))
    prefix = base / "prefix"
    # --ignore-installed: never touch this venv's own (editable) installation
    subprocess.run(pip + ["install", "--no-deps", "--ignore-installed", "--target",
                          str(prefix), str(wheel)], check=True, capture_output=True,
                   timeout=300)
    return prefix, wheel


def run_installed(prefix: Path, workdir: Path, *command: str, timeout: float = 300,
                  extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """A console script of the installed wheel, run from ``workdir`` (outside the checkout)."""
    audit = workdir / "audit"
    audit.mkdir(exist_ok=True)
    (audit / "sitecustomize.py").write_text(AUDIT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    env.update(PYTHONPATH=os.pathsep.join([str(prefix), str(audit)]),
               CDR_AUDIT_CHECKOUT=str(ROOT), CDR_AUDIT_LOG=str(workdir / "audit.jsonl"),
               **(extra_env or {}))
    script = prefix / "bin" / command[0]
    return subprocess.run([sys.executable, str(script), *command[1:]], cwd=str(workdir),
                          env=env, capture_output=True, text=True, timeout=timeout)


def audit_reports(workdir: Path) -> list[dict]:
    """One report per Python process the commands in ``workdir`` started."""
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def rendered_png(path: Path) -> Path:
    """A synthetic room as a camera would see it (no file from the checkout)."""
    import cv2

    from clip_depth_ros.geometry import Intrinsics
    from clip_depth_ros.synthetic import demo_trajectory, random_indoor_scene, render
    scene = random_indoor_scene(3)
    intrinsics = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480).scaled_to(320, 240)
    rgb, _ = render(scene, demo_trajectory(scene, 1)[0], intrinsics)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_wheel_ships_the_shared_files_and_claims_no_generic_name(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info",
                                                                           ".data"))}
    assert top == {"clip_depth_ros"}, "the wheel installs another top-level name"
    with zipfile.ZipFile(wheel) as archive:
        for name in ("depth.yaml", "fastdds_shm.xml"):
            shipped = archive.read(f"clip_depth_ros/data/{name}")
            assert shipped == (ROOT / "config" / name).read_bytes(), name
            share = f"clip_depth_ros-0.1.0.data/data/share/clip_depth_ros/config/{name}"
            assert archive.read(share) == shipped
    assert "clip_depth_ros/benchmarks/__init__.py" in names
    assert "clip_depth_ros/models/demo-mirror.safetensors" in names


def test_installed_models_predict_and_bench_run_outside_the_checkout(installed, tmp_path):
    prefix, _ = installed
    models = run_installed(prefix, tmp_path, "clip-depth", "models")
    assert models.returncode == 0, models.stderr
    assert "demo-mirror" in models.stdout
    image = rendered_png(tmp_path / "room.png")
    predict = run_installed(prefix, tmp_path, "clip-depth", "predict", str(image), "--out",
                            str(tmp_path / "room_depth.png"))
    assert predict.returncode == 0, predict.stderr
    assert (tmp_path / "room_depth.png").is_file() and (tmp_path / "room_depth.npy").is_file()
    bench = run_installed(prefix, tmp_path, "clip-depth", "bench", "model", "--models",
                          "tiny-mirror", "--backends", "torch", "--modes", "eager", "--sizes",
                          "64x48", "--iters", "1", "--warmup", "0", "--threads", "1")
    assert bench.returncode == 0, bench.stderr
    assert "tiny-mirror" in bench.stdout
    reports = audit_reports(tmp_path)
    assert len(reports) == 3
    for report in reports:
        assert report["leaked"] == [], report
        assert report["clip_depth_ros"].startswith(str(prefix)), report


@pytest.mark.ros
def test_installed_demo_runs_a_live_graph_outside_the_checkout(installed, tmp_path):
    prefix, _ = installed
    # the demo confines DDS itself (shared memory, its own domain id); run as `clip-depth
    # demo`, which the README gives a wheel's user (the `demo` executable, for `ros2 run
    # clip_depth_ros demo`, is the same main)
    assert (prefix / "bin" / "demo").is_file()
    demo = run_installed(prefix, tmp_path, "clip-depth", "demo", "--frames", "3", "--rate", "5",
                         "--width", "160", "--height", "120", "--output",
                         str(tmp_path / "out"), timeout=300)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["depth_received"] >= 1
    reports = audit_reports(tmp_path)
    assert len(reports) == 2, "the demo and its node process each report"
    assert any("clip_depth_ros.ros.main" in " ".join(r["argv"]) or
               r["argv"][0].endswith("main.py") for r in reports)
    for report in reports:
        assert report["leaked"] == [], report
        assert report["clip_depth_ros"].startswith(str(prefix)), report


def test_shared_files_resolve_to_the_ament_share_dir_of_their_own_install(installed, tmp_path):
    prefix, _ = installed
    script = ("from clip_depth_ros.resources import shared_file\n"
              "print(shared_file('depth.yaml')); print(shared_file('fastdds_shm.xml'))\n")

    def resolve(ament_prefix_path: str) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PYTHONPATH=str(prefix), AMENT_PREFIX_PATH=ament_prefix_path)
        proc = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        return proc.stdout.split()

    share = prefix / "share" / "clip_depth_ros" / "config"
    assert resolve(str(prefix)) == [str(share / "depth.yaml"), str(share / "fastdds_shm.xml")]
    data = prefix / "clip_depth_ros" / "data"
    assert resolve("") == [str(data / "depth.yaml"), str(data / "fastdds_shm.xml")]
    other = tmp_path / "other_ws"  # another workspace with the package is not this install
    (other / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (other / "share" / "ament_index" / "resource_index" / "packages" / "clip_depth_ros").touch()
    assert resolve(str(other)) == [str(data / "depth.yaml"), str(data / "fastdds_shm.xml")]


LAZY_CHECK = """
import sys
from clip_depth_ros import cli
try:
    cli.main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("rclpy", "rcl_interfaces",
               "sensor_msgs", "benchmarks", "rosbags", "training")
               or m.startswith(("clip_depth_ros.benchmarks", "clip_depth_ros.ros")))
print("HEAVY:" + ",".join(heavy))
"""


def _heavy_imports(*argv: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", LAZY_CHECK.format(argv=list(argv))],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY:")]
    assert line, proc.stderr[-3000:]
    return [m for m in line[-1][len("HEAVY:"):].split(",") if m]


def test_help_and_models_import_no_ros_and_no_benchmarks():
    assert _heavy_imports("--help") == []
    assert _heavy_imports("models") == []


def test_a_lazy_subcommand_loads_only_its_own_module():
    """Control: `node --help` loads the node tools, `bench --help` the benchmarks' options;
    neither loads rclpy or a message package before a mode runs."""
    assert _heavy_imports("node", "--help") == ["clip_depth_ros.ros", "clip_depth_ros.ros.tools"]
    bench = _heavy_imports("bench", "--help")
    assert "clip_depth_ros.benchmarks" in bench
    ros = ("rclpy", "rcl_interfaces", "sensor_msgs")
    assert not [m for m in bench if m.split(".")[0] in ros]


def test_top_level_help_lists_every_subcommand_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "clip_depth_ros.cli", "--help"],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    from clip_depth_ros.cli import LAZY_COMMANDS
    for name in ("models", "predict", *LAZY_COMMANDS):
        assert f"    {name} " in proc.stdout, name
