"""The depth node's topics: the names it listens and publishes on (camera_info next to a
remapped image), the one startup line that lists them resolved, the QoS profiles, and
publishers that report a subscriber asking for an incompatible QoS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind

from ..camera_sync import camera_info_topic
from ..health import NodeHealth


@dataclass(frozen=True)
class InputTopics:
    """The names the node subscribes with (relative ones follow namespaces and remaps)."""

    image: str
    camera_info: str
    sparse_depth: str
    camera_info_source: str  # why camera_info is that topic, for the log


def input_topics(node: Any, transport: str, follow_image: bool) -> InputTopics:
    """The input names.  camera_info follows the image (``<image ns>/camera_info``, as
    image_transport's camera subscriber and ``clip-depth bag``'s auto) when ``follow_image``
    and ``image`` is remapped but ``camera_info`` is not; else it is ``camera_info``."""
    image = "image/compressed" if transport == "compressed" else "image"
    resolved = node.resolve_topic_name(image)
    image_remapped = resolved != node.resolve_topic_name(image, only_expand=True)
    info_remapped = (node.resolve_topic_name("camera_info")
                     != node.resolve_topic_name("camera_info", only_expand=True))
    if follow_image and image_remapped and not info_remapped:
        return InputTopics(image, camera_info_topic(resolved), "sparse_depth",
                           "next to the remapped image")
    source = "remapped" if info_remapped else (
        "camera_info_follows_image off" if image_remapped else "next to the image")
    return InputTopics(image, "camera_info", "sparse_depth", source)


def topics_line(node: Any, inputs: InputTopics, transport: str,
                outputs: Iterable[str]) -> str:
    """The startup line: every topic the node listens and publishes on, resolved."""
    name = node.resolve_topic_name
    return (f"listening on {name(inputs.image)} ({transport} image), "
            f"{name(inputs.camera_info)} (camera_info, {inputs.camera_info_source}), "
            f"{name(inputs.sparse_depth)} (sparse_depth); publishing on "
            + ", ".join(name(topic) for topic in outputs) + ", /diagnostics")


def io_qos(value: Callable[[str], Any]) -> tuple[QoSProfile, QoSProfile]:
    """(input, output) QoS from the parameters: sensor-data inputs (best effort, keep last),
    outputs reliable or best effort, keep last."""
    inputs = QoSProfile(depth=value("qos_input_depth"), history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.BEST_EFFORT)
    reliability = (ReliabilityPolicy.RELIABLE if value("output_reliability") == "reliable"
                   else ReliabilityPolicy.BEST_EFFORT)
    outputs = QoSProfile(depth=value("qos_output_depth"), history=HistoryPolicy.KEEP_LAST,
                         reliability=reliability)
    return inputs, outputs


def watched_publisher(node: Any, health: NodeHealth, msg_type: type, topic: str, qos: Any,
                      throttle_s: float) -> Any:
    """A publisher that counts and logs (once per ``throttle_s``) subscribers asking for more
    than it offers (transient_local, a deadline, ...): they receive nothing, the others are
    served."""
    def incompatible(event: Any) -> None:
        health.count("qos_incompatible", event.total_count_change)
        node.get_logger().warning(
            f"a subscriber of {node.resolve_topic_name(topic)} requests an incompatible QoS "
            f"({qos_policy_name_from_kind(event.last_policy_kind)}); it receives nothing "
            "(`ros2 topic info -v` shows both sides)", throttle_duration_sec=throttle_s)
    return node.create_publisher(msg_type, topic, qos, event_callbacks=(
        PublisherEventCallbacks(incompatible_qos=incompatible)))
