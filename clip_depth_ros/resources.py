"""Files the commands read at run time, found wherever the package is installed.

The node's parameters (depth.yaml) and the shared-memory DDS profile (fastdds_shm.xml) ship
twice: as package data (``clip_depth_ros/data/``, in every wheel and colcon build) and in the
ament share directory (``share/clip_depth_ros/config/``, where launch files and users of a
colcon install look).  :func:`shared_file` is the one place that picks the copy; nothing
computes a path from a module's parents.  In a source checkout ``clip_depth_ros/data/``
holds links to ``config/``, so there is one copy to edit.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Optional

PACKAGE = "clip_depth_ros"
SHARED_FILES = ("depth.yaml", "fastdds_shm.xml")


def _ament_share_dir() -> Optional[Path]:
    """share/clip_depth_ros of the colcon install this very module runs from, else None."""
    here = Path(__file__).resolve()
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        root = Path(prefix).resolve()
        marker = root / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
        # another install on the path (an older workspace under a checkout) is not ours
        if marker.is_file() and root in here.parents:
            return root / "share" / PACKAGE
    return None


def shared_file(name: str) -> Path:
    """Path of one of :data:`SHARED_FILES`: the ament share copy when installed by colcon,
    else the package data."""
    if name not in SHARED_FILES:
        raise ValueError(f"unknown shared file {name!r}; one of: {', '.join(SHARED_FILES)}")
    share = _ament_share_dir()
    if share is not None and (share / "config" / name).is_file():
        return share / "config" / name
    # zip_safe=False: the package is a plain folder, so the resource is a real file
    return Path(str(resources.files(PACKAGE).joinpath("data", name)))


def default_params_file() -> Path:
    """The node's shipped parameters file (every parameter at its default)."""
    return shared_file("depth.yaml")


def dds_profile_file() -> Path:
    """The Fast DDS profile that keeps DDS on shared memory (demo, tests, benchmarks)."""
    return shared_file("fastdds_shm.xml")
