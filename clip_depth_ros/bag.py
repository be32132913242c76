"""Offline depth for recordings: rosbag2 (sqlite3 or MCAP) in, a new bag with depth out.

``clip-depth bag INPUT OUTPUT`` reads every Image or CompressedImage of one topic, runs a
backend on it and writes, under the image's namespace (``/camera/image_raw`` -> ``/camera``):

- ``<ns>/depth``              sensor_msgs/Image 32FC1, metres (REP 117/118)
- ``<ns>/depth/camera_info``  the paired camera_info with K and P scaled to the depth image
- ``<ns>/points``             sensor_msgs/PointCloud2 x y z (+ rgb), organized at stride 1

Every output keeps the input image's header (stamp, frame_id) and its receive timestamp in the
bag, exactly as the live node would publish it.  camera_info is paired by the node's own
policy (:class:`~clip_depth_ros.camera_sync.CameraInfoPairing`): the one of nearest stamp
within a tolerance, else (unless ``--no-latest-camera-info``) the latest one recorded
before the image.

Pure Python: messages are (de)serialised with the ``rosbags`` typestore, never rclpy.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .backends.base import DepthBackend
from .bag_reader import (CAMERA_INFO, IMAGE, IMAGE_TYPES, BagError, bag_folder, check_topic,
                         iter_bag_images, iter_bag_messages, rosbags_api)
from .camera_sync import CameraInfoPairing
from .geometry import Intrinsics
from .image_codec import (POINTFIELD_FLOAT32, camera_info_fields, camera_info_to_intrinsics,
                          cloud_layout, encode_pixels)
from .frame import frame_messages
from .pipeline import DepthPipeline, PipelineSettings
from .stamps import stamp_ns

DEPTH_IMAGE, POINTS = IMAGE, "sensor_msgs/msg/PointCloud2"
FORMATS = ("sqlite3", "mcap")


def image_namespace(image_topic: str) -> str:
    """The camera namespace of an image topic: /camera/image_raw[/compressed] -> /camera."""
    topic = image_topic.rstrip("/")
    if topic.endswith("/compressed"):
        topic = topic[: -len("/compressed")]
    return topic.rsplit("/", 1)[0] if "/" in topic else ""


def output_topics(image_topic: str) -> dict[str, str]:
    """Output topic names for an image topic: depth, info, points."""
    ns = image_namespace(image_topic)
    return {"depth": f"{ns}/depth", "info": f"{ns}/depth/camera_info", "points": f"{ns}/points"}


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
    topics: dict[str, str] = field(default_factory=dict)


@dataclass
class BagReport:
    """What a conversion did."""

    frames: int = 0
    depth: int = 0
    camera_info: int = 0
    points: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_problem: str = ""


def _storage_of(reader: Any) -> str:
    """'mcap' or 'sqlite3': the storage plugin of an open reader (directory or single file)."""
    storages = getattr(reader.storage, "storages", None) or [reader.storage]
    return "mcap" if "mcap" in type(storages[0]).__name__.lower() else "sqlite3"


def prepare(source: str, output: str, image_topic: str = "/camera/image_raw",
            camera_info_topic: str = "auto", storage: Optional[str] = None) -> BagJob:
    """Check the input and output before any model is loaded; BagError says what is wrong."""
    reader_cls, _, _ = rosbags_api()
    src, dst = Path(source), Path(output)
    if not src.exists():
        raise BagError(f"input bag not found: {src}")
    if dst.exists():
        raise BagError(f"output {dst} exists already; choose a new path (nothing is "
                       "overwritten)")
    if storage is not None and storage not in FORMATS:
        raise BagError(f"unknown storage format {storage!r}; use one of {', '.join(FORMATS)}")
    try:
        with reader_cls(bag_folder(src)) as reader:
            topics = {name: info.msgtype for name, info in reader.topics.items()}
            counts = {name: info.msgcount for name, info in reader.topics.items()}
            detected = _storage_of(reader)
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise BagError(f"cannot read bag {src}: {exc}") from None
    check_topic(src, topics, image_topic, IMAGE_TYPES)
    info_topic: Optional[str]
    if camera_info_topic == "auto":
        candidate = f"{image_namespace(image_topic)}/camera_info"
        info_topic = candidate if topics.get(candidate) == CAMERA_INFO else None
    elif camera_info_topic in ("", "none"):
        info_topic = None
    else:
        info_topic = camera_info_topic
        check_topic(src, topics, info_topic, (CAMERA_INFO,), noun="camera_info")
    return BagJob(source=src, output=dst, image_topic=image_topic,
                  image_type=topics[image_topic], camera_info_topic=info_topic,
                  storage=storage or detected, frame_count=counts[image_topic],
                  topics=output_topics(image_topic))


class _Messages:
    """Builds the output messages as rosbags objects, with the layouts the node publishes."""

    def __init__(self, typestore: Any):
        self.types = typestore.types

    def image(self, array: np.ndarray, encoding: str, header: Any) -> Any:
        """sensor_msgs/Image (rosbags type)."""
        name, pixels = encode_pixels(array, encoding)
        height, width = pixels.shape[:2]
        step = width * pixels.dtype.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
        return self.types[IMAGE](header=header, height=height, width=width, encoding=name,
                                 is_bigendian=0, step=step,
                                 data=np.ascontiguousarray(pixels).reshape(-1).view(np.uint8))

    def camera_info(self, intrinsics: Intrinsics, header: Any, template: Any) -> Any:
        """sensor_msgs/CameraInfo (rosbags type)."""
        values = camera_info_fields(intrinsics, template)
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.types[CAMERA_INFO](
            header=header, height=values["height"], width=values["width"],
            distortion_model=values["distortion_model"],
            d=np.asarray(values["d"], dtype=np.float64), k=values["k"], r=values["r"],
            p=values["p"], binning_x=0, binning_y=0, roi=roi)

    def pointcloud2(self, body: np.ndarray, header: Any) -> Any:
        """sensor_msgs/PointCloud2 (rosbags type)."""
        cloud, names = cloud_layout(body)
        height, width = cloud.shape[:2]
        point_field = self.types["sensor_msgs/msg/PointField"]
        fields = [point_field(name=n, offset=4 * i, datatype=POINTFIELD_FLOAT32, count=1)
                  for i, n in enumerate(names)]
        return self.types[POINTS](
            header=header, height=height, width=width, fields=fields, is_bigendian=False,
            point_step=4 * len(names), row_step=4 * len(names) * width,
            data=np.ascontiguousarray(cloud).reshape(-1).view(np.uint8), is_dense=False)


_REPORTED = {"depth": "depth", "info": "camera_info", "points": "points"}


def _load_camera_infos(job: BagJob, tolerance_s: float, use_latest: bool) -> CameraInfoPairing:
    pairing = CameraInfoPairing(tolerance_s, use_latest)
    if job.camera_info_topic:
        for msg, received_ns in iter_bag_messages(job.source, job.camera_info_topic,
                                                  (CAMERA_INFO,)):
            pairing.add(msg, stamp_ns(msg.header.stamp), received_ns)
    return pairing


def convert(job: BagJob, backend: DepthBackend, points: bool = True, points_rgb: bool = True,
            stride: int = 1, tolerance_s: float = 0.01, use_latest_camera_info: bool = True,
            progress: bool = True) -> BagReport:
    """Run ``backend`` on every frame of ``job`` and write the new bag; bad frames are skipped
    and counted in the report."""
    _, writer_cls, typestore = rosbags_api()
    from rosbags.rosbag2 import StoragePlugin
    from tqdm import tqdm
    pipeline = DepthPipeline(backend, PipelineSettings(point_stride=max(1, int(stride))))
    build = _Messages(typestore)
    report = BagReport()
    plugin = StoragePlugin.MCAP if job.storage == "mcap" else StoragePlugin.SQLITE3
    types = {"depth": DEPTH_IMAGE, "info": CAMERA_INFO, "points": POINTS}
    infos = _load_camera_infos(job, tolerance_s, use_latest_camera_info)
    with writer_cls(job.output, version=writer_cls.VERSION_LATEST,
                    storage_plugin=plugin) as writer, \
            tqdm(total=job.frame_count, unit="frame", desc="depth", disable=not progress) as bar:
        out = {key: writer.add_connection(topic, types[key], typestore=typestore)
               for key, topic in job.topics.items() if key != "points" or points}

        def skip(reason: str, exc: Exception, received_ns: int) -> None:
            bar.update(1)
            report.frames += 1
            report.skipped[reason] += 1
            report.first_problem = report.first_problem or f"{reason}: {exc}"

        for msg, rgb, received_ns in iter_bag_images(job.source, job.image_topic,
                                                     on_error=skip):
            bar.update(1)
            report.frames += 1
            info = infos.match(stamp_ns(msg.header.stamp), received_ns)
            intrinsics = camera_info_to_intrinsics(info) if info is not None else None
            result = pipeline.process(rgb, intrinsics, want_points=points, want_rgb=points_rgb)
            for key, message in frame_messages(result, msg.header, info, build).items():
                writer.write(out[key], received_ns, typestore.serialize_cdr(message, types[key]))
                setattr(report, _REPORTED[key], getattr(report, _REPORTED[key]) + 1)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `clip-depth bag` options."""
    parser.add_argument("input", help="rosbag2 directory, or a single .mcap / .db3 file")
    parser.add_argument("output", help="new bag directory (must not exist)")
    parser.add_argument("--image-topic", default="/camera/image_raw",
                        help="Image or CompressedImage topic (default: %(default)s)")
    parser.add_argument("--camera-info-topic", default="auto",
                        help="CameraInfo topic; 'auto' = <image ns>/camera_info when the bag "
                             "has it, 'none' = depth only (default: %(default)s)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--backbone-weights", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", action=argparse.BooleanOptionalAction, default=True,
                        help="write <ns>/points (needs camera_info)")
    parser.add_argument("--points-rgb", action=argparse.BooleanOptionalAction, default=True,
                        help="xyzrgb points (else xyz)")
    parser.add_argument("--stride", type=int, default=1,
                        help="point cloud decimation: every Nth row and column (1 = organized "
                             "cloud of the full image)")
    parser.add_argument("--camera-info-tolerance", type=float, default=0.01,
                        help="pair camera_info within this many seconds of the image stamp")
    latest = parser.add_mutually_exclusive_group()
    latest.add_argument("--use-latest-camera-info", dest="use_latest_camera_info",
                        action="store_true", default=True,
                        help="with no camera_info within the tolerance, use the latest one "
                             "recorded before the image, as the node's use_latest_camera_info "
                             "(default)")
    latest.add_argument("--no-latest-camera-info", dest="use_latest_camera_info",
                        action="store_false",
                        help="pair camera_info by stamp only: frames without one within the "
                             "tolerance get depth only")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="storage of the output (default: the input's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace,
        backend_factory: Optional[Callable[..., DepthBackend]] = None) -> int:
    """`clip-depth bag`: check, load the model, convert, print a summary; 2 on a clear error."""
    if args.stride < 1:
        print("clip-depth bag: error: --stride must be >= 1", file=sys.stderr)
        return 2
    try:
        job = prepare(args.input, args.output, args.image_topic, args.camera_info_topic,
                      args.format)
        if backend_factory is None:
            from .backends import create_backend
            backend_factory = create_backend
        try:
            backend = backend_factory("torch", model=args.model, weights=args.weights,
                                      backbone_weights=args.backbone_weights,
                                      device=args.device)
        except Exception as exc:  # any load failure: one clear line, no traceback
            raise BagError(f"could not load the model: {exc}") from None
        if job.camera_info_topic is None:
            print(f"no camera_info for {job.image_topic}: writing depth only, no points",
                  file=sys.stderr)
        report = convert(job, backend, points=args.points, points_rgb=args.points_rgb,
                         stride=args.stride, tolerance_s=args.camera_info_tolerance,
                         use_latest_camera_info=args.use_latest_camera_info,
                         progress=not args.no_progress)
    except BagError as exc:
        print(f"clip-depth bag: error: {exc}", file=sys.stderr)
        return 2
    skipped = sum(report.skipped.values())
    print(f"{report.frames} frames from {job.image_topic} -> {job.output} ({job.storage}): "
          f"{report.depth} depth, {report.camera_info} camera_info, {report.points} points"
          + (f"; skipped {skipped} ({report.first_problem})" if skipped else ""))
    return 0
