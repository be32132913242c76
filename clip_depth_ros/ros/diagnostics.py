"""/diagnostics for the depth node: one DiagnosticStatus built from its health record."""
from __future__ import annotations

import math
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ..health import ERROR, OK, WARN, NodeHealth

LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def build_diagnostics(health: NodeHealth, node_name: str, stamp: Any,
                      now: Optional[float] = None) -> DiagnosticArray:
    """One DiagnosticStatus ``<node_name>: depth`` describing ``health`` over the last few
    seconds (level and why, rates, latency, counters, lifecycle, topics, backend and model),
    stamped ``stamp``."""
    values = health.snapshot(now)
    level, message = health.summary(now)
    status = DiagnosticStatus(level=LEVELS[level],
                              name=f"{node_name}: depth", message=message,
                              hardware_id=str(values.get("device", "")),
                              values=[KeyValue(key=k, value=_fmt(v)) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
