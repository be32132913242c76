"""sensor_msgs <-> numpy conversions, byte-compatible with cv_bridge and sensor_msgs_py.

Neither cv_bridge nor sensor_msgs_py ships as a pip wheel, so this module is their stand-in.

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
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from clip_depth_ros.geometry import Intrinsics


class ConversionError(ValueError):
    """A message or array that cannot be converted: malformed, inconsistent or unsupported."""


@dataclass(frozen=True)
class _Encoding:
    dtype: np.dtype  # little-endian element type
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


_U8, _U16, _F32 = np.dtype("u1"), np.dtype("<u2"), np.dtype("<f4")
_ENCODINGS = {
    "rgb8": _Encoding(_U8, 3),
    "bgr8": _Encoding(_U8, 3),
    "rgba8": _Encoding(_U8, 4),
    "bgra8": _Encoding(_U8, 4),
    "mono8": _Encoding(_U8, 1),
    "mono16": _Encoding(_U16, 1),
    "16UC1": _Encoding(_U16, 1),
    "32FC1": _Encoding(_F32, 1),
    "yuv422": _Encoding(_U8, 2),  # UYVY byte order
    "yuv422_yuy2": _Encoding(_U8, 2),  # YUYV byte order
}
# Newer sensor_msgs/image_encodings.hpp names for the same two layouts.
_ALIASES = {"uyvy": "yuv422", "yuyv": "yuv422_yuy2"}
_SUPPORTED = ", ".join(list(_ENCODINGS) + list(_ALIASES))
_DEPTH_LIKE = ("16UC1", "32FC1")
_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}
_COMPRESSED_EXT = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}


def _canonical_encoding(encoding: str) -> str:
    """The encoding name with aliases resolved; ConversionError for an unsupported one."""
    name = _ALIASES.get(encoding, encoding)
    if name not in _ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r}; supported: {_SUPPORTED}")
    return name


def _message_buffer(data) -> memoryview:
    """The raw bytes of a uint8 sequence field (normally array.array; bytes or lists tolerated)."""
    try:
        return memoryview(data).cast("B")
    except TypeError:
        try:
            return memoryview(bytes(data))
        except (TypeError, ValueError) as exc:
            raise ConversionError(f"message data is not a byte sequence: {exc}") from None


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


def image_to_numpy(msg: Image) -> np.ndarray:
    """Decode an Image to its natural array (HxW, HxWx2/3/4), native byte order, read-only.

    Honours ``step`` (row padding, odd steps) and ``is_bigendian`` for 16/32-bit encodings.
    Data longer than ``height * step`` is accepted and the extra bytes are ignored.  The result
    is a zero-copy view unless a byte swap or an unaligned 16/32-bit layout forces a copy.
    """
    name = _canonical_encoding(msg.encoding)
    enc = _ENCODINGS[name]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError(f"{name} image has zero size ({width}x{height})")
    if enc.channels == 2 and width % 2:
        raise ConversionError(f"{name} packs two pixels per macropixel; width {width} is odd")
    row_bytes = width * enc.bytes_per_pixel
    if step < row_bytes:
        raise ConversionError(
            f"{name} image step {step} is smaller than width {width} x {enc.bytes_per_pixel} "
            f"bytes per pixel = {row_bytes}")
    buffer = _message_buffer(msg.data)
    if buffer.nbytes < height * step:
        raise ConversionError(
            f"{name} image data has {buffer.nbytes} bytes, needs height {height} x step {step} "
            f"= {height * step}")
    dtype = enc.dtype
    if dtype.itemsize > 1 and msg.is_bigendian:
        dtype = dtype.newbyteorder(">")
    shape: tuple[int, ...] = (height, width)
    strides: tuple[int, ...] = (step, enc.bytes_per_pixel)
    if enc.channels > 1:
        shape, strides = shape + (enc.channels,), strides + (dtype.itemsize,)
    view = np.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides)
    if not dtype.isnative:
        view = view.astype(dtype.newbyteorder("="))
    elif not view.flags.aligned:
        view = np.ascontiguousarray(view)
    view.flags.writeable = False
    return view


def image_to_rgb8(msg: Image) -> np.ndarray:
    """Decode a colour or mono Image to a contiguous HxWx3 uint8 RGB array for the model.

    Unpadded rgb8 comes back as a read-only view of the message; everything else is a new array.
    """
    name = _canonical_encoding(msg.encoding)
    if name in _DEPTH_LIKE:
        raise ConversionError(
            f"encoding {name} is a depth-like image; the model needs a colour or mono image "
            f"(rgb8, bgr8, rgba8, bgra8, mono8, mono16, yuv422, yuv422_yuy2)")
    pixels = image_to_numpy(msg)
    if name == "rgb8":
        return np.ascontiguousarray(pixels)  # still a zero-copy view when rows are unpadded
    if name == "mono16":
        pixels, name = (pixels >> 8).astype(np.uint8), "mono8"
    return cv2.cvtColor(pixels, _TO_RGB[name])


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Encode an array as an Image (step = width x bytes per pixel, little-endian)."""
    name = _canonical_encoding(encoding)
    enc = _ENCODINGS[name]
    pixels = np.asarray(array)
    if enc.channels == 1 and pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    want_ndim = 2 if enc.channels == 1 else 3
    if (pixels.ndim != want_ndim or (want_ndim == 3 and pixels.shape[2] != enc.channels)
            or pixels.dtype.newbyteorder("<") != enc.dtype):
        want = "(H, W)" if want_ndim == 2 else f"(H, W, {enc.channels})"
        raise ConversionError(
            f"{name} needs a {enc.dtype.name} array of shape {want}, "
            f"got {pixels.dtype.name} of shape {pixels.shape}")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise ConversionError(f"cannot encode an empty {pixels.shape} array as an image")
    if enc.channels == 2 and width % 2:
        raise ConversionError(f"{name} packs two pixels per macropixel; width {width} is odd")
    msg = _new_message(Image)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.encoding = name
    msg.is_bigendian = 0
    msg.step = int(width * enc.bytes_per_pixel)
    msg.data = _to_uint8_array(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False))
    return msg


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """Decode a jpeg/png CompressedImage to a contiguous HxWx3 uint8 RGB array."""
    if "compressedDepth" in msg.format:
        raise ConversionError(
            f"compressed format {msg.format!r} is a depth image; the model needs colour or mono")
    encoded = np.frombuffer(_message_buffer(msg.data), dtype=np.uint8)
    if encoded.size == 0:
        raise ConversionError("compressed image has no data")
    bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(
            f"OpenCV could not decode the compressed image (format {msg.format!r}, "
            f"{encoded.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb8_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Header | None = None,
                       jpeg_quality: int = 95, png_level: int = 3) -> CompressedImage:
    """Encode an HxWx3 uint8 RGB array as jpeg or png the way image_transport's plugin does."""
    ext = _COMPRESSED_EXT.get(fmt.lower())
    if ext is None:
        raise ConversionError(f"unsupported compressed format {fmt!r}; use jpeg or png")
    pixels = np.asarray(rgb)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8 or pixels.size == 0:
        raise ConversionError(
            f"rgb8 needs a uint8 array of shape (H, W, 3), got {pixels.dtype.name} "
            f"of shape {pixels.shape}")
    if ext == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]
    ok, encoded = cv2.imencode(ext, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ConversionError(f"OpenCV could not encode the image as {fmt}")
    msg = _new_message(CompressedImage)
    if header is not None:
        msg.header = header
    msg.format = f"rgb8; {'jpeg' if ext == '.jpg' else 'png'} compressed bgr8"
    msg.data = _to_uint8_array(encoded)
    return msg


def _float32_field(name: str, offset: int) -> PointField:
    return PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)


def _interleave_xyzrgb(points: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """HxWx4 little-endian float32 of x, y, z and the 0x00RRGGBB colour bits.

    Assumes a little-endian host (every ROS 2 tier-1 platform): the B, G, R, A bytes that
    cvtColor writes then read as the uint32 0xAARRGGBB.
    """
    if points.size == 0:
        return np.empty(points.shape[:2] + (4,), dtype=np.float32)
    # cv2 interleaves in one pass, several times faster than strided numpy writes.
    bgra = cv2.cvtColor(np.ascontiguousarray(colours), cv2.COLOR_RGB2BGRA)
    packed = bgra.view(np.uint32)[:, :, 0]
    packed &= np.uint32(0x00FFFFFF)  # clear alpha: PCL / depth_image_proc leave it 0
    return cv2.merge([np.ascontiguousarray(points), packed.view(np.float32)])


def points_to_pointcloud2(points_xyz: np.ndarray, header: Header,
                          rgb: np.ndarray | None = None) -> PointCloud2:
    """Build a PointCloud2 (x, y, z float32, + packed 0x00RRGGBB rgb float32) from HxWx3 points.

    An HxWx3 input gives an organized cloud; an Nx3 input gives a 1xN cloud.  NaN marks
    invalid points, so ``is_dense`` is False.
    """
    points = np.asarray(points_xyz)
    if points.ndim == 2 and points.shape[1] == 3:
        points = points[np.newaxis]
    if points.ndim != 3 or points.shape[2] != 3 or points.dtype.kind != "f":
        raise ConversionError(
            f"points need a float array of shape (H, W, 3) or (N, 3), got "
            f"{points.dtype.name} of shape {np.shape(points_xyz)}")
    height, width = points.shape[:2]
    fields = [_float32_field("x", 0), _float32_field("y", 4), _float32_field("z", 8)]
    if rgb is None:
        cloud = points.astype("<f4", copy=False)
    else:
        colours = np.asarray(rgb)
        if colours.ndim == 2 and colours.shape[1] == 3:
            colours = colours[np.newaxis]
        if colours.shape != points.shape or colours.dtype != np.uint8:
            raise ConversionError(
                f"rgb needs a uint8 array of shape {points.shape}, got {colours.dtype.name} "
                f"of shape {np.shape(rgb)}")
        cloud = _interleave_xyzrgb(points.astype(np.float32, copy=False), colours)
        fields.append(_float32_field("rgb", 12))
    msg = _new_message(PointCloud2)
    msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = 4 * len(fields)
    msg.row_step = msg.point_step * int(width)
    msg.is_dense = False
    msg.data = _to_uint8_array(cloud)
    return msg


def pointcloud2_to_array(msg: PointCloud2) -> np.ndarray:
    """Read a PointCloud2's FLOAT32 fields into a packed HxW structured array (native order)."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    order = ">" if msg.is_bigendian else "<"
    names, shapes, offsets = [], [], []
    for field in msg.fields:
        if field.datatype != PointField.FLOAT32:
            continue
        count = max(int(field.count), 1)
        if field.offset + 4 * count > point_step:
            raise ConversionError(
                f"field {field.name!r} (offset {field.offset}, count {count}) does not fit "
                f"in point_step {point_step}")
        if field.name in names:
            raise ConversionError(f"point cloud has two FLOAT32 fields named {field.name!r}")
        names.append(field.name)
        shapes.append(() if count == 1 else (count,))
        offsets.append(int(field.offset))
    if not names:
        raise ConversionError("point cloud has no FLOAT32 fields")
    packed = np.empty((height, width), dtype=[(n, "=f4", s) for n, s in zip(names, shapes)])
    if height == 0 or width == 0:
        return packed
    if row_step < width * point_step:
        raise ConversionError(
            f"row_step {row_step} is smaller than width {width} x point_step {point_step}")
    buffer = _message_buffer(msg.data)
    needed = (height - 1) * row_step + width * point_step
    if buffer.nbytes < needed:
        raise ConversionError(f"point cloud data has {buffer.nbytes} bytes, needs {needed}")
    layout = np.dtype({"names": names, "formats": [(order + "f4", s) for s in shapes],
                       "offsets": offsets, "itemsize": point_step})
    view = np.ndarray((height, width), dtype=layout, buffer=buffer, strides=(row_step, point_step))
    for name in names:
        packed[name] = view[name]
    return packed


def camera_info_to_intrinsics(msg: CameraInfo) -> Intrinsics | None:
    """Intrinsics from P (or K when P's fx is 0, as depth_image_proc does); None when invalid.

    width/height are the message's; binning and ROI are not applied (a caller whose image size
    differs scales with ``Intrinsics.scaled_to``).
    """
    p = np.asarray(msg.p, dtype=np.float64).ravel()
    k = np.asarray(msg.k, dtype=np.float64).ravel()
    if p.size == 12 and p[0] != 0.0:
        fx, fy, cx, cy = p[0], p[5], p[2], p[6]
    elif k.size == 9:
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    else:
        return None
    intrinsics = Intrinsics(fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy),
                            width=int(msg.width), height=int(msg.height))
    return intrinsics if intrinsics.is_valid() else None


def intrinsics_to_camera_info(intrinsics: Intrinsics, header: Header,
                              template: CameraInfo | None = None) -> CameraInfo:
    """CameraInfo with K and P = [K | t] for these intrinsics (t: template's, scaled), size set.

    The template's P translation is scaled by the fx (Tx) and fy (Ty) ratios, as image_proc's
    resize does; distortion_model, D and R are copied from it (default plumb_bob, zeros, I).
    Binning and ROI are left at zero since width/height describe the published image itself.
    """
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    tx = ty = tz = 0.0
    msg = _new_message(CameraInfo)
    msg.header = header
    msg.width, msg.height = int(intrinsics.width), int(intrinsics.height)
    if template is None:
        msg.distortion_model = "plumb_bob"
        msg.d = array.array("d", [0.0] * 5)
        msg.r = np.eye(3).ravel()
    else:
        msg.distortion_model = template.distortion_model
        msg.d = array.array("d", template.d)
        msg.r = np.array(template.r, dtype=np.float64).ravel()
        tp = np.asarray(template.p, dtype=np.float64).ravel()
        tk = np.asarray(template.k, dtype=np.float64).ravel()
        src_fx = tp[0] if tp[0] != 0.0 else tk[0]
        src_fy = tp[5] if tp[5] != 0.0 else tk[4]
        tx = tp[3] * fx / src_fx if src_fx != 0.0 else 0.0
        ty = tp[7] * fy / src_fy if src_fy != 0.0 else 0.0
        tz = float(tp[11])
    msg.k = np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], dtype=np.float64)
    msg.p = np.array([fx, 0.0, cx, tx, 0.0, fy, cy, ty, 0.0, 0.0, 1.0, tz], dtype=np.float64)
    return msg
