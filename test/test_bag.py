"""`clip-depth bag`: rosbag2 in (sqlite3 / MCAP, raw / jpeg), a new bag with depth out.

The input bags are written here with rosbags, the command runs the real tiny-mirror model
(random backbone), and the output is read back with rosbags: counts, headers, receive times,
depth layout, scaled intrinsics and points that reproject onto the depth image.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from clip_depth_ros.bag import image_namespace, output_topics
from clip_depth_ros.bag_reader import BagError, bag_topic_count, iter_bag_images
from clip_depth_ros.camera_sync import CameraInfoPairing
from clip_depth_ros.cli import main as cli_main
from clip_depth_ros.confidence import flying_pixels
from clip_depth_ros.geometry import project_points
from clip_depth_ros.image_codec import (camera_info_to_intrinsics, cloud_body, image_to_numpy,
                                        pointcloud2_to_array)
from clip_depth_ros.stamps import stamp_ns

ROOT = Path(__file__).resolve().parents[1]
TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types
W, H = 64, 48
FX, FY, CX, CY = 70.0, 68.0, 31.5, 23.0  # at the camera_info's own size
IMAGE_TOPIC, INFO_TOPIC = "/cam/image_raw", "/cam/camera_info"
PLUGINS = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
MODEL_ARGS = ["--model", "tiny-mirror", "--backbone-weights", "random", "--no-progress"]
# the outputs of the node (points too) and nothing else: defaults are tested in test_bag_cli
OUTPUT_ARGS = ["--points", "--no-copy-input"]


def header(sec: int, nanosec: int = 250_000_000, frame_id: str = "cam_optical"):
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


def rgb_frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)


def image_msg(kind: str, seed: int, hdr):
    rgb = rgb_frame(seed)
    if kind == "jpeg":
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        return T["sensor_msgs/msg/CompressedImage"](header=hdr, format="rgb8; jpeg compressed "
                                                    "bgr8", data=data.reshape(-1))
    return T["sensor_msgs/msg/Image"](header=hdr, height=H, width=W, encoding="rgb8",
                                      is_bigendian=0, step=W * 3, data=rgb.reshape(-1))


def info_msg(hdr, scale: int = 1, fx: float = FX):
    s = float(scale)
    k = np.array([fx * s, 0, (CX + 0.5) * s - 0.5, 0, FY * s, (CY + 0.5) * s - 0.5, 0, 0, 1.0])
    p = np.array([k[0], 0, k[2], 0, 0, k[4], k[5], 0, 0, 0, 1.0, 0])
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](
        header=hdr, height=H * scale, width=W * scale, distortion_model="plumb_bob",
        d=np.zeros(5), k=k, r=np.eye(3).ravel(), p=p, binning_x=0, binning_y=0, roi=roi)


def write_bag(path: Path, storage: str = "sqlite3", kind: str = "rgb8", frames: int = 3,
              info: str = "each", info_scale: int = 1, corrupt: int = -1,
              extra=()) -> list[tuple]:
    """A bag of `frames` images on IMAGE_TOPIC; (receive ns, header) of each.

    info: "each" = a camera_info of the same stamp just before every image, "once" = one
    camera_info with an unrelated stamp recorded before the first image, "none".  Frame
    `corrupt` gets undecodable data.  Receive times are deliberately unlike the header stamps.
    """
    msgtype = "sensor_msgs/msg/CompressedImage" if kind == "jpeg" else "sensor_msgs/msg/Image"
    sent = []
    with Writer(path, version=9, storage_plugin=PLUGINS[storage]) as writer:
        image_conn = writer.add_connection(IMAGE_TOPIC, msgtype, typestore=TS)
        info_conn = (writer.add_connection(INFO_TOPIC, "sensor_msgs/msg/CameraInfo",
                                           typestore=TS) if info != "none" else None)
        if info == "once":
            writer.write(info_conn, 1_000_000_000,
                         TS.serialize_cdr(info_msg(header(1, 0), info_scale), info_conn.msgtype))
        for i in range(frames):
            hdr = header(100 + i, frame_id=f"cam_optical_{i}")
            received = 5_000_000_000 + i * 100_000_000
            if info == "each":
                writer.write(info_conn, received - 1000,
                             TS.serialize_cdr(info_msg(hdr, info_scale), info_conn.msgtype))
            msg = image_msg(kind, i, hdr)
            if i == corrupt:
                msg.data = np.frombuffer(b"\xff\xd8 not a jpeg", np.uint8).copy()
            writer.write(image_conn, received, TS.serialize_cdr(msg, msgtype))
            sent.append((received, hdr))
        for topic, msgtype_, msg in extra:
            conn = writer.add_connection(topic, msgtype_, typestore=TS)
            writer.write(conn, 9_000_000_000, TS.serialize_cdr(msg, msgtype_))
    return sent


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(receive ns, message)] of every message in a bag."""
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, received, raw in reader.messages():
            out.setdefault(conn.topic, []).append((received, TS.deserialize_cdr(raw,
                                                                                 conn.msgtype)))
    return out


def run_bag(*args: str) -> int:
    return cli_main(["bag", *OUTPUT_ARGS, *map(str, args), *MODEL_ARGS])


def storage_files(path: Path) -> set[str]:
    return {p.suffix for p in path.iterdir() if p.suffix in (".mcap", ".db3")}


@pytest.mark.parametrize("storage,kind,with_info", [
    ("sqlite3", "rgb8", True), ("mcap", "jpeg", True),
    ("mcap", "rgb8", False), ("sqlite3", "jpeg", False)])
def test_bag_gives_depth_info_points_with_the_input_headers(tmp_path, storage, kind, with_info):
    src, dst = tmp_path / "in", tmp_path / "out"
    sent = write_bag(src, storage, kind, frames=3, info="each" if with_info else "none",
                     info_scale=2)
    assert run_bag(src, dst, "--image-topic", IMAGE_TOPIC) == 0
    assert storage_files(dst) == {".mcap" if storage == "mcap" else ".db3"}
    out = read_bag(dst)
    depth = out["/cam/depth"]
    assert len(depth) == len(sent)
    if not with_info:
        assert set(out) == {"/cam/depth"}
    else:
        assert set(out) == {"/cam/depth", "/cam/depth/camera_info", "/cam/points"}
        assert len(out["/cam/depth/camera_info"]) == len(out["/cam/points"]) == len(sent)
    for topic, records in out.items():
        for (received, msg), (sent_received, hdr) in zip(records, sent):
            assert received == sent_received, topic
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == \
                (hdr.stamp.sec, hdr.stamp.nanosec), topic
            assert msg.header.frame_id == hdr.frame_id, topic
    for _, msg in depth:
        assert (msg.encoding, msg.width, msg.height, msg.step) == ("32FC1", W, H, W * 4)
        depth_m = image_to_numpy(msg)
        assert np.isfinite(depth_m).all() and 1e-3 <= depth_m.min() <= depth_m.max() <= 10.0
    if with_info:
        info = out["/cam/depth/camera_info"][0][1]
        assert (info.width, info.height) == (W, H)  # camera_info was 2x the image: scaled
        np.testing.assert_allclose(info.k, [FX, 0, CX, 0, FY, CY, 0, 0, 1], atol=1e-9)
        np.testing.assert_allclose(np.asarray(info.p)[[0, 2, 5, 6]], [FX, CX, FY, CY])
        check_points_reproject(depth[0][1], info, out["/cam/points"][0][1])


def check_points_reproject(depth_msg, info_msg_, cloud_msg, stride: int = 1) -> None:
    depth_m = image_to_numpy(depth_msg)
    intrinsics = camera_info_to_intrinsics(info_msg_)
    cloud = pointcloud2_to_array(cloud_msg)
    assert (cloud_msg.height, cloud_msg.width) == depth_m[::stride, ::stride].shape
    assert not cloud_msg.is_dense
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)
    # the edge filter (on by default, as in the node) removes exactly the flying pixels
    removed = ~np.isfinite(cloud["z"])
    np.testing.assert_array_equal(removed, flying_pixels(depth_m)[::stride, ::stride])
    assert removed.mean() < 0.9
    u, v = project_points(xyz[~removed], intrinsics)
    grid_v, grid_u = np.mgrid[0:H:stride, 0:W:stride]
    np.testing.assert_allclose(u, grid_u[~removed], atol=1e-3)
    np.testing.assert_allclose(v, grid_v[~removed], atol=1e-3)
    np.testing.assert_allclose(cloud["z"][~removed], depth_m[::stride, ::stride][~removed],
                               rtol=1e-6)


def test_points_options_xyz_only_stride_and_no_points(tmp_path):
    src = tmp_path / "in"
    write_bag(src, "mcap", frames=2)
    assert run_bag(src, tmp_path / "xyz", "--image-topic", IMAGE_TOPIC, "--no-points-rgb",
                   "--stride", "4") == 0
    out = read_bag(tmp_path / "xyz")
    cloud = out["/cam/points"][0][1]
    assert [f.name for f in cloud.fields] == ["x", "y", "z"] and cloud.point_step == 12
    check_points_reproject(out["/cam/depth"][0][1], out["/cam/depth/camera_info"][0][1],
                           cloud, stride=4)
    assert run_bag(src, tmp_path / "none", "--image-topic", IMAGE_TOPIC, "--no-points") == 0
    assert set(read_bag(tmp_path / "none")) == {"/cam/depth", "/cam/depth/camera_info"}


def test_xyzrgb_points_carry_the_image_colours(tmp_path):
    src = tmp_path / "in"
    write_bag(src, "sqlite3", frames=1)
    assert run_bag(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC) == 0
    cloud = pointcloud2_to_array(read_bag(tmp_path / "out")["/cam/points"][0][1])
    bits = np.ascontiguousarray(cloud["rgb"]).view(np.uint32)
    rgb = np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], -1).astype(np.uint8)
    np.testing.assert_array_equal(rgb, rgb_frame(0))


def test_format_option_converts_storage(tmp_path):
    src = tmp_path / "in"
    write_bag(src, "sqlite3", frames=1)
    assert run_bag(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC, "--format", "mcap") == 0
    assert storage_files(tmp_path / "out") == {".mcap"}
    assert len(read_bag(tmp_path / "out")["/cam/depth"]) == 1


def test_camera_info_without_matching_stamp_falls_back_to_the_latest(tmp_path):
    """One camera_info recorded before the images, its stamp unlike theirs: the latest one
    received is used for every frame (use_latest_camera_info, as in the node)."""
    src = tmp_path / "in"
    write_bag(src, "mcap", frames=2, info="once")
    assert run_bag(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC) == 0
    out = read_bag(tmp_path / "out")
    assert len(out["/cam/depth/camera_info"]) == len(out["/cam/points"]) == 2
    assert out["/cam/depth/camera_info"][1][1].header.stamp.sec == 101  # the image's header


def test_no_latest_camera_info_pairs_by_stamp_only(tmp_path):
    """--no-latest-camera-info is the node's use_latest_camera_info:=false: the camera_info of
    an unrelated stamp is not used, so the frames get depth only."""
    src = tmp_path / "in"
    write_bag(src, "mcap", frames=2, info="once")
    assert run_bag(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC,
                   "--no-latest-camera-info") == 0
    assert set(read_bag(tmp_path / "out")) == {"/cam/depth"}


def test_camera_info_recorded_only_after_the_images_is_not_used(tmp_path):
    src = tmp_path / "in"
    late = info_msg(header(1, 0))
    write_bag(src, "sqlite3", frames=2, info="none",
              extra=[(INFO_TOPIC, "sensor_msgs/msg/CameraInfo", late)])
    assert run_bag(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC) == 0
    assert set(read_bag(tmp_path / "out")) == {"/cam/depth"}


def test_camera_info_pairing_on_bag_messages_nearest_stamp_then_latest():
    """The node's pairing class on rosbags messages, as `clip-depth bag` feeds it."""
    pairing = CameraInfoPairing(tolerance_s=0.01)
    a, b = info_msg(header(10, 0)), info_msg(header(20, 0))
    pairing.add(b, stamp_ns(b.header.stamp), received_ns=2_000)
    pairing.add(a, stamp_ns(a.header.stamp), received_ns=1_000)
    time = T["builtin_interfaces/msg/Time"]
    assert pairing.match(stamp_ns(time(sec=10, nanosec=5_000_000)), 5_000) is a  # within 10 ms
    assert pairing.match(stamp_ns(time(sec=15, nanosec=0)), 1_500) is a  # latest received
    assert pairing.match(stamp_ns(time(sec=15, nanosec=0)), 9_000) is b
    assert pairing.match(stamp_ns(time(sec=15, nanosec=0)), 500) is None  # none received yet


def test_one_reader_for_folders_and_storage_files(tmp_path):
    """The shared reader (also the training tools'): a storage file opens its bag, a topic of
    another type is named, and clip-depth bag takes the single file too."""
    src = tmp_path / "in"
    sent = write_bag(src, "mcap", frames=2)
    (storage_file,) = src.glob("*.mcap")
    images = list(iter_bag_images(storage_file, IMAGE_TOPIC))
    assert [received for _, _, received in images] == [received for received, _ in sent]
    assert all(rgb.shape == (H, W, 3) for _, rgb, _ in images)
    assert bag_topic_count(src, IMAGE_TOPIC) == 2
    with pytest.raises(BagError, match=f"sensor_msgs/msg/CameraInfo on '{INFO_TOPIC}'"):
        bag_topic_count(src, INFO_TOPIC)
    assert run_bag(storage_file, tmp_path / "out", "--image-topic", IMAGE_TOPIC) == 0
    assert len(read_bag(tmp_path / "out")["/cam/depth"]) == 2


def test_output_topics_follow_the_image_namespace():
    assert output_topics("/camera/image_raw") == {
        "depth": "/camera/depth", "info": "/camera/depth/camera_info",
        "points": "/camera/points", "confidence": "/camera/depth/confidence"}
    assert image_namespace("/front/cam/image_raw/compressed") == "/front/cam"
    assert output_topics("/image")["depth"] == "/depth"


def test_corrupt_frame_is_skipped_and_counted(tmp_path, capsys):
    src = tmp_path / "in"
    sent = write_bag(src, "mcap", kind="jpeg", frames=3, corrupt=1)
    assert run_bag(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC) == 0
    assert "skipped 1 (bad_image: OpenCV could not decode" in capsys.readouterr().out
    out = read_bag(tmp_path / "out")
    assert [r for r, _ in out["/cam/depth"]] == [sent[0][0], sent[2][0]]


def one_line_error(capsys, code: int, *needles: str) -> str:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_missing_input_bag(tmp_path, capsys):
    one_line_error(capsys, run_bag(tmp_path / "nope", tmp_path / "out"), "not found",
                   str(tmp_path / "nope"))
    assert not (tmp_path / "out").exists()


def test_existing_output_is_never_overwritten(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_bag(src, frames=1)
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    one_line_error(capsys, run_bag(src, dst, "--image-topic", IMAGE_TOPIC), "exists")
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]


def test_missing_topic_lists_the_image_topics(tmp_path, capsys):
    src = tmp_path / "in"
    write_bag(src, "mcap", kind="jpeg", frames=1)
    err = one_line_error(capsys, run_bag(src, tmp_path / "out", "--image-topic", "/nope"),
                         "/nope", IMAGE_TOPIC, "sensor_msgs/msg/CompressedImage")
    assert INFO_TOPIC not in err  # only image topics are listed
    assert not (tmp_path / "out").exists()


def test_unsupported_message_type(tmp_path, capsys):
    src = tmp_path / "in"
    text = T["std_msgs/msg/String"](data="hello")
    write_bag(src, frames=1, extra=[("/chatter", "std_msgs/msg/String", text)])
    one_line_error(capsys, run_bag(src, tmp_path / "out", "--image-topic", "/chatter"),
                   "std_msgs/msg/String", "unsupported")


def test_named_camera_info_topic_must_exist(tmp_path, capsys):
    src = tmp_path / "in"
    write_bag(src, frames=1)
    one_line_error(capsys, run_bag(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC,
                                   "--camera-info-topic", "/cam/nope"), "/cam/nope", INFO_TOPIC)


def test_command_line_exit_code_and_no_rclpy(tmp_path):
    """The real console entry point in a fresh interpreter: converts an MCAP bag, exits 2 on
    a missing input with one line on stderr, and never imports rclpy or message packages."""
    src = tmp_path / "in"
    write_bag(src, "mcap", frames=1)
    script = (
        "import sys\n"
        "from clip_depth_ros.cli import main\n"
        f"code = main(['bag', {str(src)!r}, {str(tmp_path / 'out')!r}, '--image-topic', "
        f"{IMAGE_TOPIC!r}] + {MODEL_ARGS!r})\n"
        "assert code == 0, code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rclpy', 'sensor_msgs', 'std_msgs', 'rcl_interfaces', 'training'))\n"
        "print('FORBIDDEN:' + ','.join(bad))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FORBIDDEN:\n" in proc.stdout, proc.stdout
    assert len(read_bag(tmp_path / "out")["/cam/depth"]) == 1
    proc = subprocess.run([sys.executable, "-m", "clip_depth_ros.cli", "bag",
                           str(tmp_path / "missing"), str(tmp_path / "out2")], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bag_messages_are_what_the_live_node_would_publish(tmp_path):
    """rclpy reads the bag's records, and they equal the node's own encoders' output (field by
    field: CDR padding bytes are unspecified, so the serialised bytes may differ there)."""
    import rclpy.serialization as serialization
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from clip_depth_ros.ros.conversions import (intrinsics_to_camera_info, numpy_to_image,
                                                points_to_pointcloud2)
    src = tmp_path / "in"
    write_bag(src, "sqlite3", frames=1, info_scale=2)
    assert run_bag(src, tmp_path / "out", "--image-topic", IMAGE_TOPIC) == 0
    raw = {}
    with Reader(tmp_path / "out") as reader:
        for conn, _, data in reader.messages():
            raw[conn.topic] = data

    def read(topic: str, msg_type: type):
        return serialization.deserialize_message(raw[topic], msg_type)

    def same(node_msg, topic: str, msg_type: type) -> bool:
        # through the same deserialiser, so array types match
        return read(topic, msg_type) == serialization.deserialize_message(
            serialization.serialize_message(node_msg), msg_type)

    depth = read("/cam/depth", Image)
    info = read("/cam/depth/camera_info", CameraInfo)
    cloud = read("/cam/points", PointCloud2)
    assert same(numpy_to_image(image_to_numpy(depth), "32FC1", depth.header), "/cam/depth",
                Image)
    assert same(intrinsics_to_camera_info(camera_info_to_intrinsics(info), info.header,
                                          template=info), "/cam/depth/camera_info", CameraInfo)
    xyz = pointcloud2_to_array(cloud)
    bits = np.ascontiguousarray(xyz["rgb"]).view(np.uint32)
    rgb = np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], -1).astype(np.uint8)
    node_cloud = points_to_pointcloud2(
        cloud_body(np.stack([xyz["x"], xyz["y"], xyz["z"]], -1), rgb), cloud.header)
    assert same(node_cloud, "/cam/points", PointCloud2)
