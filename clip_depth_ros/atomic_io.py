"""Atomic file writes (temp file + fsync + rename), atomic new folders and file hashes, shared
by weights, exports, engines and the bag converter.

Pure standard library, so modules that must not import torch (the TensorRT engine cache)
can use it too, and the exporter and the backends both depend on it instead of on each other.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes atomically (parent folders created): readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _default_file_mode() -> int:
    """0666 minus the process umask: what a plain open() would have created."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write) -> None:
    """Write a file through ``write(tmp_path)`` then rename it into place (fsync'd, 0666-umask)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _default_file_mode())  # mkstemp makes 0600; weights are meant to be shared
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def staged_folder(path: Path) -> Iterator[Path]:
    """Where to write a new folder that must appear finished or not at all: a path inside a
    hidden sibling (``.<name>.<random>.partial``), renamed to ``path`` when the block ends
    without an error and removed otherwise.  A killed process leaves only the hidden sibling,
    never a half-written ``path``; ``path`` must not exist and its parent must."""
    path = Path(path)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial",
                                  dir=str(path.parent)))
    try:
        yield stage / path.name  # the folder keeps its own name inside (file names follow it)
        if path.exists():
            raise FileExistsError(f"{path} appeared while it was being written; the new one "
                                  "is discarded")
        os.rename(stage / path.name, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def file_sha256(path) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
