"""Procedural street scenes (KITTI-like): road with lane markings, facades, poles, cars, sky.

World frame as in ``primitives``: the road runs along world +x with its centreline at y = 0;
traffic drives on the right, so cameras looking along +x drive in the lanes at y < 0.  Those
lanes are kept free of cars over the stretch ``drive_x`` where cameras may be placed; cars in
them stand only further ahead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clip_depth_ros.synthetic.primitives import Box, CameraPose, Cylinder, Ground, Material, Scene

CAR_SIZE = (4.5, 1.8, 1.5)  # length (along x), width, height in metres
CAMERA_HEIGHT = 1.6  # metres, as a car-mounted camera (KITTI: 1.65 m)

_FACADE_COLORS = [(0.78, 0.72, 0.62), (0.65, 0.6, 0.58), (0.85, 0.82, 0.75), (0.6, 0.42, 0.35),
                  (0.72, 0.74, 0.76), (0.9, 0.86, 0.7), (0.55, 0.55, 0.5)]
_CAR_COLORS = [(0.8, 0.8, 0.82), (0.1, 0.1, 0.12), (0.55, 0.08, 0.08), (0.15, 0.22, 0.45),
               (0.45, 0.47, 0.5), (0.9, 0.9, 0.9), (0.2, 0.35, 0.25)]
_GLASS = Material(color=(0.12, 0.14, 0.17), noise=1.0, scale=0.3, contrast=0.1)
# Noise seeds come from a small pool: a street has hundreds of materials and each seed costs a
# noise lattice (textures.py caches 64); colour and scale still differ per object.
_NOISE_SEEDS = 12


@dataclass
class StreetScene(Scene):
    """An open scene along a straight road, plus where a camera may drive.

    ``drive_x``: the stretch of road (world x) free for cameras; ``lane_y``: the lateral band
    (world y) of the lanes driving along +x, free of objects over ``drive_x``.
    """

    drive_x: tuple[float, float] = (0.0, 50.0)
    lane_y: tuple[float, float] = (-3.5, 0.0)


def _material(rng: np.random.Generator, palette: list, jitter: float, **pattern) -> Material:
    base = np.asarray(palette[rng.integers(len(palette))]) + rng.uniform(-jitter, jitter, 3)
    return Material(color=tuple(float(c) for c in np.clip(base, 0.03, 1)),
                    seed=int(rng.integers(_NOISE_SEEDS)), **pattern)


def _random_ground(rng: np.random.Generator) -> Ground:
    grey = rng.uniform(0.26, 0.38)
    road = Material(color=(grey, grey, grey * 1.04), noise=1.0, scale=float(rng.uniform(0.4, 1)),
                    contrast=float(rng.uniform(0.15, 0.3)),
                    seed=int(rng.integers(_NOISE_SEEDS)))
    pavement = _material(rng, [(0.62, 0.6, 0.57), (0.55, 0.52, 0.5), (0.68, 0.62, 0.55)], 0.04,
                         checker=0.5, noise=0.5, scale=float(rng.uniform(0.4, 0.8)),
                         contrast=0.2)
    azimuth, elevation = rng.uniform(-np.pi, np.pi), rng.uniform(0.45, 1.1)
    sun = (np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
           np.sin(elevation))
    return Ground(road=road, pavement=pavement, lanes_per_side=int(rng.integers(1, 3)),
                  lane_width=float(rng.uniform(3.0, 3.6)),
                  parking_width=2.2 if rng.random() < 0.6 else 0.0,
                  sun_direction=tuple(float(c) for c in sun))


def _facades(rng: np.random.Generator, side: int, setback: float, x0: float,
             x1: float) -> list[Box]:
    """A row of buildings along one side of the street (side -1: y < 0), front at ~setback."""
    buildings = []
    x = x0
    while x < x1:
        length = rng.uniform(8, 30)
        front = min(setback + rng.uniform(0, 1.5), 15.0)
        depth, height = rng.uniform(8, 14), rng.uniform(5, 22)
        material = _material(rng, _FACADE_COLORS, 0.06, grid=0.6, noise=0.4,
                             scale=float(rng.uniform(2.6, 3.6)),
                             contrast=float(rng.uniform(0.25, 0.45)))
        y_near, y_far = side * front, side * (front + depth)
        buildings.append(Box(min_corner=(x, min(y_near, y_far), 0.0),
                             max_corner=(x + length, max(y_near, y_far), height),
                             material=material))
        x += length + (0.0 if rng.random() < 0.6 else rng.uniform(2, 10))  # alleys
    return buildings


def _poles(rng: np.random.Generator, side: int, y: float, x0: float, x1: float) -> list[Cylinder]:
    """Street lamps / sign posts: thin cylinders along the kerb of one side."""
    metal = _material(rng, [(0.45, 0.47, 0.5), (0.3, 0.32, 0.3)], 0.03, noise=1.0, scale=0.3,
                      contrast=0.1)
    poles = []
    x = x0 + rng.uniform(0, 20)
    while x < x1:
        poles.append(Cylinder(center=(x, side * (y + rng.uniform(-0.1, 0.1))),
                              radius=float(rng.uniform(0.07, 0.14)), z_min=0.0,
                              z_max=float(rng.uniform(4.5, 9)), material=metal))
        x += rng.uniform(15, 35)
    return poles


def car(x: float, y: float, material: Material) -> list[Box]:
    """A car as two boxes (body and glazed cabin) within 4.5 x 1.8 x 1.5 m, rear at x, centre y."""
    length, width, height = CAR_SIZE
    body = Box(min_corner=(x, y - width / 2, 0.0), max_corner=(x + length, y + width / 2, 0.95),
               material=material)
    cabin = Box(min_corner=(x + 1.1, y - width / 2 + 0.1, 0.95),
                max_corner=(x + 3.6, y + width / 2 - 0.1, height), material=_GLASS)
    return [body, cabin]


def _cars(rng: np.random.Generator, ground: Ground, drive_x: tuple[float, float],
          x0: float, x1: float) -> list[Box]:
    """Parked cars in the parking strips, traffic in all lanes (own direction: only ahead)."""
    width, lanes = ground.lane_width, ground.lanes_per_side
    # (lateral centre, parked, first x): oncoming lanes anywhere, own lanes beyond drive_x.
    rows = [((k + 0.5) * width, False, x0) for k in range(lanes)]
    rows += [(-(k + 0.5) * width, False, drive_x[1] + 8) for k in range(lanes)]
    if ground.parking_width > 0:
        kerb_row = ground.carriageway_half_width + ground.parking_width / 2
        rows += [(kerb_row, True, x0), (-kerb_row, True, x0)]
    boxes: list[Box] = []
    for y_row, parked, first in rows:
        x = first + rng.uniform(0, 10 if parked else 25)
        while x < x1:
            y = y_row + rng.uniform(-0.15, 0.15) * (1 if parked else 2)
            boxes += car(x, y, _material(rng, _CAR_COLORS, 0.05, noise=1.0, scale=0.5,
                                         contrast=0.12))
            x += CAR_SIZE[0] + (rng.uniform(0.8, 6) if parked else rng.uniform(10, 40))
    return boxes


def random_street_scene(seed: int, with_cars: bool = True) -> StreetScene:
    """A random straight street: 1-2 lanes per side, optional parking strips, building rows
    6-15 m from the centreline, poles along the kerbs and cars; depths reach 80 m and more.

    Deterministic in ``seed``; ``with_cars=False`` gives the same street without its cars.
    """
    rng = np.random.default_rng(seed)
    ground = _random_ground(rng)
    drive_x = (0.0, float(rng.uniform(40, 80)))
    x0, x1 = -60.0, drive_x[1] + float(rng.uniform(80, 160))
    objects: list[Box | Cylinder] = []
    for side in (-1, 1):
        setback = rng.uniform(max(6.0, ground.road_half_width + 1.5), 15.0)
        objects += _facades(rng, side, setback, x0, x1)
        objects += _poles(rng, side, ground.road_half_width + 0.5, x0, x1)
    if rng.random() < 0.4:  # the street ends at a building across it
        objects.append(Box(min_corner=(x1, -40.0, 0.0), max_corner=(x1 + 15, 40.0,
                                                                    rng.uniform(8, 25)),
                           material=_material(rng, _FACADE_COLORS, 0.06, grid=0.6, noise=0.4,
                                              scale=3.0, contrast=0.35)))
    # Cars come from their own stream so that with_cars=False leaves the rest unchanged.
    cars = _cars(np.random.default_rng([seed, 1]), ground, drive_x, x0, x1)
    return StreetScene(ground=ground, objects=objects + (cars if with_cars else []),
                       drive_x=drive_x, lane_y=(-ground.carriageway_half_width, 0.0))


def street_trajectory(scene: StreetScene, n_frames: int) -> list[CameraPose]:
    """Driving forward along the right-most lane over ``drive_x``, camera level at 1.6 m."""
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    x0, x1 = scene.drive_x
    y = scene.lane_y[0] + scene.ground.lane_width / 2
    return [CameraPose(position=np.array([x0 + (x1 - x0) * i / max(n_frames - 1, 1), y,
                                          CAMERA_HEIGHT]), yaw=0.0, pitch=0.0)
            for i in range(n_frames)]
