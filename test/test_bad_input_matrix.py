"""Bad-input matrix against live node processes: every malformed or unusual input, one at a time.

One node process (namespace /matrix, raw input) gets every case below in order; the compressed
cases need ``input_transport: compressed`` and go to a second process (namespace /jpeg, its
/diagnostics remapped to /jpeg/diagnostics so the two reports never mix).  Each case states its
expected outcome next to it and records what it observed; the last test sends a good frame,
checks /diagnostics counted every kind of rejection, and prints the table (run with -s).

Not repeated here: camera_info that never arrives is covered by
test_node_startup.py::test_without_camera_info_depth_flows_points_do_not_and_one_warning.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from clip_depth_ros.ros.conversions import image_to_numpy, rgb8_to_compressed
from ros_harness import RELIABLE, Probe, camera_info, node_process, rgb_image

pytestmark = [pytest.mark.ros]
W, H = 160, 120
MAX_PIXELS = 1_000_000  # far above W x H, far below 10000 x 10000
FRAME = "matrix_optical"
OBSERVED: dict[str, tuple[str, str]] = {}  # kind -> (expected, observed), for the table


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    """Both node processes, a probe on their outputs, and reliable input publishers."""
    logs = tmp_path_factory.mktemp("matrix")
    rclpy.init()
    with node_process("-p", f"max_image_pixels:={MAX_PIXELS}", "-p",
                      "diagnostics_period_s:=0.25", namespace="/matrix",
                      log_path=logs / "raw.log") as raw, \
            node_process("-p", "input_transport:=compressed", "-p",
                         "diagnostics_period_s:=0.25", "-r", "/diagnostics:=/jpeg/diagnostics",
                         namespace="/jpeg", log_path=logs / "jpeg.log") as jpeg:
        probe = Probe("matrix_probe")
        for topic, msg_type in (("/matrix/depth", Image), ("/matrix/points", PointCloud2),
                                ("/matrix/depth/camera_info", CameraInfo),
                                ("/diagnostics", DiagnosticArray), ("/jpeg/depth", Image),
                                ("/jpeg/diagnostics", DiagnosticArray)):
            probe.subscribe(msg_type, topic)
        pubs = {"image": probe.node.create_publisher(Image, "/matrix/image", RELIABLE),
                "info": probe.node.create_publisher(CameraInfo, "/matrix/camera_info",
                                                    RELIABLE),
                "jpeg": probe.node.create_publisher(CompressedImage, "/jpeg/image/compressed",
                                                    RELIABLE)}
        for name, pub in pubs.items():
            log = logs / ("jpeg.log" if name == "jpeg" else "raw.log")
            probe.wait_for(lambda: pub.get_subscription_count() > 0
                           or "configure failed" in log.read_text(), 180)
            assert pub.get_subscription_count() > 0, \
                f"{name}: node never subscribed; log:\n{log.read_text()}"
        assert probe.wait_for(lambda: probe.messages("/diagnostics")
                              and probe.messages("/jpeg/diagnostics"), 20)
        time.sleep(0.5)
        yield {"probe": probe, "raw_proc": raw, "jpeg_proc": jpeg, "logs": logs, **pubs}
        probe.close()
    rclpy.shutdown()


# ----------------------------------------------------------------------------- helpers
def st(case: int, i: int = 0) -> Time:
    """Stamps increase with the case number, so only the backwards case goes backwards."""
    return Time(sec=10_000 + 100 * case + i, nanosec=500)


def diag(m, topic: str = "/diagnostics") -> dict[str, str]:
    msgs = m["probe"].messages(topic)
    return {kv.key: kv.value for kv in msgs[-1].status[0].values} if msgs else {}


def count(m, key: str, topic: str = "/diagnostics") -> int:
    return int(diag(m, topic).get(key, 0))


def wait_count(m, key: str, at_least: int, topic: str = "/diagnostics",
               timeout: float = 20.0) -> int:
    m["probe"].wait_for(lambda: count(m, key, topic) >= at_least, timeout)
    return count(m, key, topic)


def outputs(m, topic: str, stamp: Time) -> list:
    return [x for x in m["probe"].messages(topic) if x.header.stamp == stamp]


def wait_depth(m, stamp: Time, topic: str = "/matrix/depth", timeout: float = 30.0):
    assert m["probe"].wait_for(lambda: outputs(m, topic, stamp), timeout), \
        f"no depth for {stamp}; log:\n{(m['logs'] / 'raw.log').read_text()[-3000:]}"
    return outputs(m, topic, stamp)[0]


def good_info(stamp: Time, **kw) -> CameraInfo:
    params = dict(width=W, height=H, fx=150.0, fy=148.0, cx=79.5, cy=59.5)
    return camera_info(stamp=stamp, frame_id=FRAME, **{**params, **kw})


def image(stamp: Time, seed: int = 0) -> Image:
    return rgb_image(W, H, stamp, seed=seed, frame_id=FRAME)


def reject(m, msg, reason: str = "bad_image", topic: str = "/diagnostics",
           depth_topic: str = "/matrix/depth", pub: str = "image") -> str:
    """Publish one bad frame; expect rejected_<reason> +1 and no depth for its stamp."""
    key = f"rejected_{reason}"
    before = count(m, key, topic)
    m[pub].publish(msg)
    after = wait_count(m, key, before + 1, topic)
    time.sleep(0.2)
    assert after == before + 1, f"{key}: {before} -> {after}"
    assert not outputs(m, depth_topic, msg.header.stamp), "a rejected frame produced depth"
    assert m["raw_proc"].poll() is None and m["jpeg_proc"].poll() is None, "a node died"
    return f"{key} +1, no depth"


def accept(m, msg) -> np.ndarray:
    """Publish one frame that must be answered; its depth (finite, model range) back."""
    m["image"].publish(msg)
    depth = wait_depth(m, msg.header.stamp)
    assert (depth.width, depth.height, depth.encoding) == (msg.width, msg.height, "32FC1")
    assert depth.header.frame_id == msg.header.frame_id
    depth_m = image_to_numpy(depth)
    assert np.isfinite(depth_m).all() and depth_m.min() > 0
    return depth_m


# ----------------------------------------------------------------------------- the cases
def case_info_late(m) -> str:
    """Must run first (no camera_info seen yet): image, info 0.2 s later, next frame."""
    first = image(st(1))
    m["image"].publish(first)
    time.sleep(0.2)
    wait_depth(m, first.header.stamp)
    m["info"].publish(good_info(st(1)))
    time.sleep(0.2)
    second = image(st(1, 50), seed=1)  # stamp 50 s away: paired through use_latest_camera_info
    m["image"].publish(second)
    wait_depth(m, second.header.stamp)
    assert m["probe"].wait_for(lambda: outputs(m, "/matrix/points", second.header.stamp), 10)
    assert not outputs(m, "/matrix/points", first.header.stamp)
    return "1st frame depth only; next frame depth + points"


def _bad(stamp: Time, **fields) -> Image:
    msg = image(stamp)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def case_step_small(m) -> str:
    return reject(m, _bad(st(2), step=W * 3 - 1))


def case_data_short(m) -> str:
    return reject(m, _bad(st(3), data=bytes(W * 3 * H - 1)))


def case_data_long(m) -> str:
    msg = image(st(4))
    msg.data = bytes(msg.data) + bytes(1000)
    accept(m, msg)
    return "accepted: depth 160x120, extra bytes ignored"


def case_unknown_encoding(m) -> str:
    return reject(m, _bad(st(5), encoding="bayer_unicorn16"))


def case_zero_width(m) -> str:
    return reject(m, _bad(st(6), width=0, step=0))


def case_zero_height(m) -> str:
    return reject(m, _bad(st(7), height=0, data=b""))


def case_huge_header(m) -> str:
    msg = _bad(st(8), width=10_000, height=10_000, step=30_000, data=bytes(16))
    return reject(m, msg, reason="too_large")


def case_nan_inf_float(m) -> str:
    pixels = np.ones((H, W), np.float32)
    pixels[::2] = np.nan
    pixels[1::4] = np.inf
    pixels[3::4] = -np.inf
    return reject(m, _bad(st(9), encoding="32FC1", step=W * 4, data=pixels.tobytes()))


def case_odd_width_yuv(m) -> str:
    return reject(m, _bad(st(10), width=W - 1, encoding="yuv422", step=(W - 1) * 2,
                          data=bytes((W - 1) * 2 * H)))


def _flat(stamp: Time, value: int) -> Image:
    return _bad(stamp, data=bytes([value]) * (W * H * 3))


def case_all_black(m) -> str:
    depth_m = accept(m, _flat(st(11), 0))
    return f"accepted: depth finite, {depth_m.min():.2f}-{depth_m.max():.2f} m"


def case_all_white(m) -> str:
    depth_m = accept(m, _flat(st(12), 255))
    return f"accepted: depth finite, {depth_m.min():.2f}-{depth_m.max():.2f} m"


def case_zero_focal(m) -> str:
    before = count(m, "camera_info_invalid")
    m["info"].publish(good_info(st(13), fx=0.0, fy=0.0))
    time.sleep(0.1)
    accept(m, image(st(13)))
    time.sleep(0.5)
    assert not outputs(m, "/matrix/points", st(13))
    assert wait_count(m, "camera_info_invalid", before + 1) == before + 1
    assert count(m, "rejected_bad_camera_info") == 0  # published: not a rejection
    return "depth, no points, camera_info_invalid +1"


def case_info_other_size(m) -> str:
    m["info"].publish(good_info(st(14), width=2 * W, height=2 * H, fx=300.0, fy=296.0,
                                cx=159.5, cy=119.5))
    time.sleep(0.1)
    accept(m, image(st(14)))
    assert m["probe"].wait_for(lambda: outputs(m, "/matrix/points", st(14)), 10)
    info = outputs(m, "/matrix/depth/camera_info", st(14))[0]
    assert (info.width, info.height) == (W, H)
    assert list(info.k) == pytest.approx([150.0, 0, 79.5, 0, 148.0, 59.5, 0, 0, 1])
    return "depth + points; K scaled to 160x120"


def case_stamps_backwards(m) -> str:
    before = count(m, "stamps_backwards")
    accept(m, image(st(15, 50)))
    accept(m, image(st(15, 10)))  # earlier than the frame before
    assert wait_count(m, "stamps_backwards", before + 1) == before + 1
    return "both accepted, stamps_backwards +1"


def case_burst(m) -> str:
    """1000 small frames in about one second: latest-frame-only keeps the node alive."""
    keys = ("frames_received", "frames_processed", "frames_dropped")
    time.sleep(0.5)
    before = {k: count(m, k) for k in keys}
    msg = rgb_image(64, 48, st(16), frame_id=FRAME)
    start = time.monotonic()
    for i in range(1000):
        msg.header.stamp = Time(sec=st(16).sec, nanosec=i * 1_000_000)
        m["image"].publish(msg)
        lag = start + (i + 1) / 1000 - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    elapsed = time.monotonic() - start
    time.sleep(3.0)  # let the last frame finish and diagnostics catch up
    after = {k: count(m, k) for k in keys}
    delta = {k: after[k] - before[k] for k in keys}
    assert m["raw_proc"].poll() is None, "node died in the burst"
    assert delta["frames_received"] >= 100, delta  # best effort may lose some in DDS
    assert delta["frames_processed"] * 5 < delta["frames_received"], delta
    assert delta["frames_dropped"] > 0, delta
    last = Time(sec=st(16).sec, nanosec=999 * 1_000_000)
    return (f"sent 1000 in {elapsed:.2f} s: received {delta['frames_received']}, processed "
            f"{delta['frames_processed']}, dropped {delta['frames_dropped']}; alive"
            + ("" if not outputs(m, "/matrix/depth", last) else "; last frame answered"))


def case_qos_incompatible(m) -> str:
    """Subscribers asking for transient_local or a deadline the node does not offer."""
    before = count(m, "qos_incompatible")
    node = m["probe"].node
    subs = [node.create_subscription(Image, "/matrix/depth", lambda _: None, QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL)),
            node.create_subscription(Image, "/matrix/depth", lambda _: None, QoSProfile(
                depth=1, deadline=Duration(seconds=0.1)))]
    try:
        assert wait_count(m, "qos_incompatible", before + 2) >= before + 2
        accept(m, image(st(17)))  # the compatible subscriber is still served
    finally:
        for sub in subs:
            node.destroy_subscription(sub)
    lines = [line for line in (m["logs"] / "raw.log").read_text().splitlines()
             if "incompatible QoS" in line]
    assert 1 <= len(lines) <= 2, lines  # throttled: not one line per event forever
    assert "/matrix/depth" in lines[0], lines[0]
    assert any(p in lines[0] for p in ("DURABILITY", "DEADLINE")), lines[0]
    return f"qos_incompatible +{count(m, 'qos_incompatible') - before}, {len(lines)} log " \
           f"line(s); good subscriber still served"


def _jpeg(stamp: Time, data: bytes, fmt: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp, msg.header.frame_id = stamp, FRAME
    return msg


def case_corrupt_jpeg(m) -> str:
    good = rgb8_to_compressed(np.zeros((H, W, 3), np.uint8), "jpeg")
    corrupt = bytes(good.data)[:200] + b"\x00garbage"
    result = reject(m, _jpeg(st(18), corrupt), topic="/jpeg/diagnostics",
                    depth_topic="/jpeg/depth", pub="jpeg")
    ok = _jpeg(st(18, 1), bytes(good.data))
    m["jpeg"].publish(ok)
    wait_depth(m, ok.header.stamp, topic="/jpeg/depth")
    return result + " (compressed node); next good jpeg answered"


def case_compressed_depth(m) -> str:
    return reject(m, _jpeg(st(19), b"\x00" * 64, "32FC1; compressedDepth png"),
                  topic="/jpeg/diagnostics", depth_topic="/jpeg/depth", pub="jpeg")


def case_empty_compressed(m) -> str:
    return reject(m, _jpeg(st(20), b""), topic="/jpeg/diagnostics",
                  depth_topic="/jpeg/depth", pub="jpeg")


@dataclass(frozen=True)
class Case:
    kind: str
    expected: str
    run: Callable


CASES = [
    Case("camera_info late (image, info 0.2 s later)", "depth only, next frame gets points",
         case_info_late),
    Case("step smaller than a row", "rejected_bad_image", case_step_small),
    Case("data shorter than height*step", "rejected_bad_image", case_data_short),
    Case("data longer than height*step", "accepted, depth published", case_data_long),
    Case("unknown encoding", "rejected_bad_image", case_unknown_encoding),
    Case("zero width", "rejected_bad_image", case_zero_width),
    Case("zero height", "rejected_bad_image", case_zero_height),
    Case("10000x10000 header, 16-byte buffer", "rejected_too_large before any allocation",
         case_huge_header),
    Case("32FC1 with NaN / +inf / -inf", "rejected_bad_image (not a colour image)",
         case_nan_inf_float),
    Case("yuv422 with odd width", "rejected_bad_image", case_odd_width_yuv),
    Case("rgb8 all black", "accepted, depth finite", case_all_black),
    Case("rgb8 all white", "accepted, depth finite", case_all_white),
    Case("camera_info with zero focal", "depth, no points, camera_info_invalid",
         case_zero_focal),
    Case("camera_info of another size (2x)", "depth + points, K scaled", case_info_other_size),
    Case("stamps going backwards", "accepted, stamps_backwards counted",
         case_stamps_backwards),
    Case("burst of 1000 messages in 1 s", "alive, processed << received, drops counted",
         case_burst),
    Case("QoS-incompatible subscribers (transient_local, deadline)",
         "warning logged (throttled), qos_incompatible counted, others served",
         case_qos_incompatible),
    Case("corrupt JPEG (compressed input)", "rejected_bad_image", case_corrupt_jpeg),
    Case("compressedDepth on the colour input", "rejected_bad_image", case_compressed_depth),
    Case("empty CompressedImage", "rejected_bad_image", case_empty_compressed),
]
CITED = ("camera_info never arrives", "depth only, no points, one warning",
         "covered by test_node_startup.py::"
         "test_without_camera_info_depth_flows_points_do_not_and_one_warning")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.run.__name__[5:])
def test_case(m, case):
    OBSERVED[case.kind] = (case.expected, "FAILED")
    OBSERVED[case.kind] = (case.expected, case.run(m))


def test_after_all_cases_a_good_frame_is_answered_and_every_rejection_counted(m):
    m["info"].publish(good_info(st(30)))
    time.sleep(0.1)
    accept(m, image(st(30)))
    assert m["probe"].wait_for(lambda: outputs(m, "/matrix/points", st(30)), 10)
    raw_kinds = {"rejected_bad_image": 7, "rejected_too_large": 1,
                 "camera_info_invalid": 1, "stamps_backwards": 1, "qos_incompatible": 2}
    for key, at_least in raw_kinds.items():
        assert wait_count(m, key, at_least) >= at_least, (key, diag(m))
    assert wait_count(m, "rejected_bad_image", 3, "/jpeg/diagnostics") >= 3
    assert int(diag(m)["frames_dropped"]) > 0
    assert m["raw_proc"].poll() is None and m["jpeg_proc"].poll() is None
    for log in ("raw.log", "jpeg.log"):
        assert "Traceback" not in (m["logs"] / log).read_text(), log
    rows = [(k, e, o) for k, (e, o) in OBSERVED.items()] + [CITED]
    width = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{k:{width}} | {e} | {o}" for k, e, o in rows))
    print("raw node diagnostics:", {k: v for k, v in diag(m).items()
                                    if k.startswith(("rejected_", "frames_", "stamps_",
                                                     "qos_"))})
    print("jpeg node diagnostics:", {k: v for k, v in diag(m, "/jpeg/diagnostics").items()
                                     if k.startswith("rejected_")})
