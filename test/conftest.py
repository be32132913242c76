"""Shared test set-up.

DDS traffic stays on this machine: Fast DDS uses shared memory only (config/fastdds_shm.xml:
no UDP socket at all, a segment large enough for camera frames) and every test session gets
its own ROS_DOMAIN_ID, so parallel runs and other graphs never mix.  This runs before any
test module imports rclpy; node processes started by tests inherit it.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(ROOT / "config" / "fastdds_shm.xml")
os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "SHM"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("PYTHONUNBUFFERED", "1")

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_sessionstart(session) -> None:
    """Free the shared memory that dead DDS processes left (see dds_shm) before anything runs
    (a hook that runs under -q too, unlike the report header)."""
    import dds_shm
    removed = dds_shm.remove_orphans()
    if removed:
        print(f"DDS shared memory: {removed} orphaned 64 MiB segment(s) removed, "
              f"{len(dds_shm.segments())} in use", file=sys.stderr)
