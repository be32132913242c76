"""clip-depth bag with the node's trust options: a sparse_depth topic anchors the metres."""
from __future__ import annotations

import numpy as np

from clip_depth_ros.image_codec import image_to_numpy
from test_bag import H, IMAGE_TOPIC, MODEL_ARGS, TS, W, T, header, read_bag, run_bag, write_bag

SPARSE_TOPIC = "/cam/sparse_depth"


def _sparse_msg(sec: int, metres: float, nanosec: int = 250_000_000):
    sparse = np.full((H // 2, W // 2), np.nan, np.float32)  # another resolution, same aspect
    sparse[::3, ::3] = metres
    return T["sensor_msgs/msg/Image"](header=header(sec, nanosec), height=H // 2, width=W // 2,
                                      encoding="32FC1", is_bigendian=0, step=W // 2 * 4,
                                      data=sparse.reshape(-1).view(np.uint8))


def test_sparse_depth_topic_anchors_the_frame_of_its_stamp(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    # one measurement, stamped like the second frame: that frame is anchored, the others
    # fall back (first: nothing yet; third: the held last good scale), as in the node
    write_bag(src, frames=3, extra=[(SPARSE_TOPIC, "sensor_msgs/msg/Image",
                                     _sparse_msg(101, 2.5))])
    assert run_bag(src, dst, "--image-topic", IMAGE_TOPIC, "--scale-anchor", "sparse_depth",
                   "--sparse-depth-topic", SPARSE_TOPIC, "--no-copy-input") == 0
    depths = [image_to_numpy(m) for _, m in read_bag(dst)["/cam/depth"]]
    assert len(depths) == 3
    for depth in depths[1:]:  # the measured pixels set the metres (then the scale holds)
        assert abs(float(np.median(depth[::6, ::6])) / 2.5 - 1) < 0.1
    assert abs(float(np.median(depths[0][::6, ::6])) / 2.5 - 1) > 0.1  # the model's own
    out = capsys.readouterr().out
    assert "scale anchor sparse_depth: last scale" in out and "sparse_depth_unpaired" in out


def test_sparse_depth_pairs_within_the_nodes_tolerance_not_the_camera_infos(tmp_path):
    # a LiDAR stamped 30 ms after the image: the node's sparse_depth_tolerance_s (0.05 s)
    # pairs it; --sparse-depth-tolerance-s 0.02 does not (the camera_info tolerance, 0.01 s,
    # has nothing to do with it)
    src = tmp_path / "in"
    write_bag(src, frames=1, extra=[(SPARSE_TOPIC, "sensor_msgs/msg/Image",
                                     _sparse_msg(100, 2.5, 280_000_000))])
    medians = []
    for name, extra in (("default", []), ("tight", ["--sparse-depth-tolerance-s", "0.02"])):
        dst = tmp_path / name
        assert run_bag(src, dst, "--image-topic", IMAGE_TOPIC, "--scale-anchor", "sparse_depth",
                       "--sparse-depth-topic", SPARSE_TOPIC, "--no-copy-input", *extra) == 0
        (_, msg), = read_bag(dst)["/cam/depth"]
        medians.append(float(np.median(image_to_numpy(msg)[::6, ::6])))
    assert abs(medians[0] / 2.5 - 1) < 0.1 and abs(medians[1] / 2.5 - 1) > 0.1


def test_trust_mistakes_are_one_line_and_write_nothing(tmp_path, capsys):
    src = tmp_path / "in"
    write_bag(src, frames=1)
    for extra in (["--scale-anchor", "sparse_depth"], ["--scale-anchor", "ground_plane"],
                  ["--camera-height-m", "-2"], ["--sparse-depth-fill"],
                  ["--sparse-depth-topic", SPARSE_TOPIC],
                  ["--sparse-depth-min-points", "1", "--sparse-depth-fill",
                   "--sparse-depth-topic", SPARSE_TOPIC],
                  ["--sparse-depth-tolerance-s", "-1"]):
        dst = tmp_path / f"out{len(extra)}{extra[-1]}"
        assert run_bag(src, dst, "--image-topic", IMAGE_TOPIC, *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0] and not dst.exists()
    assert TS is not None and MODEL_ARGS


def test_sparse_depth_fill_keeps_the_measured_pixels_of_the_paired_frame(tmp_path):
    # the node's sparse_depth_fill without an anchor: measured pixels as measured (the
    # half-resolution measurements cover their 2x2 pixels), the rest the model's own depth
    src, dst = tmp_path / "in", tmp_path / "out"
    write_bag(src, frames=2, extra=[(SPARSE_TOPIC, "sensor_msgs/msg/Image",
                                     _sparse_msg(101, 2.5))])
    assert run_bag(src, dst, "--image-topic", IMAGE_TOPIC, "--sparse-depth-fill",
                   "--sparse-depth-topic", SPARSE_TOPIC, "--no-copy-input") == 0
    plain, filled = [image_to_numpy(m) for _, m in read_bag(dst)["/cam/depth"]]
    measured = np.zeros((H, W), bool)
    measured[::6, ::6] = measured[1::6, ::6] = measured[::6, 1::6] = measured[1::6, 1::6] = True
    assert (filled[measured] == 2.5).all() and not (plain == 2.5).any()
    assert np.isfinite(filled).all() and (filled[~measured] != 2.5).all()


def test_confidence_is_written_as_the_node_publishes_it(tmp_path, capsys):
    # --confidence: <image ns>/depth/confidence beside depth, same header and size, 32FC1 in
    # [0, 1] with NaN exactly where depth is invalid (the node's depth/confidence contract)
    src, dst = tmp_path / "in", tmp_path / "out"
    write_bag(src, frames=2)
    assert run_bag(src, dst, "--image-topic", IMAGE_TOPIC, "--confidence",
                   "--no-copy-input") == 0
    bag = read_bag(dst)
    depths, confs = bag["/cam/depth"], bag["/cam/depth/confidence"]
    assert len(confs) == len(depths) == 2
    for (_, depth_msg), (_, conf_msg) in zip(depths, confs):
        assert conf_msg.header.stamp == depth_msg.header.stamp
        assert conf_msg.header.frame_id == depth_msg.header.frame_id
        assert conf_msg.encoding == "32FC1"
        depth, conf = image_to_numpy(depth_msg), image_to_numpy(conf_msg)
        assert conf.shape == depth.shape
        valid = np.isfinite(depth) & (depth > 0)
        assert np.array_equal(np.isnan(conf), ~valid)
        assert (conf[valid] >= 0).all() and (conf[valid] <= 1).all() and conf[valid].std() > 0
    assert ", 2 confidence" in capsys.readouterr().out
    # without --confidence nothing is written there
    plain = tmp_path / "plain"
    assert run_bag(src, plain, "--image-topic", IMAGE_TOPIC, "--no-copy-input") == 0
    assert "/cam/depth/confidence" not in read_bag(plain)
