"""The runtime core imports neither ROS nor the training package (STYLE.md: imports one way)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("rclpy", "rcl_interfaces", "sensor_msgs", "training")

SCRIPT = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
import clip_depth_ros
import clip_depth_ros.config
import clip_depth_ros.model
import clip_depth_ros.geometry
import clip_depth_ros.colorize
import clip_depth_ros.backends
import clip_depth_ros.pipeline
import clip_depth_ros.weights
import clip_depth_ros.trust
import clip_depth_ros.anchoring
import clip_depth_ros.temporal
import clip_depth_ros.confidence
from clip_depth_ros.backends import create_backend

backend = create_backend("torch", model="tiny-depthclip")
depth = backend.infer(np.full((48, 64, 3), 128, np.uint8))
assert depth.shape == (48, 64), depth.shape
forbidden = {FORBIDDEN!r}
hits = sorted(m for m in sys.modules if m.split(".")[0].startswith(forbidden))
print("FORBIDDEN:" + ",".join(hits))
"""


def _forbidden_after(script: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("FORBIDDEN:")][-1]
    return [m for m in line[len("FORBIDDEN:"):].split(",") if m]


def test_runtime_core_imports_no_ros_and_no_training():
    assert _forbidden_after(SCRIPT) == []


def test_detection_sees_a_forbidden_import():
    """Control: the same check does notice rclpy when something imports it."""
    script = ("import sys\nimport rclpy\nprint('FORBIDDEN:' + ','.join(sorted(m for m in "
              f"sys.modules if m.split('.')[0].startswith({FORBIDDEN!r}))))\n")
    assert "rclpy" in _forbidden_after(script)
