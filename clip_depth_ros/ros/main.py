"""Entry point: ``ros2 run clip_depth_ros depth_node --ros-args --params-file config/depth.yaml``.

``depth_node --help`` prints the usage and every parameter (from :data:`params.PARAMS`) without
starting ROS; a missing or unreadable ``--params-file`` or malformed ROS arguments print one
line and exit 2 instead of an RCLError traceback.
"""
from __future__ import annotations

import os
import sys
import textwrap
from typing import Optional

USAGE = """\
usage: depth_node [-h] [--ros-args [--params-file FILE] [-p NAME:=VALUE] [-r FROM:=TO] ...]

Monocular metric depth from one RGB camera (a ROS 2 lifecycle node, clip_depth_node).
Subscribes: image (sensor_msgs/Image; image/compressed with input_transport: compressed),
            camera_info (next to a remapped image unless camera_info is remapped too),
            sparse_depth.
Publishes:  depth (32FC1, metres), depth/camera_info, points (PointCloud2), depth/colored,
            depth/confidence, /diagnostics (from start-up).  The log's first lines name
            every topic, resolved.
With autostart (the default) it configures and activates itself; run it with the DDS
settings of the graph it joins (ROS_DOMAIN_ID, RMW_IMPLEMENTATION, FASTDDS_* variables).

examples:
  depth_node --ros-args --params-file {params} -r image:=/camera/color/image_raw
  depth_node --ros-args -p weights:=demo-mirror -p device:=cpu

parameters (-p NAME:=VALUE or a params file; shipped file with every default: {params}):
"""


def _split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(plain arguments, arguments inside --ros-args ... [--]) as rcl reads them."""
    plain: list[str] = []
    ros: list[str] = []
    inside = False
    for arg in argv:
        if arg == "--ros-args":
            inside = True
        elif arg == "--" and inside:
            inside = False
        else:
            (ros if inside else plain).append(arg)
    return plain, ros


def usage() -> str:
    """The --help text: usage, topics and each parameter with its default and description."""
    from ..resources import default_params_file
    from .params import PARAMS
    lines = [USAGE.format(params=default_params_file())]
    for spec in PARAMS:
        desc = spec.description + (f" One of: {', '.join(spec.choices)}." if spec.choices
                                   else "")
        default = repr(spec.default) if isinstance(spec.default, str) else str(spec.default)
        lines.append(f"  {spec.name} (default {default})")
        lines += textwrap.wrap(desc, 92, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines) + "\n"


def params_file_problem(ros_args: list[str]) -> Optional[str]:
    """Why a ``--params-file`` given in ``ros_args`` cannot be used, or None."""
    for flag, path in zip(ros_args, ros_args[1:] + [None]):
        if flag != "--params-file":
            continue
        if path is None:
            return "--params-file needs a file name"
        if not os.path.isfile(path):
            return f"params file {path} does not exist"
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            return f"params file {path} cannot be read ({exc.__class__.__name__}: {exc})"
        try:
            import yaml
            yaml.safe_load(text)
        except ImportError:
            pass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            return f"params file {path} is not valid YAML{where}"
    return None


def main(args: Optional[list[str]] = None) -> int:
    """Run the depth node until shutdown; with autostart it configures and activates itself."""
    plain, ros_args = _split_args(sys.argv[1:] if args is None else args)
    if "-h" in plain or "--help" in plain:
        print(usage(), end="")
        return 0
    problem = params_file_problem(ros_args)
    if problem:
        print(f"depth_node: {problem}", file=sys.stderr)
        return 2
    from ..model_thread import quiet_openmp_between_frames
    quiet_openmp_between_frames()  # before torch loads (model_thread.py says why)
    import rclpy
    try:
        rclpy.init(args=args)
    except RuntimeError as exc:  # rcl's RCLError: malformed --ros-args
        print(f"depth_node: bad ROS arguments: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return _spin()


def _spin() -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.lifecycle import TransitionCallbackReturn

    from .node import DepthNode
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
    except Exception:
        if rclpy.ok():
            raise
        # a callback (the diagnostics timer) published while SIGTERM was shutting the context
        # down: rcl refuses the publish ('context is invalid'); that is the shutdown, not a bug
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
