"""`clip-depth node`: the troubleshooting steps of a pip-only install, through rclpy alone.

A pip install has rclpy but not the ros2 command line (ros2cli is no wheel).  Each mode is
the counterpart of one ``ros2`` command:

  clip-depth node state                    ros2 lifecycle get /clip_depth_node
  clip-depth node transition configure     ros2 lifecycle set /clip_depth_node configure
  clip-depth node param get [NAME ...]     ros2 param get /clip_depth_node NAME (all: dump)
  clip-depth node param set NAME VALUE     ros2 param set /clip_depth_node NAME VALUE
  clip-depth node diagnostics              ros2 topic echo /diagnostics --once
  clip-depth node hz TOPIC                 ros2 topic hz TOPIC

Run it with the node's DDS settings (ROS_DOMAIN_ID, RMW_IMPLEMENTATION, FASTDDS_* variables).
A mistake (unknown parameter, a value of the wrong type, a transition the state does not
allow) prints one line and exits 2; a node that does not answer or refuses exits 1.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from typing import Any, Callable, Optional

from ..errors import ClipDepthError

DEFAULT_NODE = "/clip_depth_node"
TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")
# rcl_interfaces/msg/ParameterType: type id -> (name, ParameterValue field)
PARAM_FIELDS = {1: ("bool", "bool_value"), 2: ("integer", "integer_value"),
                3: ("double", "double_value"), 4: ("string", "string_value"),
                5: ("byte_array", "byte_array_value"), 6: ("bool_array", "bool_array_value"),
                7: ("integer_array", "integer_array_value"),
                8: ("double_array", "double_array_value"),
                9: ("string_array", "string_array_value")}


class NodeToolError(ClipDepthError):
    """A request the node cannot serve as asked (exit status in ``code``)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `clip-depth node` (argparse only: rclpy loads when a mode runs)."""
    parser.description = __doc__.split("\n\n")[0]
    node_help = (f"fully qualified node name (default {DEFAULT_NODE}; with a namespace e.g. "
                 "/front/clip_depth_node)")
    wait_help = "seconds to wait for the node or a message (default 5)"
    parser.add_argument("--node", default=DEFAULT_NODE, help=node_help)
    parser.add_argument("--timeout", type=float, default=5.0, help=wait_help)
    # the same options after the mode too; SUPPRESS keeps a value given before the mode
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--node", default=argparse.SUPPRESS, help=node_help)
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help=wait_help)
    modes = parser.add_subparsers(dest="node_mode", required=True, metavar="MODE")
    modes.add_parser("state", parents=[common], help="lifecycle state of the node")
    trans = modes.add_parser("transition", parents=[common],
                             help="trigger a lifecycle transition")
    trans.add_argument("transition", choices=TRANSITIONS)
    trans.add_argument("--wait", type=float, default=300.0,
                       help="seconds the transition may take (configure loads the model, a "
                       "first TensorRT engine build takes minutes; default %(default)s)")
    param = modes.add_parser("param", help="get or set parameters")
    actions = param.add_subparsers(dest="param_action", required=True, metavar="ACTION")
    get = actions.add_parser("get", parents=[common], help="values of parameters (all if "
                             "no NAME)")
    get.add_argument("names", nargs="*", metavar="NAME")
    put = actions.add_parser("set", parents=[common], help="set one parameter (VALUE is read "
                             "as the parameter's type)")
    put.add_argument("name", metavar="NAME")
    put.add_argument("value", metavar="VALUE")
    diag = modes.add_parser("diagnostics", parents=[common],
                            help="print the node's next /diagnostics status once")
    diag.add_argument("--any", action="store_true",
                      help="print the first status of any node, not only --node's")
    hz = modes.add_parser("hz", parents=[common], help="message rate of a topic")
    hz.add_argument("topic")
    hz.add_argument("--window", type=float, default=5.0,
                    help="seconds to count messages (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Run one `clip-depth node` mode; user mistakes print one line."""
    import rclpy
    handlers: dict[str, Callable[[Any, argparse.Namespace], None]] = {
        "state": _state, "transition": _transition, "param": _param,
        "diagnostics": _diagnostics, "hz": _hz}
    args.node = args.node if args.node.startswith("/") else "/" + args.node
    rclpy.init(args=[])
    node = rclpy.create_node(f"clip_depth_cli_{_unique()}")
    try:
        handlers[args.node_mode](node, args)
    except NodeToolError as exc:
        print(f"clip-depth node: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _unique() -> str:
    import os
    return f"{os.getpid()}_{time.monotonic_ns() % 100000}"


def _call(node: Any, srv_type: type, name: str, request: Any, timeout: float,
          answer_timeout: Optional[float] = None) -> Any:
    """One service call; a node that does not answer is a one-line error."""
    import rclpy
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise NodeToolError(
                f"no service {name} within {timeout:g} s: is the node running, under this name, "
                f"with the same ROS_DOMAIN_ID and DDS settings?", code=1)
        future = client.call_async(request)
        answer_timeout = timeout if answer_timeout is None else answer_timeout
        rclpy.spin_until_future_complete(node, future, timeout_sec=answer_timeout)
        if not future.done():
            raise NodeToolError(f"{name} did not answer within {answer_timeout:g} s", code=1)
        return future.result()
    finally:
        node.destroy_client(client)


def _get_state(node: Any, args: argparse.Namespace) -> Any:
    from lifecycle_msgs.srv import GetState
    return _call(node, GetState, f"{args.node}/get_state", GetState.Request(),
                 args.timeout).current_state


def _state(node: Any, args: argparse.Namespace) -> None:
    state = _get_state(node, args)
    print(f"{args.node}: {state.label} [{state.id}]")


def _transition(node: Any, args: argparse.Namespace) -> None:
    from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions
    available = _call(node, GetAvailableTransitions,
                      f"{args.node}/get_available_transitions",
                      GetAvailableTransitions.Request(), args.timeout).available_transitions
    by_label = {t.transition.label: t.transition for t in available}
    if args.transition not in by_label:
        state = _get_state(node, args)
        allowed = ", ".join(sorted(label for label in by_label if not label.startswith("on_")))
        raise NodeToolError(f"{args.node} is {state.label}: cannot {args.transition} "
                            f"(possible now: {allowed or 'none'})")
    request = ChangeState.Request()
    request.transition = by_label[args.transition]
    ok = _call(node, ChangeState, f"{args.node}/change_state", request, args.timeout,
               answer_timeout=args.wait).success
    state = _get_state(node, args)
    if not ok:
        raise NodeToolError(f"{args.transition} failed; {args.node} is {state.label} (the "
                            f"node's log says why)", code=1)
    print(f"{args.node}: {args.transition} ok, now {state.label}")


def _param(node: Any, args: argparse.Namespace) -> None:
    if args.param_action == "get":
        names = args.names or _list_parameters(node, args)
        for name, value in zip(names, _get_parameters(node, args, names)):
            type_name, field = PARAM_FIELDS[value.type]
            print(f"{name}: {_show(getattr(value, field))} ({type_name})")
        return
    _set_parameter(node, args)


def _list_parameters(node: Any, args: argparse.Namespace) -> list[str]:
    from rcl_interfaces.srv import ListParameters
    result = _call(node, ListParameters, f"{args.node}/list_parameters",
                   ListParameters.Request(), args.timeout).result
    return sorted(result.names)


def _get_parameters(node: Any, args: argparse.Namespace, names: list[str]) -> list[Any]:
    from rcl_interfaces.srv import GetParameters
    values = list(_call(node, GetParameters, f"{args.node}/get_parameters",
                        GetParameters.Request(names=list(names)), args.timeout).values)
    missing = [n for i, n in enumerate(names) if i >= len(values) or
               values[i].type not in PARAM_FIELDS]
    if missing:
        raise NodeToolError(f"{args.node} has no parameter {missing[0]!r} (list them with "
                            f"`clip-depth node param get`)")
    return values


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if value == "" else value
    if isinstance(value, bool):
        return str(value).lower()
    return str(list(value)) if not isinstance(value, (int, float)) else str(value)


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def parse_value(text: str, type_id: int) -> Any:
    """``text`` as a value of the parameter type ``type_id``; NodeToolError if it is not."""
    type_name, _ = PARAM_FIELDS[type_id]
    try:
        if type_id == 1:
            lowered = text.strip().lower()
            if lowered not in ("true", "false"):
                raise ValueError(text)
            return lowered == "true"
        if type_id == 2:
            return int(text)
        if type_id == 3:
            return float(text)
        if type_id == 4:
            return text
        import yaml
        items = yaml.safe_load(text)
        if not isinstance(items, list):
            raise ValueError(text)
        element = {5: bytes, 6: bool, 7: int, 8: float, 9: str}[type_id]
        if element is float:
            return [float(v) for v in items]
        if not all(isinstance(v, element) for v in items):
            raise ValueError(text)
        return items
    except (ValueError, TypeError, ImportError):
        raise NodeToolError(f"{text!r} is not {_a(type_name)}") from None


def _set_parameter(node: Any, args: argparse.Namespace) -> None:
    from rcl_interfaces.msg import Parameter, ParameterValue
    from rcl_interfaces.srv import SetParameters
    current = _get_parameters(node, args, [args.name])[0]
    type_name, field = PARAM_FIELDS[current.type]
    try:
        value = parse_value(args.value, current.type)
    except NodeToolError as exc:
        raise NodeToolError(f"{args.name} is {_a(type_name)}: {exc}") from None
    new = ParameterValue(type=current.type)
    setattr(new, field, value)
    request = SetParameters.Request(parameters=[Parameter(name=args.name, value=new)])
    result = _call(node, SetParameters, f"{args.node}/set_parameters", request,
                   args.timeout).results[0]
    if not result.successful:
        raise NodeToolError(f"{args.name} not set: {result.reason or 'refused by the node'}")
    print(f"{args.name} set to {_show(value)}")


def _wait(node: Any, done: Callable[[], bool], seconds: float) -> None:
    import rclpy
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=min(0.1, max(0.0, deadline - time.monotonic())))


def _best_effort(depth: int = 10) -> Any:
    """Best effort matches reliable and best-effort publishers alike."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.BEST_EFFORT)


def _diagnostics(node: Any, args: argparse.Namespace) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    found: list[Any] = []

    def keep(msg: Any) -> None:
        found.extend(s for s in msg.status if args.any or s.name.startswith(args.node + ":")
                     or s.name.startswith(args.node.lstrip("/") + ":"))
    node.create_subscription(DiagnosticArray, "/diagnostics", keep, _best_effort())
    _wait(node, lambda: bool(found), args.timeout)
    if not found:
        who = "any node" if args.any else args.node
        raise NodeToolError(f"no /diagnostics status from {who} within {args.timeout:g} s",
                            code=1)
    levels = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}
    status = found[0]
    level = status.level if isinstance(status.level, int) else ord(status.level)
    print(f"{status.name}: {levels.get(level, level)} - {status.message}")
    for kv in status.values:
        print(f"  {kv.key}: {kv.value}")


def message_type(type_name: str) -> type:
    """'sensor_msgs/msg/Image' -> the message class."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _topic_type(node: Any, topic: str, timeout: float) -> type:
    types: dict[str, list[str]] = {}

    def seen() -> bool:
        types.update(dict(node.get_topic_names_and_types()))
        return topic in types
    _wait(node, seen, timeout)
    if topic not in types:
        raise NodeToolError(f"no publisher of {topic} seen within {timeout:g} s (topic names "
                            f"are absolute here: /depth, /front/depth)", code=1)
    try:
        return message_type(types[topic][0])
    except (ImportError, AttributeError, ValueError):
        raise NodeToolError(f"{topic} has type {types[topic][0]}, whose Python package is not "
                            f"installed", code=1) from None


def _hz(node: Any, args: argparse.Namespace) -> None:
    topic = args.topic if args.topic.startswith("/") else "/" + args.topic
    stamps: list[float] = []
    node.create_subscription(_topic_type(node, topic, args.timeout), topic,
                             lambda _msg: stamps.append(time.monotonic()), _best_effort(),
                             raw=True)
    _wait(node, lambda: False, args.window)
    if len(stamps) < 2:
        raise NodeToolError(f"{topic}: {len(stamps)} message(s) in {args.window:g} s, no rate",
                            code=1)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    print(f"{topic}: average rate {rate:.2f} Hz over {len(stamps)} messages in "
          f"{args.window:g} s (gap min {min(gaps) * 1e3:.0f} ms, max {max(gaps) * 1e3:.0f} ms)")


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m clip_depth_ros.ros.tools MODE ...` (same as `clip-depth node`)."""
    parser = argparse.ArgumentParser(prog="clip-depth node")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
