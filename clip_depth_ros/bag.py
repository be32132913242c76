"""Offline depth for recordings: rosbag2 (sqlite3 or MCAP) in, a new bag with depth out.

``clip-depth bag INPUT OUTPUT`` reads every Image or CompressedImage of one topic, runs a
backend on it and writes, under the image's namespace (``/camera/image_raw`` -> ``/camera``;
each name can be chosen with ``--depth-topic``, ``--depth-info-topic``, ``--points-topic``):

- ``<ns>/depth``              sensor_msgs/Image 32FC1, metres (REP 117/118)
- ``<ns>/depth/camera_info``  the paired camera_info with K and P scaled to the depth image
- ``<ns>/points``             with ``--points``: sensor_msgs/PointCloud2 x y z (+ rgb)

and, unless ``--no-copy-input``, every record of the input bag as it was, so the new bag
replays the camera with its depth.  Every output keeps the input image's header (stamp,
frame_id) and its receive timestamp in the bag, exactly as the live node would publish it.
camera_info is paired by the node's own policy (:mod:`clip_depth_ros.camera_sync`).

The bag is written into a hidden sibling folder and renamed to OUTPUT when it is finished:
OUTPUT is a complete, readable bag or absent.  Ctrl-C stops after the current frame and keeps
what was converted as a finished bag (a second Ctrl-C stops at once and keeps nothing).

Pure Python: messages are (de)serialised with the ``rosbags`` typestore, never rclpy.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .atomic_io import staged_folder
from .backends.base import DepthBackend
from .bag_messages import OUTPUT_TYPES, BagMessages
from .bag_reader import (CAMERA_INFO, IMAGE, IMAGE_TYPES, BagError, bag_folder, check_topic,
                         decode_image, iter_bag_messages, rosbags_api)
from .camera_sync import CameraInfoPairing, image_namespace
from .camera_sync import camera_info_topic as camera_info_next_to
from .frame import frame_messages
from .image_codec import ConversionError, camera_info_to_intrinsics
from .pipeline import DepthPipeline, PipelineSettings
from .stamps import stamp_ns
from .trust import (SPARSE_TOLERANCE_S, PointTrust, ScaleAnchor, TrustSettings,
                    paired_sparse_depth)

__all__ = ["BagJob", "BagReport", "convert", "image_namespace", "output_topics", "prepare"]

FORMATS = ("sqlite3", "mcap")
TOPIC_OPTIONS = {"depth": "--depth-topic", "info": "--depth-info-topic",
                 "points": "--points-topic", "confidence": "--confidence-topic"}
_TOPIC_NAME = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)+$")
_REPORTED = {"depth": "depth", "info": "camera_info", "points": "points",
             "confidence": "confidence"}


def output_topics(image_topic: str, chosen: Optional[dict[str, Optional[str]]] = None
                  ) -> dict[str, str]:
    """Output topic names for an image topic (depth, info, points, confidence): under the
    image's namespace, as the node names them, or the names ``chosen`` gives."""
    ns = image_namespace(image_topic)
    topics = {"depth": f"{ns}/depth", "info": f"{ns}/depth/camera_info", "points": f"{ns}/points",
              "confidence": f"{ns}/depth/confidence"}
    topics.update({key: name for key, name in (chosen or {}).items() if name})
    return topics


@dataclass
class BagJob:
    """A checked conversion: what to read, where to write, which storage."""

    source: Path
    output: Path
    image_topic: str
    image_type: str
    camera_info_topic: Optional[str]
    storage: str
    frame_count: int
    topics: dict[str, str] = field(default_factory=dict)  # the outputs written
    copy_input: bool = True


@dataclass
class BagReport:
    """What a conversion did."""

    frames: int = 0
    depth: int = 0
    camera_info: int = 0
    points: int = 0
    confidence: int = 0
    copied: int = 0  # input records copied as they were
    skipped: Counter = field(default_factory=Counter)
    first_problem: str = ""
    interrupted: bool = False
    anchor: dict[str, Any] = field(default_factory=dict)  # the scale anchor's last status


def _storage_of(reader: Any) -> str:
    """'mcap' or 'sqlite3': the storage plugin of an open reader (directory or single file)."""
    storages = getattr(reader.storage, "storages", None) or [reader.storage]
    return "mcap" if "mcap" in type(storages[0]).__name__.lower() else "sqlite3"


def _check_outputs(topics: dict[str, str], input_topics: dict[str, str],
                   copy_input: bool) -> None:
    """Valid, distinct output names that do not collide with copied input topics."""
    for key, name in topics.items():
        if not _TOPIC_NAME.match(name):
            raise BagError(f"{TOPIC_OPTIONS[key]} '{name}' is not an absolute ROS topic name "
                           "(like /camera/depth)")
        if copy_input and name in input_topics:
            raise BagError(f"output topic {name} is already in the input bag "
                           f"({input_topics[name]}); choose another with {TOPIC_OPTIONS[key]} "
                           "or leave the input out with --no-copy-input")
    names = list(topics.values())
    for name in set(names):
        if names.count(name) > 1:
            raise BagError(f"two outputs would be written to {name}; give "
                           f"{', '.join(TOPIC_OPTIONS[k] for k in topics)} distinct names")


def _check_copyable(src: Path, connections: list, typestore: Any) -> None:
    """Every input topic can be copied: the bag holds its definition or the typestore does."""
    for conn in connections:
        if conn.msgdef.data and conn.digest:
            continue
        try:
            typestore.hash_rihs01(conn.msgtype)
        except Exception:  # rosbags raises several types for unknown message types
            raise BagError(f"cannot copy {conn.topic} ({conn.msgtype}): bag {src} holds no "
                           "definition of that type; use --no-copy-input") from None


def prepare(source: str, output: str, image_topic: str = "/camera/image_raw",
            camera_info_topic: str = "auto", storage: Optional[str] = None,
            copy_input: bool = True, points: bool = False,
            topics: Optional[dict[str, Optional[str]]] = None,
            confidence: bool = False) -> BagJob:
    """Check the input and output before any model is loaded; BagError says what is wrong."""
    reader_cls, _, typestore = rosbags_api()
    src, dst = Path(source), Path(output)
    if not src.exists():
        raise BagError(f"input bag not found: {src}")
    if dst.exists():
        raise BagError(f"output {dst} exists already; choose a new path (nothing is "
                       "overwritten)")
    if not dst.absolute().parent.is_dir():
        raise BagError(f"output {dst}: folder '{dst.absolute().parent}' does not exist; "
                       "create it first")
    if storage is not None and storage not in FORMATS:
        raise BagError(f"unknown storage format {storage!r}; use one of {', '.join(FORMATS)}")
    try:
        with reader_cls(bag_folder(src)) as reader:
            input_topics = {name: info.msgtype for name, info in reader.topics.items()}
            counts = {name: info.msgcount for name, info in reader.topics.items()}
            connections = list(reader.connections)
            detected = _storage_of(reader)
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise BagError(f"cannot read bag {src}: {exc}") from None
    check_topic(src, input_topics, image_topic, IMAGE_TYPES)
    info_topic: Optional[str]
    if camera_info_topic == "auto":
        candidate = camera_info_next_to(image_topic)
        info_topic = candidate if input_topics.get(candidate) == CAMERA_INFO else None
    elif camera_info_topic in ("", "none"):
        info_topic = None
    else:
        info_topic = camera_info_topic
        check_topic(src, input_topics, info_topic, (CAMERA_INFO,), noun="camera_info")
    wanted = {"points": points, "confidence": confidence}
    written = {key: name for key, name in output_topics(image_topic, topics).items()
               if wanted.get(key, True)}
    _check_outputs(written, input_topics, copy_input)
    if copy_input:
        _check_copyable(src, connections, typestore)
    return BagJob(source=src, output=dst, image_topic=image_topic,
                  image_type=input_topics[image_topic], camera_info_topic=info_topic,
                  storage=storage or detected, frame_count=counts[image_topic],
                  topics=written, copy_input=copy_input)


def _load_camera_infos(job: BagJob, tolerance_s: float, use_latest: bool) -> CameraInfoPairing:
    pairing = CameraInfoPairing(tolerance_s, use_latest)
    if job.camera_info_topic:
        for msg, received_ns in iter_bag_messages(job.source, job.camera_info_topic,
                                                  (CAMERA_INFO,)):
            pairing.add(msg, stamp_ns(msg.header.stamp), received_ns)
    return pairing


class _NothingConverted(Exception):
    """Interrupted before the first frame: the staged bag is discarded."""


def _copy_connections(writer: Any, reader: Any, typestore: Any) -> dict[int, Any]:
    """Output connections for every input connection (same topic, type, definition, QoS)."""
    made: dict[tuple, Any] = {}
    by_id: dict[int, Any] = {}
    for conn in reader.connections:
        key = (conn.topic, conn.msgtype, conn.ext.serialization_format,
               repr(conn.ext.offered_qos_profiles))
        if key not in made:
            known = bool(conn.msgdef.data and conn.digest)
            made[key] = writer.add_connection(
                conn.topic, conn.msgtype, typestore=None if known else typestore,
                msgdef=conn.msgdef.data if known else None,
                rihs01=conn.digest if known else None,
                serialization_format=conn.ext.serialization_format,
                offered_qos_profiles=conn.ext.offered_qos_profiles)
        by_id[conn.id] = made[key]
    return by_id


def _load_sparse(source: Any, topic: Optional[str], tolerance_s: float) -> CameraInfoPairing:
    """The bag's sparse_depth messages, paired by stamp like the node (never a stale one)."""
    pairing = CameraInfoPairing(tolerance_s, use_latest=False)
    if topic:
        for msg, received_ns in iter_bag_messages(source, topic, (IMAGE,)):
            pairing.add(msg, stamp_ns(msg.header.stamp), received_ns)
    return pairing


def convert(job: BagJob, backend: DepthBackend, points: bool = False, points_rgb: bool = True,
            stride: int = 1, tolerance_s: float = 0.01, use_latest_camera_info: bool = True,
            progress: bool = True, stop: Callable[[], bool] = lambda: False,
            trust: Optional[TrustSettings] = None, sparse_topic: Optional[str] = None,
            sparse_tolerance_s: float = SPARSE_TOLERANCE_S) -> BagReport:
    """Run ``backend`` on every frame of ``job`` and write the new bag (the input records
    copied along when ``job.copy_input``); bad frames are skipped and counted in the report.
    ``stop()`` true ends the conversion early with a finished bag of what was done (nothing
    when no frame was converted yet).  ``trust``: the node's post-model steps (scale anchor
    with its temporal filter on the image stamps, edge filter) with ``sparse_topic`` as the
    node's sparse_depth input, paired within ``sparse_tolerance_s`` (the node's
    sparse_depth_tolerance_s)."""
    reader_cls, writer_cls, typestore = rosbags_api()
    from rosbags.rosbag2 import StoragePlugin
    from tqdm import tqdm
    trust = trust or TrustSettings()
    anchor = ScaleAnchor(trust)
    pipeline = DepthPipeline(backend, PipelineSettings(point_stride=max(1, int(stride))),
                             steps=[anchor, PointTrust(trust, "confidence" in job.topics)])
    sparse = _load_sparse(job.source, sparse_topic, sparse_tolerance_s) \
        if sparse_topic and trust.uses_sparse_depth else None
    build = BagMessages(typestore)
    report = BagReport()
    plugin = StoragePlugin.MCAP if job.storage == "mcap" else StoragePlugin.SQLITE3
    infos = _load_camera_infos(job, tolerance_s, use_latest_camera_info)
    try:
        with staged_folder(job.output) as path, \
                writer_cls(path, version=writer_cls.VERSION_LATEST,
                           storage_plugin=plugin) as writer, \
                reader_cls(bag_folder(job.source)) as reader, \
                tqdm(total=job.frame_count, unit="frame", desc="depth",
                     disable=not progress) as bar:
            out = {key: writer.add_connection(topic, OUTPUT_TYPES[key], typestore=typestore)
                   for key, topic in job.topics.items()}
            copies = _copy_connections(writer, reader, typestore) if job.copy_input else {}
            wanted = [c for c in reader.connections
                      if job.copy_input or c.topic == job.image_topic]
            for conn, received_ns, raw in reader.messages(connections=wanted):
                if stop():
                    report.interrupted = True
                    break
                if conn.id in copies:
                    writer.write(copies[conn.id], received_ns, raw)
                    report.copied += 1
                if conn.topic != job.image_topic:
                    continue
                bar.update(1)
                report.frames += 1
                try:
                    msg = typestore.deserialize_cdr(raw, conn.msgtype)
                    rgb = decode_image(msg)
                except Exception as exc:  # a corrupt record: skip it, as the node skips one
                    reason = "bad_image" if isinstance(exc, ConversionError) else "undecodable"
                    report.skipped[reason] += 1
                    report.first_problem = report.first_problem or f"{reason}: {exc}"
                    continue
                info = infos.match(stamp_ns(msg.header.stamp), received_ns)
                intrinsics = camera_info_to_intrinsics(info) if info is not None else None
                depth_in, problem = (None, "") if sparse is None else paired_sparse_depth(
                    sparse, stamp_ns(msg.header.stamp), rgb.shape[:2])
                result = pipeline.process(rgb, intrinsics, want_points=points,
                                          want_rgb=points_rgb,
                                          stamp_s=stamp_ns(msg.header.stamp) * 1e-9,
                                          sparse_depth_m=depth_in, sparse_problem=problem)
                for key, message in frame_messages(result, msg.header, info, build).items():
                    if key in out:
                        writer.write(out[key], received_ns,
                                     typestore.serialize_cdr(message, OUTPUT_TYPES[key]))
                        setattr(report, _REPORTED[key], getattr(report, _REPORTED[key]) + 1)
            if report.interrupted and report.depth == 0:
                raise _NothingConverted
        report.anchor = anchor.diagnostics()
    except _NothingConverted:
        pass
    return report
