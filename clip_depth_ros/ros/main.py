"""Entry point: ``ros2 run clip_depth_ros depth_node --ros-args --params-file config/depth.yaml``."""
from __future__ import annotations

import sys
from typing import Optional

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn

from .node import DepthNode


def main(args: Optional[list[str]] = None) -> int:
    """Run the depth node until shutdown; with autostart it configures and activates itself."""
    rclpy.init(args=args)
    node = DepthNode()
    try:
        if node.p("autostart"):
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            else:
                node.get_logger().error("autostart: configure failed; the node stays "
                                        "unconfigured (fix the parameters and configure again)")
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
