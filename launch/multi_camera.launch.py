"""Launch one depth node per camera: front/ and rear/ (topics and parameters kept apart).

ros2 launch clip_depth_ros multi_camera.launch.py [params_file:=...]
    [front_image:=/front/camera/image_raw] [front_camera_info:=/front/camera/camera_info]
    [rear_image:=/rear/camera/image_raw] [rear_camera_info:=/rear/camera/camera_info]

Each node runs in its own namespace, so its outputs are /front/depth, /front/points, ... and
/rear/depth, ...; the image and camera_info remaps default to the relative names (/front/image,
/front/camera_info).  Both nodes read the same parameters file, config/depth.yaml, whose
`/**/clip_depth_node:` key matches the node in any namespace.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

CAMERAS = ("front", "rear")
NODE_NAME = "clip_depth_node"


def _depth_nodes(context, *args, **kwargs) -> list:
    params = LaunchConfiguration("params_file").perform(context)
    nodes = []
    for camera in CAMERAS:
        image = LaunchConfiguration(f"{camera}_image").perform(context)
        nodes.append(LifecycleNode(
            package="clip_depth_ros", executable="depth_node", name=NODE_NAME,
            namespace=camera, output="screen", parameters=[params],
            remappings=[("image", image), ("image/compressed", image + "/compressed"),
                        ("camera_info",
                         LaunchConfiguration(f"{camera}_camera_info").perform(context))]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    """Two depth nodes (front/, rear/) with per-camera remaps and a shared params file."""
    share = get_package_share_directory("clip_depth_ros")
    args = [DeclareLaunchArgument("params_file",
                                  default_value=os.path.join(share, "config", "depth.yaml"),
                                  description="Node parameters (YAML), shared by both nodes.")]
    for camera in CAMERAS:
        args += [
            DeclareLaunchArgument(f"{camera}_image", default_value="image",
                                  description=f"Input image topic of the {camera} camera "
                                              "(relative names resolve in its namespace)."),
            DeclareLaunchArgument(f"{camera}_camera_info", default_value="camera_info",
                                  description=f"Input camera_info topic of the {camera} "
                                              "camera."),
        ]
    return LaunchDescription(args + [OpaqueFunction(function=_depth_nodes)])
