"""A steady scale: per-frame scale measurements filtered over time in log space.

An exponential filter with a time constant (the continuous-time EMA, so the smoothing does not
depend on the frame rate), weighted by how sure each measurement is: the time constant is
``time_constant_s`` for a measurement of REFERENCE_SIGMA log-scale noise (a floor fit) and
shrinks with the noise variance, so a sparse-depth fit over thousands of points is taken
almost as it is while a floor fit is smoothed.  Outlier gating holds back a measurement far
from the filtered scale; a jump that lasts (a new room, a bag replayed from its start) resets
the filter.  Pure Python; one instance per camera.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

REFERENCE_SIGMA = 0.05  # log-scale noise of a measurement that states no uncertainty
MIN_WEIGHT = 0.01  # the most a precise measurement shortens the time constant (100x)


@dataclass
class ScaleFilter:
    """Log-space EMA of the scale with gating and reset (see the module docstring)."""

    time_constant_s: float = 1.0  # 0 = no filtering: every measurement is taken as it is
    gate: float = math.log(1.3)  # |log jump| beyond this is held back as an outlier
    reset_after: int = 5  # consecutive held-back measurements that reset the filter
    log_scale: Optional[float] = None
    last_t: Optional[float] = None
    held_back: int = 0
    held_back_total: int = 0  # every gated measurement (a fit flipping between two planes)
    resets: int = 0

    def reset(self) -> None:
        """Forget the history (the next measurement is taken as it is)."""
        self.log_scale, self.last_t, self.held_back = None, None, 0

    @property
    def scale(self) -> Optional[float]:
        """The filtered scale, or None before the first measurement."""
        return None if self.log_scale is None else math.exp(self.log_scale)

    def update(self, scale: float, t: float, log_sigma: Optional[float] = None) -> float:
        """Feed one measurement taken at time t (s) with its log-scale uncertainty (None:
        REFERENCE_SIGMA); returns the filtered scale."""
        measured = math.log(scale)
        if self.log_scale is None or self.time_constant_s <= 0:
            self.log_scale, self.last_t, self.held_back = measured, t, 0
            return scale
        if self.last_t is not None and t < self.last_t:  # time went backwards: start over
            self.reset()
            return self.update(scale, t, log_sigma)
        if abs(measured - self.log_scale) > self.gate:
            self.held_back += 1
            self.held_back_total += 1
            if self.held_back < self.reset_after:
                return math.exp(self.log_scale)
            self.resets += 1
            self.reset()
            return self.update(scale, t, log_sigma)
        sigma = REFERENCE_SIGMA if log_sigma is None else log_sigma
        weight = min(1.0, max(MIN_WEIGHT, (sigma / REFERENCE_SIGMA) ** 2))
        dt = t - self.last_t if self.last_t is not None else 0.0
        alpha = 1.0 - math.exp(-dt / (self.time_constant_s * weight)) if dt > 0 else 0.0
        # a frame with the same stamp still moves a little, so equal stamps are not ignored
        self.log_scale += max(alpha, 0.02) * (measured - self.log_scale)
        self.last_t, self.held_back = t, 0
        return math.exp(self.log_scale)
