"""builtin_interfaces/Time stamps as numbers: the one conversion the node, the bag command,
the demo and the benchmarks share.

Works on any object with ``sec`` and ``nanosec`` (rclpy and rosbags messages alike); the
message class is the caller's, so this module imports no ROS package.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

NS_PER_S = 1_000_000_000
T = TypeVar("T")


def stamp_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time as integer nanoseconds (exact)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_seconds(stamp: Any) -> float:
    """A builtin_interfaces/Time as float seconds (for display and rates, not for keys)."""
    return stamp_ns(stamp) * 1e-9


def stamp_from_ns(ns: int, time_type: Callable[..., T]) -> T:
    """A ``time_type`` (e.g. builtin_interfaces.msg.Time) of ``ns`` nanoseconds."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return time_type(sec=sec, nanosec=nanosec)
