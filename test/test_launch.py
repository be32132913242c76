"""launch/depth.launch.py under launch_testing (needs a full ROS 2 install with launch_ros).

Run in a colcon workspace: `colcon test --packages-select clip_depth_ros` or
`pytest test/test_launch.py` with the workspace sourced.
"""
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_ros", reason="launch_ros is not installed (no pip wheel; needs a "
                                         "full ROS 2 install)")
# launch_testing comes with the same ROS 2 install as launch_ros
launch_testing = pytest.importorskip(
    "launch_testing", reason="launch_ros's launch_testing is not installed (needs a full ROS 2 "
                             "install)")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from ros_harness import RELIABLE, camera_info, rgb_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.launch_test
def generate_test_description():
    """The shipped launch file in namespace /launched, remapping image to /cam/image."""
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(ROOT / "launch" / "depth.launch.py")),
        launch_arguments={"params_file": str(ROOT / "config" / "depth.yaml"),
                          "namespace": "launched", "image": "/cam/image",
                          "camera_info": "/cam/camera_info", "use_rviz": "false"}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestLaunchedNodeServes(unittest.TestCase):
    """The launched node answers an image on the remapped topic with depth in its namespace."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("launch_probe")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_depth_in_namespace_from_remapped_input(self):
        received = []
        self.node.create_subscription(Image, "/launched/depth", received.append, RELIABLE)
        image_pub = self.node.create_publisher(Image, "/cam/image", RELIABLE)
        info_pub = self.node.create_publisher(CameraInfo, "/cam/camera_info", RELIABLE)
        deadline = time.monotonic() + 120
        i = 0
        while time.monotonic() < deadline and not received:
            stamp = self.node.get_clock().now().to_msg()
            info_pub.publish(camera_info(64, 48, 60.0, 60.0, 31.5, 23.5, stamp))
            image_pub.publish(rgb_image(64, 48, stamp, seed=i))
            rclpy.spin_once(self.node, timeout_sec=0.5)
            i += 1
        self.assertTrue(received, "no depth on /launched/depth")
        self.assertEqual((received[0].width, received[0].height), (64, 48))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """The node exits cleanly when the launch shuts down."""

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
