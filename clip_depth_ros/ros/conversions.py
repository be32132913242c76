"""sensor_msgs <-> numpy conversions, byte-compatible with cv_bridge and sensor_msgs_py.

Neither cv_bridge nor sensor_msgs_py ships as a pip wheel, so this module is their stand-in.
The numpy core (decoding, layouts, intrinsics) lives in :mod:`clip_depth_ros.image_codec`,
shared with the rclpy-free bag converter; this module adds the rclpy message objects.

Decoding returns read-only numpy views of the message buffer wherever the layout allows: the
view holds a reference to the buffer, so it stays valid after the message is freed, and being
read-only it cannot silently edit the message (``.copy()`` it to write).  A decoded view does
pin the buffer: growing that same ``msg.data`` in place then raises ``BufferError``, while
assigning a new ``msg.data`` is fine.

Encoding fills ``data`` with an ``array.array('B')`` built in one copy, on a message created
with ``check_fields=True``: rclpy's generated setters then validate and store an ``array.array``
as is, whereas with checks off (the default) they copy it again, and that second copy into
fresh memory made a 640x480 xyzrgb cloud take about 5 ms instead of 1 ms.  ``bytes`` is no
alternative: with checks on it is validated element by element (about 60 ms for a 640x480
float image), and a ``memoryview`` is always iterated element by element.
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.image_codec import (ENCODINGS, ConversionError, camera_info_fields,
                                        camera_info_to_intrinsics, cloud_layout,
                                        compressed_to_rgb8, encode_compressed, encode_pixels,
                                        image_to_numpy, image_to_rgb8, pointcloud2_to_array)

__all__ = ["ConversionError", "camera_info_to_intrinsics", "compressed_to_rgb8",
           "image_to_numpy", "image_to_rgb8", "intrinsics_to_camera_info", "numpy_to_image",
           "pointcloud2_to_array", "points_to_pointcloud2", "rgb8_to_compressed"]


def _new_message(msg_type: type):
    """A message whose setters validate and keep an ``array.array`` instead of copying it."""
    try:
        return msg_type(check_fields=True)
    except (TypeError, AssertionError):  # before Jazzy: no check_fields, arrays kept as is
        return msg_type()


def _to_uint8_array(values: np.ndarray) -> array.array:
    """One-copy array.array('B') of an array's bytes in C order, the type rclpy stores as is."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return out


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Encode an array as an Image (step = width x bytes per pixel, little-endian)."""
    name, pixels = encode_pixels(array, encoding)
    height, width = pixels.shape[:2]
    msg = _new_message(Image)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.encoding = name
    msg.is_bigendian = 0
    msg.step = int(width * ENCODINGS[name].bytes_per_pixel)
    msg.data = _to_uint8_array(pixels)
    return msg


def rgb8_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Header | None = None,
                       jpeg_quality: int = 95, png_level: int = 3) -> CompressedImage:
    """Encode an HxWx3 uint8 RGB array as jpeg or png the way image_transport's plugin does."""
    format_field, encoded = encode_compressed(rgb, fmt, jpeg_quality, png_level)
    msg = _new_message(CompressedImage)
    if header is not None:
        msg.header = header
    msg.format = format_field
    msg.data = _to_uint8_array(encoded)
    return msg


def points_to_pointcloud2(body: np.ndarray, header: Header) -> PointCloud2:
    """Build a PointCloud2 (x, y, z float32, + packed 0x00RRGGBB rgb float32) from a cloud
    body (``FrameOutputs.cloud``, ``frame.cloud_body``).

    An HxWxC input gives an organized cloud; an NxC input gives a 1xN cloud.  NaN marks
    invalid points, so ``is_dense`` is False.
    """
    cloud, names = cloud_layout(body)
    height, width = cloud.shape[:2]
    msg = _new_message(PointCloud2)
    msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(names)]
    msg.is_bigendian = False
    msg.point_step = 4 * len(names)
    msg.row_step = msg.point_step * int(width)
    msg.is_dense = False
    msg.data = _to_uint8_array(cloud)
    return msg


def intrinsics_to_camera_info(intrinsics: Intrinsics, header: Header,
                              template: CameraInfo | None = None) -> CameraInfo:
    """CameraInfo with K and P = [K | t] for these intrinsics (t: template's, scaled), size set.

    The template's P translation is scaled by the fx (Tx) and fy (Ty) ratios, as image_proc's
    resize does; distortion_model, D and R are copied from it (default plumb_bob, zeros, I).
    Binning and ROI are left at zero since width/height describe the published image itself.
    """
    fields = camera_info_fields(intrinsics, template)
    msg = _new_message(CameraInfo)
    msg.header = header
    msg.width, msg.height = fields["width"], fields["height"]
    msg.distortion_model = fields["distortion_model"]
    msg.d = array.array("d", fields["d"])
    msg.r, msg.k, msg.p = fields["r"], fields["k"], fields["p"]
    return msg


class RosMessageKit:
    """rclpy message construction for ``frame.frame_messages`` (the node, the benchmarks)."""

    @staticmethod
    def image(array: np.ndarray, encoding: str, header: Header) -> Image:
        """sensor_msgs/Image."""
        return numpy_to_image(array, encoding, header)

    @staticmethod
    def camera_info(intrinsics: Intrinsics, header: Header,
                    template: CameraInfo | None) -> CameraInfo:
        """sensor_msgs/CameraInfo."""
        return intrinsics_to_camera_info(intrinsics, header, template)

    @staticmethod
    def pointcloud2(body: np.ndarray, header: Header) -> PointCloud2:
        """sensor_msgs/PointCloud2."""
        return points_to_pointcloud2(body, header)
