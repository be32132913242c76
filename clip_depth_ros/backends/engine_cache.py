"""TensorRT engine cache: keys, files and the load-or-build decision, in pure Python.

Engines are not portable across TensorRT versions or GPUs, so an engine is stored as
``<cache_dir>/<key>.engine`` next to ``<key>.json`` holding the fields the key was made from
(ONNX file hash, input shape, precision, TensorRT version, network typing, GPU name, compute
capability, the hash of the graph the builder actually parsed) and the engine's own hash.  An
engine is only loaded when its stored fields equal the current ones and its bytes are intact;
anything else (or a deserialisation failure) rebuilds it.  TensorRT itself is behind
:class:`EngineToolchain`, which callers always pass in: this module imports neither TensorRT
nor the exporter, so its logic is testable without them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence, Union

from ..atomic_io import file_sha256, write_bytes_atomic  # noqa: F401 (re-exported)

log = logging.getLogger("clip_depth_ros")

DEFAULT_CACHE_DIR = "~/.cache/clip_depth_ros/engines"
PRECISIONS = ("fp32", "fp16", "int8")
KEY_FORMAT = 2  # 2: network typing and the parsed graph's hash joined the key
TYPINGS = ("weak", "strong")  # TensorRT 10: fp32 graph + precision flags; 11: graph types


@dataclass(frozen=True)
class Platform:
    """What an engine is bound to besides its graph: the TensorRT build and the GPU."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"
    network_typing: str  # "weak" (TensorRT 10, builder flags) or "strong" (TensorRT 11)


class EngineToolchain(Protocol):
    """The TensorRT side of the cache (a fake one in tests)."""

    def platform(self) -> Platform:
        """TensorRT version, network typing, GPU name and compute capability in use."""

    def network_graph(self, onnx_path: Path, precision: str) -> Path:
        """The ONNX graph the builder will parse for this precision: the exported graph, or
        a reduced-precision form of it for a strongly typed build."""

    def build(self, network_onnx: Path, precision: str) -> bytes:
        """Build and serialise an engine from :meth:`network_graph`'s graph (can take
        minutes)."""

    def deserialize(self, data: bytes) -> Any:
        """A runnable engine from serialised bytes; raises on failure."""


@dataclass
class CachedEngine:
    """An engine ready to run, where it is stored and whether it was built just now."""

    engine: Any
    key: str
    path: Path
    built: bool


CALIBRATION_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def calibration_files(images_dir: Union[str, os.PathLike]) -> list[Path]:
    """The calibration images of a folder, sorted (what the INT8 calibrator reads)."""
    return sorted(p for p in Path(images_dir).expanduser().iterdir()
                  if p.is_file() and p.suffix.lower() in CALIBRATION_SUFFIXES)


def calibration_set_sha256(images_dir: Union[str, os.PathLike]) -> str:
    """sha256 over the names and bytes of a calibration folder's images: an INT8 engine (and
    its calibration scales) belong to exactly this set."""
    digest = hashlib.sha256()
    for path in calibration_files(images_dir):
        digest.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    return digest.hexdigest()


def engine_key_fields(onnx_path: Union[str, os.PathLike], input_shape: Sequence[int],
                      precision: str, platform: Platform,
                      network_onnx: Optional[Union[str, os.PathLike]] = None,
                      calibration_sha256: Optional[str] = None) -> dict[str, Any]:
    """Everything an engine depends on, as a JSON-able dict.  ``network_onnx`` is the graph
    the builder parses when it is not ``onnx_path`` itself (TensorRT 11's fp16 graph); INT8
    engines also depend on their calibration set."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if platform.network_typing not in TYPINGS:
        raise ValueError(f"network typing must be one of {', '.join(TYPINGS)}, got "
                         f"'{platform.network_typing}'")
    source = file_sha256(onnx_path)
    same = network_onnx is None or Path(network_onnx).expanduser().resolve() == \
        Path(onnx_path).expanduser().resolve()
    fields = {"format": KEY_FORMAT, "onnx_sha256": source,
              "network_onnx_sha256": source if same else file_sha256(network_onnx),
              "input_shape": [int(d) for d in input_shape], "precision": precision,
              "trt_version": str(platform.trt_version),
              "network_typing": platform.network_typing, "gpu_name": str(platform.gpu_name),
              "compute_capability": str(platform.compute_capability)}
    if precision == "int8" and platform.network_typing == "weak":
        if not calibration_sha256:
            raise ValueError("an int8 engine key needs the calibration set's sha256")
        fields["calibration_sha256"] = str(calibration_sha256)
    return fields


def key_of(fields: dict[str, Any]) -> str:
    """The cache key (sha256 hex) of a fields dict."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def engine_cache_key(onnx_path: Union[str, os.PathLike], input_shape: Sequence[int],
                     precision: str, platform: Platform,
                     network_onnx: Optional[Union[str, os.PathLike]] = None,
                     calibration_sha256: Optional[str] = None) -> str:
    """sha256 over :func:`engine_key_fields`: the ONNX bytes (and those of the graph parsed),
    input shape, precision, TensorRT version and typing, GPU (and the INT8 calibration set)."""
    return key_of(engine_key_fields(onnx_path, input_shape, precision, platform, network_onnx,
                                    calibration_sha256))


def cache_paths(cache_dir: Union[str, os.PathLike], key: str) -> tuple[Path, Path]:
    """(<key>.engine, <key>.json) in the cache directory."""
    root = Path(cache_dir).expanduser()
    return root / f"{key}.engine", root / f"{key}.json"


def _load_cached(engine_path: Path, meta_path: Path, key: str, fields: dict[str, Any],
                 toolchain: EngineToolchain) -> Optional[Any]:
    """The cached engine, or None (with the reason logged) when it must be rebuilt."""
    if not engine_path.is_file() or not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("unreadable engine cache record %s (%s); rebuilding", meta_path, exc)
        return None
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("fields") != fields:
        stored = meta.get("fields") if isinstance(meta, dict) else None
        log.warning("cached engine %s was built for %s, not %s; rebuilding", engine_path,
                    stored, fields)
        return None
    data = engine_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("engine_sha256"):
        log.warning("cached engine %s is corrupt (hash mismatch); rebuilding", engine_path)
        return None
    try:
        return toolchain.deserialize(data)
    except Exception as exc:  # TensorRT reports a stale or foreign engine many ways
        log.warning("cached engine %s failed to deserialise (%s); rebuilding", engine_path, exc)
        return None


def load_or_build(onnx_path: Union[str, os.PathLike], precision: str,
                  cache_dir: Union[str, os.PathLike] = DEFAULT_CACHE_DIR, *,
                  toolchain: EngineToolchain, input_shape: Sequence[int],
                  calibration_sha256: Optional[str] = None) -> CachedEngine:
    """The engine for this graph, precision and platform: from the cache when its stored key
    matches and it deserialises, else built (and cached)."""
    onnx_path = Path(onnx_path).expanduser()
    plat = toolchain.platform()
    network_onnx = Path(toolchain.network_graph(onnx_path, precision))
    fields = engine_key_fields(onnx_path, input_shape, precision, plat, network_onnx,
                               calibration_sha256)
    key = key_of(fields)
    engine_path, meta_path = cache_paths(cache_dir, key)
    engine = _load_cached(engine_path, meta_path, key, fields, toolchain)
    if engine is not None:
        log.info("loaded cached TensorRT engine %s", engine_path)
        return CachedEngine(engine, key, engine_path, built=False)
    log.warning("building a TensorRT engine for %s (%s, TensorRT %s %s-typed, %s); a first "
                "build can take minutes, later starts reuse %s", network_onnx.name, precision,
                plat.trt_version, plat.network_typing, plat.gpu_name, engine_path)
    start = time.monotonic()
    data = bytes(toolchain.build(network_onnx, precision))
    build_s = time.monotonic() - start
    engine = toolchain.deserialize(data)  # a fresh engine that fails to load is a real error
    write_bytes_atomic(engine_path, data)
    meta = {"key": key, "fields": fields, "engine_sha256": hashlib.sha256(data).hexdigest(),
            "engine_bytes": len(data), "onnx": str(onnx_path),
            "network_onnx": str(network_onnx), "build_s": round(build_s, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_bytes_atomic(meta_path, json.dumps(meta, indent=2).encode())  # written last: the commit
    log.info("built TensorRT engine %s in %.1f s", engine_path, build_s)
    return CachedEngine(engine, key, engine_path, built=True)
