"""/diagnostics for the depth node: rates, latency, drops, rejections, backend and model."""
from __future__ import annotations

import math
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def build_diagnostics(node: Any) -> DiagnosticArray:
    """One DiagnosticStatus describing the node's health over the last few seconds."""
    inputs = node.in_stats.snapshot()
    outputs = node.out_stats.snapshot()
    values = {
        "input_rate_hz": inputs["rate_hz"],
        "output_rate_hz": outputs["rate_hz"],
        "latency_p50_ms": outputs["latency_p50_ms"],
        "latency_p95_ms": outputs["latency_p95_ms"],
        "frames_received": node._slot.received,
        "frames_dropped": node._slot.dropped,
        "frames_processed": node.counts["processed"],
        "camera_info": node.camera_info_state,
    }
    values.update({k: v for k, v in sorted(node.counts.items()) if k != "processed"})
    if node._backend is not None:
        values.update(node._backend.describe())
    level, message = DiagnosticStatus.OK, "ok"
    if node.camera_info_state in ("missing", "invalid"):
        level, message = DiagnosticStatus.WARN, f"camera_info {node.camera_info_state}: depth only"
    if any(k.startswith("rejected_") or k == "errors" for k in node.counts):
        level = DiagnosticStatus.WARN
        message = f"{message}; last problem: {node.last_error}"
    status = DiagnosticStatus(level=level, name=f"{node.get_fully_qualified_name()}: depth",
                              message=message, hardware_id=values.get("device", ""),
                              values=[KeyValue(key=k, value=_fmt(v)) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = node.get_clock().now().to_msg()
    return array
