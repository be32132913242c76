"""The depth node as its own process, and the DDS confinement it shares with its peers.

One launcher for the demo (clip_depth_ros.ros.demo), the live-graph tests (test/ros_harness.py)
and the benchmarks (benchmarks/graph_harness.py): the node runs exactly as ``ros2 run`` would
start it, with the params file, ``-p`` overrides and a namespace, its output in a log file.

DDS stays on this machine (the shipped fastdds_shm.xml: shared memory only, no UDP socket; a
private domain id) for the caller and the node alike; a robot's own DDS settings are never
touched outside these tools.  This module imports no rclpy: callers confine DDS first, then
import rclpy.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any, Mapping, Optional, Sequence, Union

from ..resources import dds_profile_file, default_params_file

# The folder this process imported clip_depth_ros from (a checkout or site-packages): first on
# the node's PYTHONPATH, so the node runs the same copy.  Files are never looked up here: the
# params file and the DDS profile come from the one resolver (package data / ament share).
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS = default_params_file()
DDS_PROFILE = dds_profile_file()


def confine_dds(domain_id: Optional[int] = None) -> dict[str, str]:
    """Environment that keeps DDS on shared memory in a private domain (set before rclpy)."""
    env = {"FASTDDS_DEFAULT_PROFILES_FILE": str(DDS_PROFILE),
           "FASTDDS_BUILTIN_TRANSPORTS": "SHM",
           "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else 100 + os.getpid() % 100)}
    os.environ.update(env)
    # ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST would make rmw open UDP sockets: keep it unset
    os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    return env


def dds_confined() -> bool:
    """True when this process's environment already keeps DDS on shared memory."""
    return (os.environ.get("FASTDDS_BUILTIN_TRANSPORTS") == "SHM"
            and bool(os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")))


def node_command(params_file: Union[str, Path] = DEFAULT_PARAMS,
                 overrides: Optional[Mapping[str, Any]] = None, namespace: str = "",
                 ros_args: Sequence[str] = ()) -> list[str]:
    """The command line of the node process: params file, namespace, ``-p`` overrides, then
    any further ROS arguments (later ones win)."""
    cmd = [sys.executable, "-m", "clip_depth_ros.ros.main", "--ros-args",
           "--params-file", str(params_file)]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for name, value in (overrides or {}).items():
        cmd += ["-p", f"{name}:={value}"]
    return cmd + list(ros_args)


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM (the node shuts down cleanly), SIGKILL if it has not exited after ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class NodeProcess:
    """The depth node as a child process: start, alive, rss_kib, stop (or use ``with``).

    The child inherits this process's environment (so its DDS confinement and domain), plus
    ``env``, with this checkout first on PYTHONPATH so an uninstalled tree runs too.
    """

    def __init__(self, params_file: Union[str, Path] = DEFAULT_PARAMS,
                 overrides: Optional[Mapping[str, Any]] = None,
                 log_path: Optional[Path] = None, env: Optional[Mapping[str, str]] = None,
                 namespace: str = "", ros_args: Sequence[str] = (),
                 cwd: Optional[Path] = None, package_root: Optional[Path] = None):
        self.command = node_command(params_file, overrides, namespace, ros_args)
        # the tree whose clip_depth_ros the child imports (default: this one); another
        # checkout runs an older node under the same harness, for before/after comparisons
        self.package_root = Path(package_root) if package_root is not None else PACKAGE_ROOT
        self.cwd = cwd  # relative paths in the arguments resolve from here (default: ours)
        self.log_path = None if log_path is None else Path(log_path)
        self.env = dict(env or {})
        self.proc: Optional[subprocess.Popen] = None
        self._log: Optional[IO[str]] = None

    def start(self) -> "NodeProcess":
        """Start the node; refused unless DDS is confined (confine_dds) in this process."""
        if not dds_confined():
            raise RuntimeError("DDS is not confined: call confine_dds() before starting the "
                               "node (and before importing rclpy)")
        env = dict(os.environ, **self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.package_root)] + [p for p in [env.get("PYTHONPATH")] if p])
        self._log = open(self.log_path, "w") if self.log_path is not None else None
        self.proc = subprocess.Popen(self.command, env=env, cwd=self.cwd,
                                     stdout=self._log or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        """Resident memory (VmRSS, KiB) of the node process; 0 once it has exited."""
        if self.proc is None:
            return 0
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; closes the log.  Safe to call twice."""
        if self.proc is not None and self.proc.returncode is None:
            stop_process(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "NodeProcess":
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
