"""ROS 2 adapters: message conversions, the node and its entry points (the only rclpy users)."""
