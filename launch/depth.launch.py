"""Launch the depth node (and optionally RViz).

ros2 launch clip_depth_ros depth.launch.py [params_file:=...] [namespace:=front]
    [image:=/camera/image_raw] [camera_info:=/camera/camera_info]
    [sparse_depth:=/lidar/depth_image] [use_rviz:=true]

All node parameters live in config/depth.yaml; this file only wires topics.  RViz runs in the
node's namespace, so its relative topics (points, depth/colored, image) follow it; its fixed
frame is camera_optical_frame (change it in RViz to your camera's frame).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node


def generate_launch_description() -> LaunchDescription:
    """Depth node with remappable inputs, a params file, a namespace and optional RViz."""
    share = get_package_share_directory("clip_depth_ros")
    args = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config",
                                                                        "depth.yaml"),
                              description="Node parameters (YAML)."),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its topics."),
        DeclareLaunchArgument("image", default_value="image",
                              description="Input image topic (raw; .../compressed for "
                                          "input_transport: compressed)."),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="Input camera_info topic."),
        DeclareLaunchArgument("sparse_depth", default_value="sparse_depth",
                              description="Input sparse metric depth topic (scale_anchor "
                                          "sparse_depth, sparse_depth_fill)."),
        DeclareLaunchArgument("use_rviz", default_value="false",
                              description="Start RViz with config/depth.rviz."),
    ]
    image = LaunchConfiguration("image")
    depth_node = LifecycleNode(
        package="clip_depth_ros", executable="depth_node", name="clip_depth_node",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file")],
        remappings=[("image", image), ("image/compressed", [image, "/compressed"]),
                    ("camera_info", LaunchConfiguration("camera_info")),
                    ("sparse_depth", LaunchConfiguration("sparse_depth"))],
    )
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                namespace=LaunchConfiguration("namespace"), remappings=[("image", image)],
                arguments=["-d", os.path.join(share, "config", "depth.rviz")],
                condition=IfCondition(LaunchConfiguration("use_rviz")))
    return LaunchDescription(args + [depth_node, rviz])
