"""Message <-> numpy conversions: layouts cv_bridge / sensor_msgs_py / depth_image_proc produce."""
from __future__ import annotations

import array
import gc

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.image_codec import cloud_body
from clip_depth_ros.ros.conversions import (
    ConversionError,
    camera_info_to_intrinsics,
    compressed_to_rgb8,
    image_to_numpy,
    image_to_rgb8,
    intrinsics_to_camera_info,
    numpy_to_image,
    pointcloud2_to_array,
    points_to_pointcloud2,
    rgb8_to_compressed,
)

RNG = np.random.default_rng(0)
H, W = 6, 8

# encoding -> (dtype, trailing shape) of its natural array
NATURAL = {
    "rgb8": (np.uint8, (3,)),
    "bgr8": (np.uint8, (3,)),
    "rgba8": (np.uint8, (4,)),
    "bgra8": (np.uint8, (4,)),
    "mono8": (np.uint8, ()),
    "mono16": (np.uint16, ()),
    "16UC1": (np.uint16, ()),
    "32FC1": (np.float32, ()),
    "yuv422": (np.uint8, (2,)),
    "yuv422_yuy2": (np.uint8, (2,)),
}


def random_pixels(encoding: str, height: int = H, width: int = W) -> np.ndarray:
    dtype, tail = NATURAL[encoding]
    shape = (height, width) + tail
    if dtype == np.float32:
        return RNG.uniform(-100.0, 100.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def make_image(encoding: str, pixels: np.ndarray, step: int | None = None,
               big_endian: bool = False, pad_byte: int = 0xAB) -> Image:
    """An Image built by hand (not by numpy_to_image), rows padded to ``step`` with junk."""
    height, width = pixels.shape[:2]
    raw = pixels.astype(pixels.dtype.newbyteorder(">" if big_endian else "<"))
    row_bytes = raw.reshape(height, -1).view(np.uint8)
    step = row_bytes.shape[1] if step is None else step
    rows = np.full((height, step), pad_byte, dtype=np.uint8)
    rows[:, :row_bytes.shape[1]] = row_bytes
    msg = Image(height=height, width=width, encoding=encoding, step=step,
                is_bigendian=int(big_endian))
    msg.data = rows.tobytes()
    return msg


def stamped(sec: int = 12, frame: str = "camera_optical") -> Header:
    header = Header(frame_id=frame)
    header.stamp.sec, header.stamp.nanosec = sec, 345
    return header


# --- images ------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", list(NATURAL))
def test_image_round_trip_every_encoding(encoding):
    pixels = random_pixels(encoding)
    header = stamped()
    msg = numpy_to_image(pixels, encoding, header)
    dtype, tail = NATURAL[encoding]
    bpp = np.dtype(dtype).itemsize * (tail[0] if tail else 1)
    assert (msg.height, msg.width, msg.encoding) == (H, W, encoding)
    assert msg.step == W * bpp and msg.is_bigendian == 0 and len(msg.data) == H * W * bpp
    assert msg.header.stamp.sec == 12 and msg.header.frame_id == "camera_optical"
    # Through rclpy's serializer too: proves the data fill is a type rclpy accepts.
    wire = deserialize_message(serialize_message(msg), Image)
    for decoded in (image_to_numpy(msg), image_to_numpy(wire)):
        assert decoded.dtype == dtype and decoded.shape == pixels.shape
        np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("encoding", list(NATURAL))
def test_decode_of_hand_built_message(encoding):
    pixels = random_pixels(encoding)
    np.testing.assert_array_equal(image_to_numpy(make_image(encoding, pixels)), pixels)


def test_encoded_bytes_are_row_major_little_endian():
    depth = np.array([[1.0, 2.0], [3.0, -4.5]], dtype=np.float32)
    assert bytes(numpy_to_image(depth, "32FC1").data) == depth.astype("<f4").tobytes()
    depth16 = np.array([[0x0102, 0xA0B0]], dtype=np.uint16)
    assert bytes(numpy_to_image(depth16, "16UC1").data) == b"\x02\x01\xb0\xa0"


def test_numpy_to_image_accepts_non_contiguous_and_big_endian_arrays():
    base = random_pixels("32FC1", 10, 12)
    msg = numpy_to_image(base[::2, ::3], "32FC1")
    np.testing.assert_array_equal(image_to_numpy(msg), base[::2, ::3])
    swapped = base.astype(">f4")
    msg = numpy_to_image(swapped, "32FC1")
    assert msg.is_bigendian == 0
    np.testing.assert_array_equal(image_to_numpy(msg), base)


def test_mono8_accepts_single_channel_third_axis():
    pixels = random_pixels("mono8")
    msg = numpy_to_image(pixels[:, :, np.newaxis], "mono8")
    assert msg.step == W
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def test_rgb8_and_bgr8_channel_order():
    red_rgb = np.zeros((2, 2, 3), np.uint8)
    red_rgb[..., 0] = 200
    red_bgr = red_rgb[..., ::-1].copy()
    for encoding, pixels in (("rgb8", red_rgb), ("bgr8", red_bgr)):
        rgb = image_to_rgb8(make_image(encoding, pixels))
        np.testing.assert_array_equal(rgb, red_rgb)
    # The natural array keeps the message's own order.
    np.testing.assert_array_equal(image_to_numpy(make_image("bgr8", red_bgr))[0, 0], [0, 0, 200])


@pytest.mark.parametrize("encoding", ["rgba8", "bgra8"])
def test_four_channel_to_rgb_drops_alpha_and_orders_channels(encoding):
    pixels = np.zeros((2, 4, 4), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2], pixels[..., 3] = 10, 20, 30, 40
    rgb = image_to_rgb8(make_image(encoding, pixels))
    expected = [10, 20, 30] if encoding == "rgba8" else [30, 20, 10]
    assert rgb.shape == (2, 4, 3) and rgb.flags.c_contiguous
    assert (rgb == expected).all()


def test_mono_to_rgb():
    mono8 = random_pixels("mono8")
    rgb = image_to_rgb8(make_image("mono8", mono8))
    assert rgb.shape == (H, W, 3) and all((rgb[..., c] == mono8).all() for c in range(3))
    mono16 = np.array([[0x1234, 0xFFFF, 0x00FF, 0x0100]], dtype=np.uint16)
    rgb = image_to_rgb8(make_image("mono16", mono16))
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :, 0], [0x12, 0xFF, 0x00, 0x01])
    assert (rgb[..., 1] == rgb[..., 0]).all() and (rgb[..., 2] == rgb[..., 0]).all()


@pytest.mark.parametrize("encoding,step", [
    ("rgb8", 17),        # width 5 x 3 = 15 bytes + 2 junk
    ("bgr8", 16),
    ("rgba8", 23),
    ("mono8", 7),
    ("mono16", 11),      # odd step: 16-bit rows start unaligned
    ("16UC1", 13),
    ("32FC1", 23),       # 20 bytes + 3 junk, unaligned floats
])
def test_padded_rows_8_16_32_bit(encoding, step):
    pixels = random_pixels(encoding, 4, 5)
    msg = make_image(encoding, pixels, step=step)
    decoded = image_to_numpy(msg)
    np.testing.assert_array_equal(decoded, pixels)
    assert decoded.dtype.isnative
    # Odd steps would give unaligned 16/32-bit rows, which OpenCV refuses; they must be copied.
    assert decoded.flags.aligned
    np.testing.assert_array_equal(cv2.resize(decoded, (5, 4), interpolation=cv2.INTER_NEAREST),
                                  pixels)
    if encoding in ("rgb8", "bgr8", "rgba8", "mono8"):
        unpadded = make_image(encoding, pixels)
        rgb = image_to_rgb8(msg)
        assert rgb.flags.c_contiguous
        np.testing.assert_array_equal(rgb, image_to_rgb8(unpadded))


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_padded_rows_yuv(encoding):
    pixels = random_pixels(encoding, 3, 4)
    msg = make_image(encoding, pixels, step=11)
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)
    np.testing.assert_array_equal(image_to_rgb8(msg), image_to_rgb8(make_image(encoding, pixels)))


def test_rgb8_padding_bytes_never_leak_into_pixels():
    pixels = np.zeros((3, 5, 3), np.uint8)
    rgb = image_to_rgb8(make_image("rgb8", pixels, step=17, pad_byte=0xFF))
    assert rgb.shape == (3, 5, 3) and not rgb.any()


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_big_endian_data_decodes_to_native_values(encoding):
    pixels = random_pixels(encoding)
    msg = make_image(encoding, pixels, big_endian=True)
    decoded = image_to_numpy(msg)
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, pixels)
    # The same bytes read as little-endian give different values: the flag is really used.
    msg.is_bigendian = 0
    assert not np.array_equal(image_to_numpy(msg), pixels)


def test_big_endian_with_odd_step():
    pixels = random_pixels("32FC1", 3, 4)
    msg = make_image("32FC1", pixels, step=19, big_endian=True)
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def test_is_bigendian_is_ignored_for_8_bit():
    pixels = random_pixels("rgb8")
    msg = make_image("rgb8", pixels)
    msg.is_bigendian = 1
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


@pytest.mark.parametrize("encoding,code", [
    ("yuv422", cv2.COLOR_YUV2RGB_UYVY),
    ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2),
    ("uyvy", cv2.COLOR_YUV2RGB_UYVY),
    ("yuyv", cv2.COLOR_YUV2RGB_YUY2),
])
def test_yuv422_matches_opencv(encoding, code):
    raw = RNG.integers(0, 256, (H, W, 2), dtype=np.uint8)
    rgb = image_to_rgb8(make_image(encoding, raw))
    np.testing.assert_array_equal(rgb, cv2.cvtColor(raw, code))


def test_yuv422_byte_order_uyvy_vs_yuy2():
    # Grey Y=200 with neutral chroma 128, packed in each layout's own byte order.
    uyvy = np.tile(np.array([128, 200], np.uint8), (2, 4, 1))  # U Y V Y ...
    yuyv = np.tile(np.array([200, 128], np.uint8), (2, 4, 1))  # Y U Y V ...
    for encoding, raw in (("yuv422", uyvy), ("yuv422_yuy2", yuyv)):
        rgb = image_to_rgb8(make_image(encoding, raw)).astype(int)
        assert np.abs(rgb - 200).max() <= 16, encoding
        assert np.ptp(rgb, axis=2).max() <= 2, encoding  # grey: channels equal


def test_decoded_view_survives_message_and_is_read_only():
    pixels = random_pixels("32FC1")
    msg = numpy_to_image(pixels, "32FC1")
    decoded = image_to_numpy(msg)
    rgb_msg = numpy_to_image(random_pixels("rgb8"), "rgb8")
    rgb = image_to_rgb8(rgb_msg)
    expected_rgb = np.array(rgb)
    del msg, rgb_msg
    gc.collect()
    np.testing.assert_array_equal(decoded, pixels)
    np.testing.assert_array_equal(rgb, expected_rgb)
    with pytest.raises(ValueError):
        decoded[0, 0] = 1.0


def test_data_longer_than_height_times_step_is_accepted():
    pixels = random_pixels("mono16")
    msg = make_image("mono16", pixels)
    msg.data = bytes(msg.data) + b"\x01\x02\x03"
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def _image(**overrides) -> Image:
    msg = make_image("rgb8", random_pixels("rgb8", 2, 4))
    for key, value in overrides.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize("msg,needle", [
    (_image(step=11), "step"),                       # 4 x 3 = 12 needed
    (_image(data=bytes(23)), "data"),                # 2 x 12 = 24 needed
    (_image(width=0), "zero size"),
    (_image(height=0), "zero size"),
    (_image(encoding="bayer_rggb8"), "bayer_rggb8"),
    (_image(encoding=""), "unsupported"),
    (Image(height=2, width=3, encoding="yuv422", step=6, data=bytes(12)), "odd"),
    (Image(height=2, width=3, encoding="mono16", step=5, data=bytes(12)), "step"),
    (Image(height=2, width=3, encoding="mono16", step=6, data=bytes(11)), "data"),
])
def test_malformed_images_raise_conversion_error(msg, needle):
    for decode in (image_to_numpy, image_to_rgb8):
        with pytest.raises(ConversionError, match=needle):
            decode(msg)


def test_unknown_encoding_lists_supported_ones():
    with pytest.raises(ConversionError) as info:
        image_to_numpy(_image(encoding="8UC2"))
    assert "8UC2" in str(info.value) and "rgb8" in str(info.value)
    assert "yuv422_yuy2" in str(info.value)


def _listed(error: ConversionError) -> set[str]:
    return set(str(error).split("supported: ")[1].split(", "))


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_like_images_are_refused_as_model_input(encoding):
    msg = numpy_to_image(random_pixels(encoding), encoding)
    with pytest.raises(ConversionError, match="colour or mono") as info:
        image_to_rgb8(msg)
    assert not _listed(info.value) & {"16UC1", "32FC1"}  # never offered as supported


@pytest.mark.parametrize("encoding", ["8UC2", "bayer_rggb8", "32FC1"])
def test_refused_input_encoding_lists_exactly_what_is_accepted(encoding):
    """Issue 13 item 15: the error listed 32FC1 as supported and the next one refused it."""
    with pytest.raises(ConversionError) as info:
        image_to_rgb8(_image(encoding=encoding))
    listed = _listed(info.value)
    assert {"rgb8", "bgr8", "mono16", "yuv422", "8UC3"} <= listed
    for name in listed:  # every listed encoding really decodes
        msg = make_image(name, random_pixels(name if name in NATURAL else
                                             {"8UC1": "mono8", "8UC3": "bgr8", "8UC4": "bgra8",
                                              "uyvy": "yuv422", "yuyv": "yuv422_yuy2"}[name]))
        assert image_to_rgb8(msg).shape == (H, W, 3), name


@pytest.mark.parametrize("passthrough,named", [("8UC3", "bgr8"), ("8UC1", "mono8"),
                                               ("8UC4", "bgra8")])
def test_cv_bridge_passthrough_encodings_decode_as_opencv_order(passthrough, named):
    """cv_bridge's passthrough gives 8UC3 for a BGR OpenCV image: decoded as bgr8."""
    pixels = random_pixels(named)
    np.testing.assert_array_equal(image_to_rgb8(make_image(passthrough, pixels)),
                                  image_to_rgb8(make_image(named, pixels)))


@pytest.mark.parametrize("array_,encoding", [
    (np.zeros((4, 4), np.float64), "32FC1"),
    (np.zeros((4, 4, 3), np.uint8), "mono8"),
    (np.zeros((4, 4), np.uint8), "rgb8"),
    (np.zeros((4, 4, 4), np.uint8), "rgb8"),
    (np.zeros((4, 4), np.int16), "16UC1"),
    (np.zeros((4, 4), np.uint16), "mono8"),
    (np.zeros((0, 4), np.float32), "32FC1"),
    (np.zeros((4, 4), np.float32), "64FC1"),
    (np.zeros((2, 3, 2), np.uint8), "yuv422"),
])
def test_numpy_to_image_rejects_mismatched_arrays(array_, encoding):
    with pytest.raises(ConversionError):
        numpy_to_image(array_, encoding)


# --- compressed ----------------------------------------------------------------------------

def _gradient_rgb(height: int = 32, width: int = 48) -> np.ndarray:
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)
    rgb[..., 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    rgb[..., 2] = 60
    return rgb


def test_png_round_trip_is_exact_and_keeps_channel_order():
    rgb = _gradient_rgb()
    msg = rgb8_to_compressed(rgb, "png", stamped())
    assert msg.format == "rgb8; png compressed bgr8"
    assert msg.header.stamp.sec == 12
    assert bytes(msg.data[:8]) == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(compressed_to_rgb8(msg), rgb)
    wire = deserialize_message(serialize_message(msg), CompressedImage)
    np.testing.assert_array_equal(compressed_to_rgb8(wire), rgb)


def test_jpeg_round_trip_is_close():
    rgb = _gradient_rgb()
    msg = rgb8_to_compressed(rgb)
    assert msg.format == "rgb8; jpeg compressed bgr8"
    assert bytes(msg.data[:2]) == b"\xff\xd8"
    decoded = compressed_to_rgb8(msg)
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - rgb).mean() < 3.0


def test_compressed_from_opencv_bgr_jpeg_decodes_to_rgb():
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's order
    ok, encoded = cv2.imencode(".jpg", bgr)
    msg = CompressedImage(format="bgr8; jpeg compressed bgr8", data=encoded.tobytes())
    rgb = compressed_to_rgb8(msg).astype(int)
    assert rgb[..., 0].min() > 240 and rgb[..., 1:].max() < 15


@pytest.mark.parametrize("data,fmt", [
    (b"", "jpeg"),
    (b"\xff\xd8\xff\xe0 this is not really a jpeg", "jpeg"),
    (bytes(range(256)) * 4, "png"),
    (cv2.imencode(".png", np.zeros((4, 4), np.uint16))[1].tobytes(),
     "16UC1; compressedDepth png"),
])
def test_bad_compressed_raises_conversion_error(data, fmt):
    with pytest.raises(ConversionError):
        compressed_to_rgb8(CompressedImage(format=fmt, data=data))


def test_rgb8_to_compressed_rejects_bad_input():
    with pytest.raises(ConversionError):
        rgb8_to_compressed(_gradient_rgb(), "webp2")
    with pytest.raises(ConversionError):
        rgb8_to_compressed(np.zeros((4, 4), np.uint8))


# --- point clouds ----------------------------------------------------------------------------

def _points(height: int = 5, width: int = 7) -> np.ndarray:
    points = RNG.uniform(-5, 5, (height, width, 3)).astype(np.float32)
    points[1, 2] = np.nan
    points[4, 0] = np.nan
    return points


def _assert_layout(msg: PointCloud2, names: list[str], point_step: int, height: int, width: int):
    assert [f.name for f in msg.fields] == names
    assert [f.offset for f in msg.fields] == [4 * i for i in range(len(names))]
    assert all(f.datatype == PointField.FLOAT32 == 7 and f.count == 1 for f in msg.fields)
    assert (msg.height, msg.width) == (height, width)
    assert msg.point_step == point_step and msg.row_step == point_step * width
    assert msg.is_dense is False and msg.is_bigendian is False
    assert len(msg.data) == msg.row_step * height


def _xyz(cloud: np.ndarray) -> np.ndarray:
    return np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)


def test_xyz_cloud_layout_and_values():
    points = _points()
    msg = points_to_pointcloud2(points, stamped())
    _assert_layout(msg, ["x", "y", "z"], 12, 5, 7)
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.sec == 12
    assert bytes(msg.data) == points.astype("<f4").tobytes()  # create_cloud_xyz32 layout
    cloud = pointcloud2_to_array(msg)
    assert cloud.shape == (5, 7)
    np.testing.assert_array_equal(_xyz(cloud), points)  # NaN positions compare equal
    assert np.isnan(cloud["z"]).sum() == 2 and np.isnan(cloud["z"][1, 2])


def test_xyzrgb_cloud_layout_values_and_packed_rgb():
    points = _points()
    rgb = RNG.integers(0, 256, points.shape, dtype=np.uint8)
    rgb[0, 0] = [0xFF, 0x00, 0x80]
    msg = points_to_pointcloud2(cloud_body(points, rgb), stamped())
    _assert_layout(msg, ["x", "y", "z", "rgb"], 16, 5, 7)
    wire = deserialize_message(serialize_message(msg), PointCloud2)
    for cloud in (pointcloud2_to_array(msg), pointcloud2_to_array(wire)):
        np.testing.assert_array_equal(_xyz(cloud), points)
        bits = cloud["rgb"].view(np.uint32)
        expected = ((rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
                    | rgb[..., 2].astype(np.uint32))
        np.testing.assert_array_equal(bits, expected)
        assert bits[0, 0] == 0x00FF0080
    # Raw bytes of the first point's colour: little-endian B, G, R, 0.
    assert bytes(msg.data[12:16]) == bytes([0x80, 0x00, 0xFF, 0x00])


def test_unorganized_points_and_float64_input():
    points = RNG.uniform(-1, 1, (9, 3))
    msg = points_to_pointcloud2(cloud_body(points, np.zeros((9, 3), np.uint8)), Header())
    _assert_layout(msg, ["x", "y", "z", "rgb"], 16, 1, 9)
    np.testing.assert_allclose(_xyz(pointcloud2_to_array(msg))[0], points, rtol=1e-6)
    empty = points_to_pointcloud2(np.zeros((0, 3), np.float32), Header())
    assert (empty.height, empty.width, len(empty.data)) == (1, 0, 0)
    assert pointcloud2_to_array(empty).shape == (1, 0)


@pytest.mark.parametrize("points,rgb", [
    (np.zeros((4, 5, 2), np.float32), None),
    (np.zeros((4, 5, 3), np.int32), None),
    (np.zeros((4, 5, 3), np.float32), np.zeros((4, 6, 3), np.uint8)),
    (np.zeros((4, 5, 3), np.float32), np.zeros((4, 5, 3), np.float32)),
])
def test_points_to_pointcloud2_rejects_bad_input(points, rgb):
    with pytest.raises(ConversionError):
        points_to_pointcloud2(cloud_body(points, rgb), Header())
    with pytest.raises(ConversionError):  # a body of the wrong shape or type
        points_to_pointcloud2(points if rgb is None else points[..., :2], Header())


def _foreign_cloud(big_endian: bool) -> tuple[PointCloud2, np.ndarray]:
    """depth_image_proc's xyzrgb layout (rgb at 16, point_step 32) plus row padding."""
    height, width, point_step, row_step = 3, 4, 32, 32 * 4 + 8
    values = RNG.uniform(-3, 3, (height, width, 4)).astype(np.float32)
    order = ">" if big_endian else "<"
    raw = np.full((height, row_step), 0xEE, np.uint8)
    for i, offset in enumerate((0, 4, 8, 16)):
        for v in range(width):
            start = v * point_step + offset
            raw[:, start:start + 4] = values[:, v, i].astype(order + "f4")[:, None].view(np.uint8)
    fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
              for n, o in (("x", 0), ("y", 4), ("z", 8), ("rgb", 16))]
    fields.append(PointField(name="ring", offset=24, datatype=PointField.UINT16, count=1))
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=big_endian,
                      point_step=point_step, row_step=row_step, is_dense=False)
    msg.data = raw.tobytes()
    return msg, values


@pytest.mark.parametrize("big_endian", [False, True])
def test_pointcloud2_to_array_honours_offsets_steps_and_endianness(big_endian):
    msg, values = _foreign_cloud(big_endian)
    cloud = pointcloud2_to_array(msg)
    assert cloud.dtype.names == ("x", "y", "z", "rgb")  # UINT16 'ring' skipped
    for i, name in enumerate(cloud.dtype.names):
        np.testing.assert_array_equal(cloud[name], values[..., i])


def test_pointcloud2_to_array_rejects_malformed():
    msg, _ = _foreign_cloud(False)
    msg.data = bytes(msg.data)[:-40]
    with pytest.raises(ConversionError, match="bytes"):
        pointcloud2_to_array(msg)
    msg, _ = _foreign_cloud(False)
    msg.row_step = 100
    with pytest.raises(ConversionError, match="row_step"):
        pointcloud2_to_array(msg)
    msg, _ = _foreign_cloud(False)
    msg.fields[3].offset = 30
    with pytest.raises(ConversionError, match="rgb"):
        pointcloud2_to_array(msg)


# --- camera info -----------------------------------------------------------------------------

def _camera_info(k: list[float], p: list[float], width: int = 640,
                 height: int = 480) -> CameraInfo:
    msg = CameraInfo(width=width, height=height)
    msg.k = np.array(k, dtype=np.float64)
    msg.p = np.array(p, dtype=np.float64)
    return msg


def test_camera_info_prefers_p_over_k():
    msg = _camera_info([500, 0, 320, 0, 505, 240, 0, 0, 1],
                       [480, 0, 318, 0, 0, 482, 236, 0, 0, 0, 1, 0])
    assert camera_info_to_intrinsics(msg) == Intrinsics(480, 482, 318, 236, 640, 480)


def test_camera_info_falls_back_to_k_when_p_is_zero():
    msg = _camera_info([500, 0, 320, 0, 505, 240, 0, 0, 1], [0] * 12)
    assert camera_info_to_intrinsics(msg) == Intrinsics(500, 505, 320, 240, 640, 480)


@pytest.mark.parametrize("k,width,height", [
    ([0] * 9, 640, 480),                            # uncalibrated driver: all zeros
    ([500, 0, 320, 0, 0, 240, 0, 0, 1], 640, 480),  # fy zero
    ([500, 0, 320, 0, 505, 240, 0, 0, 1], 0, 480),  # zero size
])
def test_invalid_camera_info_gives_none(k, width, height):
    assert camera_info_to_intrinsics(_camera_info(k, [0] * 12, width, height)) is None


def test_intrinsics_to_camera_info_defaults_and_round_trip():
    intrinsics = Intrinsics(fx=250.5, fy=251.0, cx=159.5, cy=119.25, width=320, height=240)
    msg = intrinsics_to_camera_info(intrinsics, stamped())
    assert (msg.width, msg.height) == (320, 240)
    np.testing.assert_array_equal(msg.k, [250.5, 0, 159.5, 0, 251.0, 119.25, 0, 0, 1])
    np.testing.assert_array_equal(msg.p, [250.5, 0, 159.5, 0, 0, 251.0, 119.25, 0, 0, 0, 1, 0])
    assert msg.distortion_model == "plumb_bob"
    assert list(msg.d) == [0.0] * 5
    np.testing.assert_array_equal(msg.r, np.eye(3).ravel())
    assert msg.header.stamp.sec == 12 and msg.header.frame_id == "camera_optical"
    assert camera_info_to_intrinsics(msg) == intrinsics
    wire = deserialize_message(serialize_message(msg), CameraInfo)
    assert camera_info_to_intrinsics(wire) == intrinsics


def test_intrinsics_to_camera_info_copies_template_and_scales_translation():
    template = _camera_info([600, 0, 320, 0, 600, 240, 0, 0, 1],
                            [600, 0, 320, -36.0, 0, 600, 240, 6.0, 0, 0, 1, 0])
    template.distortion_model = "rational_polynomial"
    template.d = array.array("d", [0.1, -0.2, 0.001, 0.002, 0.3, 0.0, 0.0, 0.0])
    template.r = np.array([1, 0, 0, 0, 0, -1, 0, 1, 0], dtype=np.float64)
    template.binning_x = 2
    full = camera_info_to_intrinsics(template)
    half = full.scaled_to(320, 240)
    msg = intrinsics_to_camera_info(half, Header(), template)
    assert msg.distortion_model == "rational_polynomial"
    assert list(msg.d) == list(template.d)
    np.testing.assert_array_equal(msg.r, template.r)
    assert msg.p[3] == pytest.approx(-36.0 * half.fx / 600) and msg.p[3] == pytest.approx(-18.0)
    assert msg.p[7] == pytest.approx(3.0)
    assert msg.p[0] == half.fx and msg.k[4] == half.fy and msg.binning_x == 0
    assert camera_info_to_intrinsics(msg) == half
    # The output owns its arrays: editing it leaves the template alone.
    msg.d[0] = 9.0
    assert template.d[0] == pytest.approx(0.1)
