"""Procedural indoor scenes: random furnished rooms and a smooth demo camera path.

The scene description lives in ``primitives.py``, the ray caster in ``render.py``; street
scenes are in ``street.py``.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from clip_depth_ros.synthetic.primitives import Box, CameraPose, Cylinder, Material, Room, Scene


_WALL_COLORS = [(0.85, 0.82, 0.74), (0.75, 0.8, 0.85), (0.78, 0.85, 0.76), (0.88, 0.78, 0.72),
                (0.8, 0.8, 0.8)]
_FLOOR_COLORS = [(0.55, 0.4, 0.28), (0.45, 0.45, 0.47), (0.65, 0.55, 0.42), (0.35, 0.25, 0.2)]
_FURNITURE_COLORS = [(0.55, 0.35, 0.2), (0.25, 0.3, 0.45), (0.7, 0.2, 0.15), (0.2, 0.45, 0.3),
                     (0.85, 0.75, 0.4), (0.3, 0.3, 0.3), (0.9, 0.9, 0.88), (0.5, 0.25, 0.45)]


def _random_material(rng: np.random.Generator, palette: list,
                     jitter: float = 0.08) -> Material:
    base = np.asarray(palette[rng.integers(len(palette))]) + rng.uniform(-jitter, jitter, 3)
    checker, stripes, noise = rng.dirichlet([0.6, 0.6, 1.2])
    return Material(color=tuple(float(c) for c in np.clip(base, 0.05, 1)),
                    checker=float(checker), stripes=float(stripes), noise=float(noise),
                    scale=float(rng.uniform(0.15, 0.8)), contrast=float(rng.uniform(0.15, 0.5)),
                    seed=int(rng.integers(1 << 30)))


def camera_region(room: Room) -> tuple[float, float, float, float]:
    """Floor rectangle (x0, x1, y0, y1) kept free of furniture, where demo cameras move."""
    w, d = room.size[0], room.size[1]
    hx, hy = max(0.3, 0.2 * w), max(0.3, 0.2 * d)
    return w / 2 - hx, w / 2 + hx, d / 2 - hy, d / 2 + hy


def _random_object(rng: np.random.Generator, room: Room, shrink: float) -> Box | Cylinder:
    w, d, h = room.size
    material = _random_material(rng, _FURNITURE_COLORS, jitter=0.1)
    if rng.random() < 0.3:
        radius = rng.uniform(0.1, 0.4) * shrink
        height = h if rng.random() < 0.15 else rng.uniform(0.3, 1.5)
        center = (rng.uniform(radius, w - radius), rng.uniform(radius, d - radius))
        return Cylinder(center=center, radius=radius, z_min=0.0, z_max=height, material=material)
    size = rng.uniform(0.3, 1.2, 2) * shrink
    x0, y0 = rng.uniform(0, w - size[0]), rng.uniform(0, d - size[1])
    if rng.random() < 0.15:  # wall shelf / hanging cabinet
        z0 = rng.uniform(0.8, 1.8)
        z1 = min(z0 + rng.uniform(0.05, 0.5), h - 0.05)
    else:
        z0, z1 = 0.0, rng.uniform(0.4, min(2.0, h - 0.1))
    return Box(min_corner=(x0, y0, z0), max_corner=(x0 + size[0], y0 + size[1], z1),
               material=material)


def _overlap_xy(a: tuple, b: tuple, margin: float) -> bool:
    """Whether floor rectangles (x0, x1, y0, y1) come closer than margin."""
    return (a[0] < b[1] + margin and b[0] < a[1] + margin
            and a[2] < b[3] + margin and b[2] < a[3] + margin)


def with_texture_scale(scene: Scene, texture_scale_m: float) -> Scene:
    """The same scene with every surface pattern at one physical scale (metres per pattern
    period), like tiles, bricks or planks of a standard size: a metric cue in the image that
    random pattern scales do not give."""
    if not texture_scale_m > 0:
        raise ValueError(f"texture_scale_m must be > 0, got {texture_scale_m}")
    room = scene.room
    fixed = (lambda m: replace(m, scale=float(texture_scale_m)))
    if room is not None:
        room = replace(room, floor=fixed(room.floor), ceiling=fixed(room.ceiling),
                       walls=tuple(fixed(w) for w in room.walls))
    objects = [replace(obj, material=fixed(obj.material)) for obj in scene.objects]
    return replace(scene, room=room, objects=objects)


def random_indoor_scene(seed: int, texture_scale_m: float | None = None) -> Scene:
    """A random furnished room: 3-8 m wide and deep, 2.4-3.2 m high, 3-8 objects around a
    furniture-free camera region; deterministic in ``seed``.  ``texture_scale_m`` fixes every
    pattern's physical scale (else each material draws one in 0.15-0.8 m); the layout, colours
    and everything else stay those of ``seed``."""
    rng = np.random.default_rng(seed)
    size = np.array([rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(2.4, 3.2)])
    floor = _random_material(rng, _FLOOR_COLORS)
    ceiling = replace(_random_material(rng, [(0.93, 0.93, 0.9)], jitter=0.03), contrast=0.08)
    walls = tuple(_random_material(rng, _WALL_COLORS, jitter=0.04) for _ in range(4))
    room = Room(size=size, floor=floor, ceiling=ceiling, walls=walls)
    keep_out = camera_region(room)
    n_objects = int(rng.integers(3, 9))
    objects: list[Box | Cylinder] = []
    footprints: list[tuple] = []
    for attempt in range(1000):
        if len(objects) == n_objects:
            break
        obj = _random_object(rng, room, shrink=max(0.25, 1.0 - attempt / 300))
        lo, hi = obj.bounds()
        footprint = (lo[0], hi[0], lo[1], hi[1])
        if _overlap_xy(footprint, keep_out, 0.35):
            continue
        if any(_overlap_xy(footprint, other, 0.05) for other in footprints):
            continue
        objects.append(obj)
        footprints.append(footprint)
    light = np.array([rng.uniform(0.3, 0.7) * size[0], rng.uniform(0.3, 0.7) * size[1],
                      size[2] - 0.3])
    scene = Scene(room=room, objects=objects, light=light)
    return scene if texture_scale_m is None else with_texture_scale(scene, texture_scale_m)


def _smoothstep(x: float) -> float:
    return x * x * (3 - 2 * x)


def demo_trajectory(scene: Scene, n_frames: int,
                    height_m: float | None = None) -> list[CameraPose]:
    """A slow, smooth loop: the camera pans from one piece of furniture to the next, dwelling on
    each, while dollying gently inside the camera region at 1.2-1.6 m height (``height_m``:
    at that fixed height instead, as a camera on a robot)."""
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    x0, x1, y0, y1 = camera_region(scene.room)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    half = np.array([(x1 - x0) / 2, (y1 - y0) / 2])
    targets = []
    for obj in scene.objects:
        lo, hi = obj.bounds()
        offset = (lo[:2] + hi[:2]) / 2 - centre
        bearing = math.atan2(offset[1], offset[0])
        targets.append((bearing, float(np.hypot(*offset)), float((lo[2] + hi[2]) / 2)))
    if not targets:
        targets = [(0.0, float(scene.room.size[0] / 2), 1.0)]
    targets.sort()
    # Always pan the same way round, ending where it started one turn later.
    bearings = [b for b, _, _ in targets] + [targets[0][0] + 2 * math.pi]
    poses = []
    for i in range(n_frames):
        phase = i / n_frames
        segment = phase * len(targets)
        j = int(segment)
        ease = _smoothstep(segment - j)
        yaw = bearings[j] + (bearings[j + 1] - bearings[j]) * ease
        a, b = targets[j], targets[(j + 1) % len(targets)]
        dist = a[1] + (b[1] - a[1]) * ease
        height = 1.4 + 0.2 * math.sin(2 * np.pi * phase) if height_m is None else height_m
        look_z = a[2] + (b[2] - a[2]) * ease
        forward = np.array([math.cos(yaw), math.sin(yaw)])
        dolly = 0.5 * math.sin(4 * np.pi * phase)
        sway = 0.3 * math.sin(2 * np.pi * phase + 1.0)
        xy = centre + half * (dolly * forward + sway * np.array([-forward[1], forward[0]]))
        xy = np.clip(xy, centre - 0.9 * half, centre + 0.9 * half)
        pitch = float(np.clip(math.atan2(look_z - height, max(dist, 0.5)), -0.6, 0.3))
        poses.append(CameraPose(position=np.array([xy[0], xy[1], height]), yaw=float(yaw),
                                pitch=pitch))
    return poses
