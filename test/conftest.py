"""Shared test set-up.

DDS traffic stays on this machine: Fast DDS uses shared memory only (no UDP socket at all) and
every test session gets its own ROS_DOMAIN_ID, so parallel runs and other graphs never mix.
This runs before any test module imports rclpy.
"""
import os
import sys
from pathlib import Path

os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "SHM"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("PYTHONUNBUFFERED", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
