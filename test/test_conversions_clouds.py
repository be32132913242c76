"""PointCloud2 and CameraInfo conversions: the layouts sensor_msgs_py and depth_image_proc
produce and read."""
from __future__ import annotations

import array

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import Header

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.image_codec import cloud_body
from clip_depth_ros.ros.conversions import (
    ConversionError,
    camera_info_to_intrinsics,
    intrinsics_to_camera_info,
    pointcloud2_to_array,
    points_to_pointcloud2,
)

RNG = np.random.default_rng(0)


def stamped(sec: int = 12, frame: str = "camera_optical") -> Header:
    header = Header(frame_id=frame)
    header.stamp.sec, header.stamp.nanosec = sec, 345
    return header


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


def test_camera_info_of_a_raw_camera_keeps_its_own_k_next_to_its_d():
    # a raw, distorted camera: K (with D) and P (the rectified camera) differ; the published
    # camera_info is the input's scaled to the depth image, K with D, P for the points
    k = [610, 0, 318, 0, 612, 242, 0, 0, 1]
    template = _camera_info(k, [600, 0, 320, 0, 0, 600, 240, 0, 0, 0, 1, 0])
    template.d = array.array("d", [-0.28, 0.07, 0.0, 0.0, 0.0])
    half = camera_info_to_intrinsics(template).scaled_to(320, 240)
    msg = intrinsics_to_camera_info(half, Header(), template)
    own = Intrinsics(610.0, 612.0, 318.0, 242.0, 640, 480).scaled_to(320, 240)
    np.testing.assert_allclose(msg.k, [own.fx, 0, own.cx, 0, own.fy, own.cy, 0, 0, 1])
    assert camera_info_to_intrinsics(msg) == half and list(msg.d) == list(template.d)
    # intrinsics that are not the template's (an override): K is them, as P
    other = Intrinsics(500.0, 500.0, 160.0, 120.0, 320, 240)
    msg = intrinsics_to_camera_info(other, Header(), template)
    np.testing.assert_array_equal(msg.k, [500, 0, 160, 0, 500, 120, 0, 0, 1])
