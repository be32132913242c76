"""Message <-> numpy conversions: layouts cv_bridge / sensor_msgs_py / depth_image_proc produce."""
from __future__ import annotations

import gc

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from clip_depth_ros.ros.conversions import (
    ConversionError,
    compressed_to_rgb8,
    image_to_numpy,
    image_to_rgb8,
    numpy_to_image,
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
