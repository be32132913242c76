"""Depth -> colour images for people to look at (the ``depth/colored`` bgr8 topic).

Metric depth is clipped to [min_depth, max_depth], quantised to 256 levels and mapped through
an OpenCV colormap; invalid pixels (NaN, +-inf, <= 0) are black so holes stand out.  The range
comes from the data (:func:`robust_range`: 2nd-98th percentile of valid depth; over a stream,
:class:`DisplayRange` smooths it so colours do not flicker) unless fixed; pictures people look
at carry a colour bar in metres (:func:`with_colorbar`).  Node, predict and demo share these.
"""
from __future__ import annotations

import cv2
import numpy as np

# None marks plain grayscale, which OpenCV has no COLORMAP_* constant for.
COLORMAPS: dict[str, int | None] = {
    "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "gray": None,
}


def depth_to_levels(depth_m: np.ndarray, min_depth: float, max_depth: float,
                    invert: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Quantise depth to uint8 colormap levels and return (levels, valid_mask).

    With ``invert`` near depths get level 255 (the warm / bright end of the map).
    """
    if not (np.isfinite(min_depth) and np.isfinite(max_depth)) or min_depth >= max_depth:
        raise ValueError(f"need finite min_depth < max_depth, got {min_depth} and {max_depth}")
    depth = np.asarray(depth_m, dtype=np.float32)
    scale = 255.0 / (max_depth - min_depth)
    if invert:
        alpha, beta = -scale, max_depth * scale
    else:
        alpha, beta = scale, -min_depth * scale
    # NaN and +-inf fail the upper bound test, so one pair of comparisons finds valid pixels.
    valid = (depth > 0) & (depth <= np.finfo(np.float32).max)
    levels = depth * np.float32(alpha)
    levels += np.float32(beta + 0.5)
    np.clip(levels, 0.0, 255.0, out=levels)
    levels[~valid] = 0.0
    return levels.astype(np.uint8), valid


def colorize_depth(depth_m: np.ndarray, min_depth: float, max_depth: float,
                   colormap: str = "turbo", invert: bool = True) -> np.ndarray:
    """HxW depth in metres -> HxWx3 uint8 BGR; invalid pixels black, near = warm when invert."""
    if colormap not in COLORMAPS:
        valid_names = ", ".join(sorted(COLORMAPS))
        raise ValueError(f"unknown colormap {colormap!r}; valid names: {valid_names}")
    if np.ndim(depth_m) != 2:
        raise ValueError(f"depth must be HxW, got shape {np.shape(depth_m)}")
    levels, valid = depth_to_levels(depth_m, min_depth, max_depth, invert)
    cv_map = COLORMAPS[colormap]
    if cv_map is None:
        bgr = cv2.cvtColor(levels, cv2.COLOR_GRAY2BGR)
    else:
        bgr = cv2.applyColorMap(levels, cv_map)
    # Masked copy into zeros: much faster than boolean-index assignment on a 3-channel image.
    return cv2.bitwise_and(bgr, bgr, dst=np.zeros_like(bgr), mask=valid.view(np.uint8))


# --- Display range: what depth the colours span -------------------------------------------

DEFAULT_PERCENTILES = (2.0, 98.0)
MIN_SPAN_M = 0.05  # a flat wall still gets a usable ramp
_SAMPLE_PIXELS = 1 << 16  # percentiles on a strided subsample past this size: same range


def robust_range(depth_m: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
                 min_span: float = MIN_SPAN_M) -> tuple[float, float] | None:
    """(lo, hi) in metres spanning the given percentiles of the valid depth (finite, > 0);
    None when no pixel is valid.  At least ``min_span`` wide, so lo < hi always."""
    low_pct, high_pct = percentiles
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim == 2 and depth.size > _SAMPLE_PIXELS:
        step = int(np.ceil(np.sqrt(depth.size / _SAMPLE_PIXELS)))
        depth = depth[::step, ::step]
    values = depth[(depth > 0) & (depth <= np.finfo(np.float32).max)]
    if values.size == 0:
        return None
    lo, hi = (float(v) for v in np.percentile(values, (low_pct, high_pct)))
    if hi - lo < min_span:
        mid = 0.5 * (lo + hi)
        lo, hi = max(mid - 0.5 * min_span, 0.0), max(mid - 0.5 * min_span, 0.0) + min_span
    return lo, hi


class DisplayRange:
    """The colour range of a depth stream: each end fixed, or robust from the data
    (:func:`robust_range`) and smoothed over frames with an EMA so colours do not flicker.

    display_min / display_max: a fixed end in metres, or None (or 0) for "from the data".
    smoothing: the weight of a new frame in the EMA (1 = no smoothing).
    """

    def __init__(self, display_min: float | None = None, display_max: float | None = None,
                 percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
                 smoothing: float = 0.2, default: tuple[float, float] = (0.5, 5.0)):
        self.fixed_min = float(display_min) if display_min else None
        self.fixed_max = float(display_max) if display_max else None
        check_display_range(self.fixed_min, self.fixed_max)
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.percentiles, self.smoothing = percentiles, float(smoothing)
        robust_range(np.ones((1, 1), np.float32), percentiles)  # check percentiles up front
        self.default = default
        self._state: tuple[float, float] | None = None

    def reset(self) -> None:
        """Forget the smoothed range (a new scene, a new stream)."""
        self._state = None

    def update(self, depth_m: np.ndarray) -> tuple[float, float]:
        """The range to colour this frame with (lo < hi, metres)."""
        if self.fixed_min is not None and self.fixed_max is not None:
            return self.fixed_min, self.fixed_max
        measured = robust_range(depth_m, self.percentiles)
        if measured is not None:
            if self._state is None:
                self._state = measured
            else:
                a = self.smoothing
                self._state = tuple(s + a * (m - s) for s, m in zip(self._state, measured))
        lo, hi = self._state if self._state is not None else self.default
        lo = self.fixed_min if self.fixed_min is not None else lo
        hi = self.fixed_max if self.fixed_max is not None else hi
        if hi - lo < MIN_SPAN_M:  # a fixed end beyond the data's other end
            if self.fixed_min is not None:
                hi = lo + MIN_SPAN_M
            else:
                lo = max(hi - MIN_SPAN_M, 0.0)
        return lo, hi


def check_display_range(display_min: float | None, display_max: float | None) -> None:
    """Refuse fixed display ends that cannot colour anything (negative, or min >= max)."""
    from .errors import ConfigError
    for name, value in (("display_min", display_min), ("display_max", display_max)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a finite depth >= 0 m (0 = from the data), "
                              f"got {value}")
    if display_min and display_max and display_min >= display_max:
        raise ConfigError(f"display_min ({display_min:g} m) must be below display_max "
                          f"({display_max:g} m); set either to 0 to take it from the data")


# --- Colour bar ------------------------------------------------------------------------------

def nice_ticks(lo: float, hi: float, max_ticks: int = 5) -> list[float]:
    """3-``max_ticks`` round values (steps of 1, 2, 2.5, 5 x 10^k) inside [lo, hi]; the two
    ends when no round step gives three."""
    span = hi - lo
    if not span > 0:
        raise ValueError(f"need lo < hi, got {lo} and {hi}")
    for exponent in range(int(np.floor(np.log10(span))) - 2, int(np.ceil(np.log10(span))) + 1):
        for mantissa in (1.0, 2.0, 2.5, 5.0):
            step = mantissa * 10.0 ** exponent
            first = np.ceil(lo / step - 1e-9) * step
            ticks = [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]
            if 3 <= len(ticks) <= max_ticks:
                return [round(float(t), 10) for t in ticks]
    return [float(lo), float(hi)]


def _tick_label(value: float, ticks: list[float]) -> str:
    """``value`` in metres with as few decimals as the ticks need (at most 3)."""
    decimals = next((d for d in range(3) if all(abs(t * 10 ** d - round(t * 10 ** d)) < 1e-6
                                                for t in ticks)), 3)
    return f"{value:.{decimals}f} m"


def with_colorbar(bgr: np.ndarray, lo: float, hi: float, colormap: str = "turbo",
                  invert: bool = True) -> np.ndarray:
    """``bgr`` with a vertical colour bar on its right: the colours of lo..hi metres (far at
    the top) with 3-5 labelled ticks, so a picture says what its colours mean."""
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"need an HxWx3 uint8 image, got {bgr.shape} {bgr.dtype}")
    height = bgr.shape[0]
    margin = max(4, height // 24)
    bar_h, bar_w = max(height - 2 * margin, 2), max(8, height // 24)
    ticks = nice_ticks(lo, hi)
    labels = [_tick_label(t, ticks) for t in ticks]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, float(np.clip(height / 600.0, 0.3, 1.2))
    thickness = 1 if scale < 0.8 else 2
    text_w = max(cv2.getTextSize(text, font, scale, thickness)[0][0] for text in labels)
    text_h = cv2.getTextSize(labels[0], font, scale, thickness)[0][1]
    panel = np.full((height, 3 * margin + bar_w + text_w + margin, 3), 24, np.uint8)
    column = np.linspace(hi, lo, bar_h, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    panel[margin:margin + bar_h, margin:margin + bar_w] = colorize_depth(column, lo, hi,
                                                                         colormap, invert)
    for value, text in zip(ticks, labels):
        y = margin + int(round((hi - value) / (hi - lo) * (bar_h - 1)))
        x0 = margin + bar_w
        cv2.line(panel, (x0, y), (x0 + margin // 2 + 2, y), (255, 255, 255), 1)
        y_text = int(np.clip(y + text_h // 2, text_h + 1, height - 2))
        cv2.putText(panel, text, (x0 + margin, y_text), font, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    return np.hstack([bgr, panel])
