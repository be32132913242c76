"""clip_depth_ros: CLIP-based monocular metric depth for ROS 2.

The runtime core (config, model, geometry, colorize, backends, pipeline) imports neither
rclpy nor the training package; ROS lives only in ``clip_depth_ros.ros``.
"""
__version__ = "0.1.0"
