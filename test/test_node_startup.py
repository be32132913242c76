"""Node processes in unusual starting conditions, the params file, and the launch file."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import dds_shm

from clip_depth_ros.ros.params import PARAMS
from ros_harness import PARAMS_FILE, RELIABLE, ROOT, Probe, node_process, rgb_image
from waiting import wait_until

import rclpy

from builtin_interfaces.msg import Time  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, PointCloud2  # noqa: E402

from clip_depth_ros.ros.conversions import rgb8_to_compressed  # noqa: E402


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def test_params_file_lists_every_parameter_with_its_default():
    from clip_depth_ros.ros.params import params_yaml
    text = PARAMS_FILE.read_text()
    # the file is the table's own text (regenerate: python -m clip_depth_ros.ros.params),
    # so each numeric parameter's comment gives its range
    assert text == params_yaml()
    assert "    # Height of the camera's optical centre" in text and "Range: 0 to 10." in text
    data = yaml.safe_load(text)["/**/clip_depth_node"]["ros__parameters"]
    assert set(data) == {p.name for p in PARAMS}
    for spec in PARAMS:
        assert data[spec.name] == spec.default, spec.name
        assert type(data[spec.name]) is type(spec.default), spec.name


def test_every_parameter_has_a_description_and_numeric_ones_a_range():
    for spec in PARAMS:
        assert len(spec.description) > 15, spec.name
        if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
            assert spec.range is not None, f"{spec.name} needs a range"
            lo, hi, _ = spec.range
            assert lo <= spec.default <= hi


def _wait_subscribed(probe: Probe, pub, timeout: float = 120.0) -> None:
    assert probe.wait_for(lambda: pub.get_subscription_count() > 0, timeout)
    time.sleep(0.5)


@pytest.mark.ros
def test_without_camera_info_depth_flows_points_do_not_and_one_warning(ros, tmp_path):
    log = tmp_path / "node.log"
    with node_process(namespace="/nocam", log_path=log) as proc:
        probe = Probe("nocam_probe")
        probe.subscribe(Image, "/nocam/depth")
        probe.subscribe(PointCloud2, "/nocam/points")
        pub = probe.node.create_publisher(Image, "/nocam/image", RELIABLE)
        _wait_subscribed(probe, pub)
        for i in range(6):
            pub.publish(rgb_image(64, 48, Time(sec=i), seed=i))
            time.sleep(0.3)
        assert probe.wait_for(lambda: len(probe.messages("/nocam/depth")) >= 3, 20)
        assert probe.messages("/nocam/points") == []
        probe.close()
        assert proc.poll() is None
    warnings = [line for line in log.read_text().splitlines() if "no camera_info" in line]
    assert len(warnings) == 1, warnings


@pytest.mark.ros
def test_a_stopped_node_leaves_no_shared_memory_behind(ros, tmp_path):
    """SIGTERM while frames flow: the node's 64 MiB DDS segment goes with it (it used to
    stay in /dev/shm, in RAM, after every run: a CI machine ran out of memory on them)."""
    probe = Probe("shm_probe")
    probe.subscribe(Image, "/shm/depth")
    pub = probe.node.create_publisher(Image, "/shm/image", RELIABLE)
    before = dds_shm.segments()
    with node_process(namespace="/shm", log_path=tmp_path / "node.log"):
        _wait_subscribed(probe, pub)
        assert len(dds_shm.segments() - before) >= 1  # the node's own segment exists
        for i in range(4):
            pub.publish(rgb_image(64, 48, Time(sec=i), seed=i))
            time.sleep(0.3)
        assert probe.wait_for(lambda: len(probe.messages("/shm/depth")) >= 2, 20)
    probe.close()
    assert dds_shm.segments() - before == set()


@pytest.mark.ros
def test_corrupt_checkpoint_gives_one_clear_error_and_the_node_stays_up(ros, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    log = tmp_path / "node.log"
    with node_process("-p", f"weights:={bad}", namespace="/badckpt", log_path=log) as proc:
        probe = Probe("badckpt_probe")
        client = probe.node.create_client(GetState, "/badckpt/clip_depth_node/get_state")
        assert client.wait_for_service(timeout_sec=60), log.read_text()
        future = client.call_async(GetState.Request())
        assert probe.wait_for(future.done, 10)
        assert future.result().current_state.label == "unconfigured"
        time.sleep(1.0)
        assert proc.poll() is None, "node exited on a bad checkpoint"
        probe.close()
    text = log.read_text()
    errors = [line for line in text.splitlines() if "could not load the model" in line]
    assert len(errors) == 1 and str(bad) in errors[0], text
    assert "Traceback" not in text


def _call(probe: Probe, client, request, timeout: float = 30.0):
    # a service can be discovered before its reply writer has matched our reader, and a
    # request sent in that window gets no reply (seen once in a full-suite run): ask again
    for _ in range(3):
        future = client.call_async(request)
        if probe.wait_for(future.done, timeout / 3):
            return future.result()
        client.remove_pending_request(future)
    raise AssertionError(f"no reply from {client.srv_name} in {timeout:.0f} s (3 requests)")


@pytest.mark.ros
def test_bad_parameter_overrides_keep_the_node_up_until_they_are_fixed(ros, tmp_path):
    # a YAML bool for a string parameter and an integer out of its range: rclpy would raise
    # at declaration and end the process; the node says which and stays up, unconfigured
    log = tmp_path / "node.log"
    node = "/badparam/clip_depth_node"
    with node_process("-p", "torch_fast_path:=true", "-p", "point_stride:=0",
                      namespace="/badparam", log_path=log) as proc:
        probe = Probe("badparam_probe")
        get_state = probe.node.create_client(GetState, f"{node}/get_state")
        assert get_state.wait_for_service(timeout_sec=60), log.read_text()
        assert _call(probe, get_state, GetState.Request()).current_state.label == "unconfigured"
        change = probe.node.create_client(ChangeState, f"{node}/change_state")
        configure = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))
        assert not _call(probe, change, configure).success  # still refused: nothing fixed
        set_params = probe.node.create_client(SetParameters, f"{node}/set_parameters")
        fixed = _call(probe, set_params, SetParameters.Request(parameters=[
            Parameter("torch_fast_path", value="never").to_parameter_msg(),
            Parameter("point_stride", value=2).to_parameter_msg()]))
        assert all(r.successful for r in fixed.results), fixed
        assert _call(probe, change, configure, timeout=120).success, log.read_text()
        assert _call(probe, get_state, GetState.Request()).current_state.label == "inactive"
        assert proc.poll() is None
        probe.close()
    lines = log.read_text().splitlines()
    for name in ("torch_fast_path", "point_stride"):
        bad = [line for line in lines if f"parameter {name}: bad value given" in line]
        assert len(bad) == 1, lines
    assert "Traceback" not in log.read_text()


@pytest.mark.ros
def test_compressed_input_transport(ros, tmp_path):
    log = tmp_path / "node.log"
    with node_process("-p", "input_transport:=compressed", namespace="/jpeg",
                      log_path=log):
        probe = Probe("jpeg_probe")
        probe.subscribe(Image, "/jpeg/depth")
        pub = probe.node.create_publisher(CompressedImage, "/jpeg/image/compressed", RELIABLE)
        _wait_subscribed(probe, pub)
        rgb = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        msg = rgb8_to_compressed(rgb, "jpeg")
        msg.header.stamp, msg.header.frame_id = Time(sec=7), "cam"
        pub.publish(msg)
        assert probe.wait_for(lambda: len(probe.messages("/jpeg/depth")) >= 1, 20), \
            log.read_text()
        depth = probe.messages("/jpeg/depth")[0]
        assert (depth.width, depth.height, depth.header.frame_id) == (64, 48, "cam")
        probe.close()


@pytest.mark.ros
def test_params_file_applies_to_a_namespaced_node(ros, tmp_path):
    from rcl_interfaces.srv import GetParameters
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["/**/clip_depth_node"]["ros__parameters"]["max_image_pixels"] = 12345
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump(data))
    log = tmp_path / "node.log"
    with node_process("--params-file", str(custom), namespace="/nsparams", log_path=log):
        probe = Probe("nsparams_probe")
        client = probe.node.create_client(GetParameters,
                                          "/nsparams/clip_depth_node/get_parameters")
        assert client.wait_for_service(timeout_sec=60), log.read_text()
        future = client.call_async(GetParameters.Request(names=["max_image_pixels"]))
        assert probe.wait_for(future.done, 10)
        assert future.result().values[0].integer_value == 12345
        probe.close()


@pytest.mark.ros
def test_fast_path_node_publishes_rgb_points_built_on_the_device(ros, tmp_path):
    """torch_fast_path:=always (on the CPU here): the cloud body comes from the backend, with the
    image's colours packed in, and it reprojects onto the published depth image."""
    from sensor_msgs.msg import CameraInfo

    from clip_depth_ros.geometry import project_points
    from clip_depth_ros.ros.conversions import (camera_info_to_intrinsics, image_to_numpy,
                                                pointcloud2_to_array)
    from clip_depth_ros.geometry import unpack_rgb
    from ros_harness import camera_info

    log = tmp_path / "node.log"
    # edge_filter off: this test holds the device-built cloud to the depth image point for
    # point (test_node_live checks that the filter removes exactly the flying pixels)
    with node_process("-p", "torch_fast_path:=always", "-p", "point_stride:=2",
                      "-p", "edge_filter:=false", namespace="/fast", log_path=log) as proc:
        probe = Probe("fast_probe")
        for topic, kind in (("depth", Image), ("points", PointCloud2), ("depth/colored", Image),
                            ("depth/camera_info", CameraInfo)):
            probe.subscribe(kind, f"/fast/{topic}")
        pub = probe.node.create_publisher(Image, "/fast/image", RELIABLE)
        info_pub = probe.node.create_publisher(CameraInfo, "/fast/camera_info", RELIABLE)
        _wait_subscribed(probe, pub)
        image = rgb_image(160, 120, Time(sec=7), seed=7)
        info_pub.publish(camera_info(160, 120, 150.0, 150.0, 79.5, 59.5, Time(sec=7)))
        time.sleep(0.2)
        pub.publish(image)
        topics = ("/fast/depth", "/fast/points", "/fast/depth/colored", "/fast/depth/camera_info")
        assert probe.wait_for(lambda: all(probe.messages(t) for t in topics), 60), \
            log.read_text()
        assert "mode device path" in log.read_text()
        depth = image_to_numpy(probe.messages("/fast/depth")[0])
        intrinsics = camera_info_to_intrinsics(probe.messages("/fast/depth/camera_info")[0])
        cloud_msg = probe.messages("/fast/points")[0]
        assert [f.name for f in cloud_msg.fields] == ["x", "y", "z", "rgb"]
        assert (cloud_msg.height, cloud_msg.width) == (60, 80)
        cloud = pointcloud2_to_array(cloud_msg)
        np.testing.assert_allclose(cloud["z"], depth[::2, ::2], rtol=1e-6)
        xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)
        u, v = project_points(xyz, intrinsics)
        grid_v, grid_u = np.mgrid[0:120:2, 0:160:2]
        np.testing.assert_allclose(u, grid_u, atol=1e-3)
        np.testing.assert_allclose(v, grid_v, atol=1e-3)
        sent = image_to_numpy(image)
        np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), sent[::2, ::2])
        probe.close()
        assert proc.poll() is None


@pytest.mark.ros
def test_the_model_is_loaded_on_the_thread_that_runs_the_frames(ros, monkeypatch):
    # torch's OpenMP team belongs to the thread that starts it: loading (and the warm-up
    # frame) on the executor's thread and frames on the worker made the model 1.5x slower
    import threading

    from clip_depth_ros.ros import node as node_module

    calls = []
    real = node_module.create_backend

    def recording_create_backend(name, **kwargs):
        calls.append(("create", threading.current_thread().name))
        backend = real(name, **kwargs)
        infer = backend.infer_frame

        def recording_infer(*args, **kw):
            calls.append(("infer", threading.current_thread().name))
            return infer(*args, **kw)
        backend.infer_frame = recording_infer
        return backend

    monkeypatch.setattr(node_module, "create_backend", recording_create_backend)
    node = node_module.DepthNode(parameter_overrides=[
        Parameter("model", value="tiny-mirror"), Parameter("weights", value=""),
        Parameter("backbone_weights", value="random")])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert calls[0] == ("create", "depth_worker") and ("infer", "depth_worker") in calls
        loaded = len(calls)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        node._worker.put((rgb_image(64, 48, Time()), time.monotonic()))  # as _on_image does
        assert wait_until(lambda: len(calls) > loaded, 30), "the frame never reached the backend"
        assert {thread for _, thread in calls} == {"depth_worker"}
        assert threading.current_thread().name != "depth_worker"
    finally:
        node.destroy_node()
