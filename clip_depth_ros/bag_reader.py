"""Reading recordings: one way to open a bag, check a topic and iterate its messages and images.

Shared by ``clip-depth bag`` (clip_depth_ros.bag) and the training tools (CLIPSelf images,
DepthCLIP calibration frames), so every reader accepts the same paths (a rosbag2 folder, one
of its .mcap / .db3 files, or a ROS 1 .bag), names the same topics in its errors and decodes
images with the node's own decoders (:mod:`clip_depth_ros.image_codec`).

Pure Python: messages are deserialised by the ``rosbags`` library, never rclpy.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Container, Iterator, Optional, Sequence, Union

import numpy as np

from .errors import ClipDepthError
from .image_codec import ConversionError, compressed_to_rgb8, image_to_rgb8

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED)
PathLike = Union[str, Path]


class BagError(ClipDepthError, ValueError):
    """A problem with an input or output bag that stops the work (one-line message)."""


def rosbags_api() -> tuple[Any, Any, Any]:
    """(rosbag2 Reader, rosbag2 Writer, typestore) from the optional ``rosbags`` package."""
    try:
        from rosbags.rosbag2 import Reader, Writer
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise BagError("reading bags needs the 'rosbags' package: pip install rosbags "
                       "(or clip_depth_ros[bags])") from None
    return Reader, Writer, get_typestore(Stores.ROS2_KILTED)


def bag_folder(path: PathLike) -> Path:
    """The path a reader opens: a rosbag2 folder (a .mcap / .db3 file's folder) or a .bag."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    return path.parent if path.suffix in (".db3", ".mcap") else path


@contextmanager
def open_bag(path: PathLike) -> Iterator[Any]:
    """An open rosbags AnyReader of a bag (rosbag2 or ROS 1); BagError when unreadable."""
    _, _, typestore = rosbags_api()
    from rosbags.highlevel import AnyReader
    folder = bag_folder(path)
    try:
        reader = AnyReader([folder], default_typestore=typestore)
        reader.open()
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise BagError(f"cannot read bag {folder}: {exc}") from None
    try:
        yield reader
    finally:
        reader.close()


def check_topic(source: Any, topics: dict[str, str], topic: str,
                kinds: Sequence[str] = IMAGE_TYPES, noun: str = "image") -> str:
    """The message type of ``topic`` in a bag's {topic: type}; BagError naming the bag's
    topics of ``kinds`` when it is missing or carries another type."""
    msgtype = topics.get(topic)
    if msgtype is None:
        listing = [f"{t} ({m})" for t, m in sorted(topics.items()) if m in kinds]
        raise BagError(f"bag {source} has no topic '{topic}'; its {noun} topics: "
                       f"{', '.join(listing) if listing else 'none'}")
    if msgtype not in kinds:
        raise BagError(f"bag {source} has {msgtype} on '{topic}', an unsupported message "
                       f"type; use a topic of {' or '.join(kinds)}")
    return msgtype


def _connections(reader: Any, topic: str, kinds: Sequence[str]) -> list[Any]:
    topics = {c.topic: c.msgtype for c in reader.connections}
    check_topic(reader.paths[0], topics, topic, kinds)
    return [c for c in reader.connections if c.topic == topic]


def bag_topic_count(path: PathLike, topic: str, kinds: Sequence[str] = IMAGE_TYPES) -> int:
    """How many messages ``topic`` holds; BagError when it is missing or of another type."""
    with open_bag(path) as reader:
        return sum(c.msgcount for c in _connections(reader, topic, kinds))


def _records(path: PathLike, topic: str, kinds: Sequence[str],
             keep: Optional[Container[int]]) -> Iterator[tuple[Any, str, bytes, int]]:
    """(reader, message type, serialised record, receive ns) of the kept records in order."""
    with open_bag(path) as reader:
        connections = _connections(reader, topic, kinds)
        for index, (conn, received_ns, raw) in enumerate(
                reader.messages(connections=connections)):
            if keep is None or index in keep:
                yield reader, conn.msgtype, raw, received_ns


def iter_bag_messages(path: PathLike, topic: str, kinds: Sequence[str] = IMAGE_TYPES,
                      keep: Optional[Container[int]] = None) -> Iterator[tuple[Any, int]]:
    """(message, receive ns) of every record on ``topic``, or only of the record numbers in
    ``keep`` (the others are never deserialised)."""
    for reader, msgtype, raw, received_ns in _records(path, topic, kinds, keep):
        yield reader.deserialize(raw, msgtype), received_ns


def decode_image(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB of an Image or CompressedImage message, as the node decodes it."""
    return compressed_to_rgb8(msg) if hasattr(msg, "format") else image_to_rgb8(msg)


def iter_bag_images(path: PathLike, topic: str, keep: Optional[Container[int]] = None,
                    on_error: Optional[Callable[[str, Exception, int], None]] = None
                    ) -> Iterator[tuple[Any, np.ndarray, int]]:
    """(message, HxWx3 uint8 RGB, receive ns) of the images on ``topic`` (only the record
    numbers in ``keep`` when given).  A record that cannot be read ('undecodable') or decoded
    ('bad_image') goes to ``on_error(reason, error, receive ns)`` and is skipped; without
    ``on_error`` the error is raised."""
    for reader, msgtype, raw, received_ns in _records(path, topic, IMAGE_TYPES, keep):
        try:
            msg = reader.deserialize(raw, msgtype)
            rgb = decode_image(msg)
        except Exception as exc:  # a corrupt record: skip it, as the node skips one
            if on_error is None:
                raise
            on_error("bad_image" if isinstance(exc, ConversionError) else "undecodable", exc,
                     received_ns)
            continue
        yield msg, rgb, received_ns
