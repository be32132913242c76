"""Procedural surface appearance: value noise, material patterns, road markings, sky colour."""
from __future__ import annotations

import functools

import numpy as np

from clip_depth_ros.synthetic.photos import photo_pattern
from clip_depth_ros.synthetic.primitives import Ground, Material

_LATTICE = 256
_LINE_HALF_WIDTH = 0.075  # lane paint is 15 cm wide
_DASH, _DASH_PERIOD = 3.0, 9.0  # urban dashed line: 3 m of paint every 9 m


@functools.lru_cache(maxsize=64)
def _noise_lattice(seed: int) -> np.ndarray:
    """Random values on a periodic 256 x 256 lattice, padded to 257 x 257 and flattened."""
    values = np.random.default_rng(seed).random((_LATTICE, _LATTICE), dtype=np.float32)
    return np.pad(values, ((0, 1), (0, 1)), mode="wrap").ravel()


def _value_noise(s: np.ndarray, t: np.ndarray, seed: int) -> np.ndarray:
    """Smooth lattice value noise in [0, 1] with unit cell size (periodic every 256 cells)."""
    lattice = _noise_lattice(seed)
    s0, t0 = np.floor(s), np.floor(t)
    fs, ft = s - s0, t - t0
    fs, ft = fs * fs * (3 - 2 * fs), ft * ft * (3 - 2 * ft)
    # The padding row/column lets the +1 neighbours skip a second wrap.
    mask = _LATTICE - 1
    i00 = (s0.astype(np.int32) & mask) * (_LATTICE + 1) + (t0.astype(np.int32) & mask)
    v00, v01 = np.take(lattice, i00), np.take(lattice, i00 + 1)
    v10, v11 = np.take(lattice, i00 + (_LATTICE + 1)), np.take(lattice, i00 + (_LATTICE + 2))
    left = v00 + (v01 - v00) * ft
    right = v10 + (v11 - v10) * ft
    return left + (right - left) * fs


def _texture(material: Material, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Procedural pattern value in [0, 1] at surface coordinates (s, t) in metres."""
    u, w = s / np.float32(material.scale), t / np.float32(material.scale)
    total = material.checker + material.stripes + material.noise + material.grid
    if total <= 0:
        return np.full(s.shape, 0.5, dtype=np.float32)
    tex = np.zeros(s.shape, dtype=np.float32)
    if material.checker > 0:
        tex += material.checker * ((np.floor(u) + np.floor(w)) % 2)
    if material.stripes > 0:
        # Stripes along t, jittered per stripe so it reads as planks / wallpaper, not a grid.
        stripe = np.floor(u * 2)
        wave = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi) * u)
        jitter = 0.6 + 0.4 * _value_noise(stripe, w * 0.5, material.seed + 1)
        tex += material.stripes * wave * jitter
    if material.noise > 0:
        coarse = _value_noise(u * 4, w * 4, material.seed)
        fine = _value_noise(u * 11, w * 11, material.seed + 2)
        tex += material.noise * (0.65 * coarse + 0.35 * fine)
    if material.grid > 0:
        # Cells (windows) cover the middle of each period; a little noise varies their shade.
        fu, fw = u - np.floor(u), w - np.floor(w)
        cell = (np.abs(fu - 0.5) < 0.3) & (np.abs(fw - 0.5) < 0.25)
        shade = 0.25 * _value_noise(np.floor(u), np.floor(w), material.seed + 3)
        tex += material.grid * np.where(cell, shade, np.float32(1))
    return tex / np.float32(total)


def material_albedo(material: Material, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Textured albedo (3, n) float32 of a material at surface coordinates s, t (n,) metres."""
    if material.photo:
        tex = photo_pattern(material.photo, s / np.float32(material.scale),
                            t / np.float32(material.scale), material.seed)
    else:
        tex = _texture(material, s, t)
    gain = np.float32(1 - material.contrast) + np.float32(2 * material.contrast) * tex
    color = np.asarray(material.color, dtype=np.float32)[:, None]
    return color * gain


def lane_paint(ground: Ground, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of road points (world x, y) covered by lane markings."""
    lanes, width = ground.lanes_per_side, ground.lane_width
    if lanes == 0:
        return np.zeros(x.shape, dtype=bool)
    ay = np.abs(y)
    # Dashed: the centreline and the dividers between lanes of one direction.
    k = np.minimum(np.floor(ay / np.float32(width) + np.float32(0.5)), lanes - 1)
    on_divider = np.abs(ay - k * np.float32(width)) < _LINE_HALF_WIDTH
    dashed = on_divider & (np.mod(x, np.float32(_DASH_PERIOD)) < _DASH)
    # Solid: the carriageway edge (a little inside the kerb when there is no parking strip).
    edge = ground.carriageway_half_width - (0.3 if ground.parking_width == 0 else 0.0)
    solid = np.abs(ay - np.float32(edge)) < _LINE_HALF_WIDTH
    return dashed | solid


def ground_albedo(ground: Ground, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Albedo (3, n) float32 of ground points: asphalt with lane paint, pavement beyond kerbs."""
    on_road = np.abs(y) < np.float32(ground.road_half_width)
    albedo = np.empty((3, x.size), dtype=np.float32)
    albedo[:, on_road] = material_albedo(ground.road, x[on_road], y[on_road])
    off_road = ~on_road
    albedo[:, off_road] = material_albedo(ground.pavement, x[off_road], y[off_road])
    paint = on_road & lane_paint(ground, x, y)
    albedo[:, paint] = np.asarray(ground.marking_color, dtype=np.float32)[:, None]
    return albedo


def sky_rgb(ground: Ground, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """(n, 3) uint8 sky colour for world ray directions: horizon haze blending into the zenith."""
    elevation = np.clip(dz / np.sqrt(dx * dx + dy * dy + dz * dz), 0, 1)
    towards_horizon = (1 - elevation) ** 4
    zenith = np.asarray(ground.sky_color, dtype=np.float32)
    horizon = np.asarray(ground.horizon_color, dtype=np.float32)
    color = zenith + (horizon - zenith) * towards_horizon[:, None]
    return (color * 255 + 0.5).astype(np.uint8)
