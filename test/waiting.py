"""Polling with a deadline, for tests that wait on another thread or process (no ROS)."""
from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], bool], timeout: float, poll_s: float = 0.05) -> bool:
    """Poll until predicate() is true or timeout seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()
