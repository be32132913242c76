"""A steady scale: per-frame scale measurements filtered over time in log space.

An exponential filter with a time constant (the continuous-time EMA, so the smoothing does not
depend on the frame rate), outlier gating (a measurement far from the filtered scale is held
back), and a reset when such a jump persists (the scene really changed: a new room, a bag
replayed from its start).  Pure Python; one instance per camera.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass
class ScaleFilter:
    """Log-space EMA of the scale with gating and reset (see the module docstring)."""

    time_constant_s: float = 1.0  # 0 = no filtering: every measurement is taken as it is
    gate: float = math.log(1.3)  # |log jump| beyond this is held back as an outlier
    reset_after: int = 5  # consecutive held-back measurements that reset the filter
    log_scale: Optional[float] = None
    last_t: Optional[float] = None
    held_back: int = 0
    resets: int = 0

    def reset(self) -> None:
        """Forget the history (the next measurement is taken as it is)."""
        self.log_scale, self.last_t, self.held_back = None, None, 0

    @property
    def scale(self) -> Optional[float]:
        """The filtered scale, or None before the first measurement."""
        return None if self.log_scale is None else math.exp(self.log_scale)

    def update(self, scale: float, t: float) -> float:
        """Feed one measurement taken at time t (seconds); returns the filtered scale."""
        measured = math.log(scale)
        if self.log_scale is None or self.time_constant_s <= 0:
            self.log_scale, self.last_t, self.held_back = measured, t, 0
            return scale
        dt = t - self.last_t if self.last_t is not None else 0.0
        if dt < 0:  # time went backwards (a replayed bag): start over
            self.reset()
            return self.update(scale, t)
        if abs(measured - self.log_scale) > self.gate:
            self.held_back += 1
            if self.held_back < self.reset_after:
                return math.exp(self.log_scale)
            self.resets += 1
            self.reset()
            return self.update(scale, t)
        self.held_back = 0
        alpha = 1.0 - math.exp(-max(dt, 0.0) / self.time_constant_s) if dt > 0 else 0.0
        # a first step of zero length still moves a little, so equal stamps are not ignored
        alpha = max(alpha, 0.02)
        self.log_scale += alpha * (measured - self.log_scale)
        self.last_t = t
        return math.exp(self.log_scale)
