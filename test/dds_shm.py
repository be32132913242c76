"""Fast DDS shared-memory segments in /dev/shm: list them, remove those of dead processes.

Names: fastdds_<16 hex> (Fast DDS 3, Kilted wheels), fastrtps_<16 hex> (Fast DDS 2, Jazzy).

Every DDS participant under the test profile (config/fastdds_shm.xml) owns a 64 MiB segment
in /dev/shm, which is RAM.  A process that dies without tearing its participant down leaves
the segment behind for good; enough of them and the machine runs out of memory (a CI run was
killed that way).  The owner of a live segment holds an flock on its ``_el`` file, so a
segment whose lock can be taken has no owner (the rule of Fast DDS's own ``fastdds shm
clean``, which needs psutil).
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

SHM_DIR = Path("/dev/shm")
SEGMENT = re.compile(r"^(fastdds|fastrtps)_[0-9a-f]{16}$")  # Fast DDS 3 | 2 (Jazzy)


def segments() -> set[str]:
    """Names of the Fast DDS data segments present now."""
    try:
        return {name for name in os.listdir(SHM_DIR) if SEGMENT.match(name)}
    except FileNotFoundError:
        return set()


def _owned(lock: Path) -> bool:
    try:
        with open(lock, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True


def remove_orphans() -> int:
    """Remove segments whose owner process is gone; returns how many."""
    removed = 0
    for name in segments():
        lock = SHM_DIR / f"{name}_el"
        if lock.exists() and not _owned(lock):
            for path in (SHM_DIR / name, lock):
                path.unlink(missing_ok=True)
            removed += 1
    return removed
