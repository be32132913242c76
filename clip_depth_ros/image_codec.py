"""The numpy core of the sensor_msgs conversions, free of rclpy.

Decoders read any object with the standard message fields (``encoding``, ``height``, ``width``,
``step``, ``is_bigendian``, ``data`` for an Image; ``format``, ``data`` for a CompressedImage;
``k``, ``p``, ``width``, ``height`` for a CameraInfo; the PointCloud2 fields), so rclpy messages
(clip_depth_ros.ros.conversions) and rosbags messages (clip_depth_ros.bag) share one
implementation.  Encoders return plain arrays and field values; building the message object
is left to the caller.

Decoding returns read-only numpy views of the message buffer wherever the layout allows: the
view holds a reference to the buffer, so it stays valid after the message is freed, and being
read-only it cannot silently edit the message (``.copy()`` it to write).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np

from .errors import ClipDepthError
from .geometry import Intrinsics

POINTFIELD_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


class ConversionError(ClipDepthError, ValueError):
    """A message or array that cannot be converted: malformed, inconsistent or unsupported."""


@dataclass(frozen=True)
class _Encoding:
    dtype: np.dtype  # little-endian element type
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


_U8, _U16, _F32 = np.dtype("u1"), np.dtype("<u2"), np.dtype("<f4")
ENCODINGS = {
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
# Newer sensor_msgs/image_encodings.hpp names for the same two layouts, and the generic
# OpenCV type names cv_bridge gives a uint8 image in passthrough (OpenCV's order: BGR, BGRA).
_ALIASES = {"uyvy": "yuv422", "yuyv": "yuv422_yuy2", "8UC1": "mono8", "8UC3": "bgr8",
            "8UC4": "bgra8"}
_SUPPORTED = ", ".join(list(ENCODINGS) + list(_ALIASES))
_DEPTH_LIKE = ("16UC1", "32FC1")
# what the model accepts as its colour input: exactly these (depth-like images are refused)
IMAGE_INPUT_ENCODINGS = tuple(n for n in list(ENCODINGS) + list(_ALIASES)
                              if _ALIASES.get(n, n) not in _DEPTH_LIKE)
_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}
_COMPRESSED_EXT = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}


def canonical_encoding(encoding: str) -> str:
    """The encoding name with aliases resolved; ConversionError for an unsupported one."""
    name = _ALIASES.get(encoding, encoding)
    if name not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r}; supported: {_SUPPORTED}")
    return name


def message_buffer(data: Any) -> memoryview:
    """The raw bytes of a uint8 sequence field (array.array, numpy array; bytes or lists too)."""
    try:
        return memoryview(data).cast("B")
    except TypeError:
        try:
            return memoryview(bytes(data))
        except (TypeError, ValueError) as exc:
            raise ConversionError(f"message data is not a byte sequence: {exc}") from None


def image_to_numpy(msg: Any) -> np.ndarray:
    """Decode an Image to its natural array (HxW, HxWx2/3/4), native byte order, read-only.

    Honours ``step`` (row padding, odd steps) and ``is_bigendian`` for 16/32-bit encodings.
    Data longer than ``height * step`` is accepted and the extra bytes are ignored.  The result
    is a zero-copy view unless a byte swap or an unaligned 16/32-bit layout forces a copy.
    """
    name = canonical_encoding(msg.encoding)
    enc = ENCODINGS[name]
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
    buffer = message_buffer(msg.data)
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


def image_to_rgb8(msg: Any) -> np.ndarray:
    """Decode a colour or mono Image to a contiguous HxWx3 uint8 RGB array for the model.

    Unpadded rgb8 comes back as a read-only view of the message; everything else is a new array.
    """
    name = _ALIASES.get(msg.encoding, msg.encoding)
    if name not in IMAGE_INPUT_ENCODINGS:
        what = ("a depth-like image; the model needs a colour or mono image"
                if name in _DEPTH_LIKE else "not an image encoding the model takes")
        raise ConversionError(f"unsupported image encoding {msg.encoding!r} ({what}); "
                              f"supported: {', '.join(IMAGE_INPUT_ENCODINGS)}")
    pixels = image_to_numpy(msg)
    if name == "rgb8":
        return np.ascontiguousarray(pixels)  # still a zero-copy view when rows are unpadded
    if name == "mono16":
        pixels, name = (pixels >> 8).astype(np.uint8), "mono8"
    return cv2.cvtColor(pixels, _TO_RGB[name])


def encode_pixels(array: np.ndarray, encoding: str) -> tuple[str, np.ndarray]:
    """Check an array against an encoding: (canonical name, the pixels as little-endian).

    The Image fields follow: height, width = shape[:2]; step = width x bytes per pixel;
    is_bigendian 0; data = the returned array's bytes in C order.
    """
    name = canonical_encoding(encoding)
    enc = ENCODINGS[name]
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
    return name, pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)


def compressed_to_rgb8(msg: Any) -> np.ndarray:
    """Decode a jpeg/png CompressedImage to a contiguous HxWx3 uint8 RGB array."""
    if "compressedDepth" in msg.format:
        raise ConversionError(
            f"compressed format {msg.format!r} is a depth image; the model needs colour or mono")
    encoded = np.frombuffer(message_buffer(msg.data), dtype=np.uint8)
    if encoded.size == 0:
        raise ConversionError("compressed image has no data")
    bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(
            f"OpenCV could not decode the compressed image (format {msg.format!r}, "
            f"{encoded.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", jpeg_quality: int = 95,
                      png_level: int = 3) -> tuple[str, np.ndarray]:
    """(CompressedImage.format, encoded bytes) of an HxWx3 uint8 RGB array, as image_transport's
    compressed plugin writes them."""
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
    return f"rgb8; {'jpeg' if ext == '.jpg' else 'png'} compressed bgr8", encoded


def planes_body(x: np.ndarray, y: np.ndarray, z: np.ndarray,
                rgb: Optional[np.ndarray] = None) -> np.ndarray:
    """The cloud body of three (H, W) float32 planes (+ (H, W, 3) uint8 RGB) in one
    interleaving pass: what ``cloud_body`` makes of their (H, W, 3) stack, bit for bit."""
    planes = [x, y, z] + ([_packed_rgb(rgb)] if rgb is not None else [])
    return cv2.merge([np.ascontiguousarray(p, dtype=np.float32) for p in planes])


def _packed_rgb(colours: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float32 whose bits are 0x00RRGGBB, in one cv2 pass.

    Assumes a little-endian host (every ROS 2 tier-1 platform): the B, G, R, A bytes that
    cvtColor writes then read as the uint32 0xAARRGGBB."""
    bgra = cv2.cvtColor(np.ascontiguousarray(colours), cv2.COLOR_RGB2BGRA)
    packed = bgra.view(np.uint32)[:, :, 0]
    packed &= np.uint32(0x00FFFFFF)  # clear alpha: PCL / depth_image_proc leave it 0
    return packed.view(np.float32)


def interleave_xyzrgb(points: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """HxWx4 little-endian float32 of x, y, z and the 0x00RRGGBB colour bits."""
    if points.size == 0:
        return np.empty(points.shape[:2] + (4,), dtype=np.float32)
    # cv2 interleaves in one pass, several times faster than strided numpy writes.
    return cv2.merge([np.ascontiguousarray(points), _packed_rgb(colours)])


def cloud_body(points_xyz: np.ndarray, rgb: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W, 3) or (N, 3) float points (+ matching uint8 RGB) -> the PointCloud2 body: one
    (H, W, 3 | 4) float32 array of x, y, z (+ packed 0x00RRGGBB rgb); (N, 3) gives 1xN."""
    points = np.asarray(points_xyz)
    if points.ndim == 2 and points.shape[1] == 3:
        points = points[np.newaxis]
    if points.ndim != 3 or points.shape[2] != 3 or points.dtype.kind != "f":
        raise ConversionError(
            f"points need a float array of shape (H, W, 3) or (N, 3), got "
            f"{points.dtype.name} of shape {np.shape(points_xyz)}")
    points = points.astype(np.float32, copy=False)
    if rgb is None:
        return np.ascontiguousarray(points)
    colours = np.asarray(rgb)
    if colours.ndim == 2 and colours.shape[1] == 3:
        colours = colours[np.newaxis]
    if colours.shape != points.shape or colours.dtype != np.uint8:
        raise ConversionError(
            f"rgb needs a uint8 array of shape {points.shape}, got {colours.dtype.name} "
            f"of shape {np.shape(rgb)}")
    return interleave_xyzrgb(points, colours)


def cloud_layout(body: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A PointCloud2 body and its field names: (H, W, 3 | 4) or (N, 3 | 4) float32 x, y, z
    (+ packed 0x00RRGGBB rgb), as ``frame.cloud_body`` and the GPU path build it.

    Fields are FLOAT32 at offsets 0, 4, 8 (, 12); NaN marks invalid points; an (N, C) input
    gives a 1xN cloud.
    """
    points = np.asarray(body)
    if points.ndim == 2:
        points = points[np.newaxis]
    if points.ndim != 3 or points.shape[2] not in (3, 4) or points.dtype.kind != "f":
        raise ConversionError(
            f"a cloud body needs a float array of shape (H, W, 3 | 4) or (N, 3 | 4), got "
            f"{points.dtype.name} of shape {np.shape(body)}")
    names = ["x", "y", "z", "rgb"][:points.shape[2]]
    if points.shape[2] == 4 and points.dtype != np.float32:
        raise ConversionError("an xyzrgb body must be float32 (rgb is packed bits)")
    return np.ascontiguousarray(points).astype("<f4", copy=False), names


def pointcloud2_to_array(msg: Any) -> np.ndarray:
    """Read a PointCloud2's FLOAT32 fields into a packed HxW structured array (native order)."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    order = ">" if msg.is_bigendian else "<"
    names, shapes, offsets = [], [], []
    for field in msg.fields:
        if field.datatype != POINTFIELD_FLOAT32:
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
    buffer = message_buffer(msg.data)
    needed = (height - 1) * row_step + width * point_step
    if buffer.nbytes < needed:
        raise ConversionError(f"point cloud data has {buffer.nbytes} bytes, needs {needed}")
    layout = np.dtype({"names": names, "formats": [(order + "f4", s) for s in shapes],
                       "offsets": offsets, "itemsize": point_step})
    view = np.ndarray((height, width), dtype=layout, buffer=buffer, strides=(row_step, point_step))
    for name in names:
        packed[name] = view[name]
    return packed


def camera_info_to_intrinsics(msg: Any) -> Optional[Intrinsics]:
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


def camera_info_fields(intrinsics: Intrinsics, template: Any = None) -> dict[str, Any]:
    """CameraInfo field values with P = [K' | t] for these intrinsics (t: template's, scaled).

    The template's P translation is scaled by the fx (Tx) and fy (Ty) ratios, as image_proc's
    resize does; distortion_model, D and R are copied from it (default plumb_bob, zeros, I).
    K is the template's K scaled to this size when the template is this camera (its P, or K,
    scaled, gives these intrinsics): a raw, distorted camera keeps its own K next to its D
    (P is the rectified camera, which the points use); else K = the intrinsics.
    Binning and ROI stay zero since width/height describe the published image itself.
    Returns width, height, distortion_model, d (list), r, k, p (float64 arrays).
    """
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    k = intrinsics.matrix().ravel()
    tx = ty = tz = 0.0
    if template is None:
        distortion_model, d, r = "plumb_bob", [0.0] * 5, np.eye(3).ravel()
    else:
        distortion_model = template.distortion_model
        d = [float(x) for x in template.d]
        r = np.array(template.r, dtype=np.float64).ravel()
        tp = np.asarray(template.p, dtype=np.float64).ravel()
        tk = np.asarray(template.k, dtype=np.float64).ravel()
        src_fx = tp[0] if tp[0] != 0.0 else tk[0]
        src_fy = tp[5] if tp[5] != 0.0 else tk[4]
        tx = tp[3] * fx / src_fx if src_fx != 0.0 else 0.0
        ty = tp[7] * fy / src_fy if src_fy != 0.0 else 0.0
        tz = float(tp[11])
        own_k = _template_k(template, intrinsics)
        if own_k is not None:
            k = own_k
    return {
        "width": int(intrinsics.width), "height": int(intrinsics.height),
        "distortion_model": distortion_model, "d": d, "r": r, "k": k,
        "p": np.array([fx, 0.0, cx, tx, 0.0, fy, cy, ty, 0.0, 0.0, 1.0, tz], dtype=np.float64),
    }


def _template_k(template: Any, intrinsics: Intrinsics) -> Optional[np.ndarray]:
    """The template's own K scaled to ``intrinsics``' size, when the template describes the
    camera of ``intrinsics`` (its P or K, scaled the same way, gives them); else None."""
    source, tk = camera_info_to_intrinsics(template), np.asarray(template.k, np.float64).ravel()
    if source is None or tk.size != 9 or not (tk[0] > 0 and tk[4] > 0):
        return None
    size = (intrinsics.width, intrinsics.height)
    if not np.allclose(source.scaled_to(*size).matrix(), intrinsics.matrix(), 1e-6, 1e-6):
        return None  # other intrinsics than the template's (an override): K = them
    own = Intrinsics(tk[0], tk[4], tk[2], tk[5], source.width, source.height)
    return own.scaled_to(*size).matrix().ravel()
