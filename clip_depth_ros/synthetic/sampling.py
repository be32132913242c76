"""Random scenes and random valid camera poses in them, for making training samples."""
from __future__ import annotations

import math

import numpy as np

from clip_depth_ros.synthetic.primitives import CameraPose, Scene
from clip_depth_ros.synthetic.scene import camera_region, random_indoor_scene
from clip_depth_ros.synthetic.street import StreetScene, random_street_scene

SCENE_KINDS = ("indoor", "street")

# Pose ranges (metres, degrees).  Indoor: a hand-held / robot camera anywhere in the free floor
# region; street: a car-mounted camera in the lanes driving along +x.
INDOOR_HEIGHT = (1.0, 1.8)
INDOOR_PITCH_DEG = (-20.0, 10.0)
INDOOR_ROLL_DEG = 4.0
STREET_HEIGHT = (1.5, 1.75)
STREET_YAW_DEG = 15.0
STREET_PITCH_DEG = (-4.0, 2.0)
STREET_ROLL_DEG = 2.0
STREET_LANE_MARGIN = 1.0  # minimum lateral distance from the edge of the free lanes


def random_scene(kind: str, seed: int, texture_scale_m: float | None = None) -> Scene:
    """A random scene of ``kind`` ('indoor' room or 'street'), deterministic in ``seed``
    (``texture_scale_m``: see ``random_indoor_scene``; indoor only)."""
    if kind == "indoor":
        return random_indoor_scene(seed, texture_scale_m)
    if texture_scale_m is not None:
        raise ValueError("texture_scale_m applies to indoor scenes only")
    if kind == "street":
        return random_street_scene(seed)
    raise ValueError(f"unknown scene kind {kind!r}; valid kinds: {', '.join(SCENE_KINDS)}")


def _uniform_deg(rng: np.random.Generator, lo: float, hi: float) -> float:
    return math.radians(rng.uniform(lo, hi))


def random_pose(scene: Scene, rng: np.random.Generator) -> CameraPose:
    """A random valid camera pose in the free region of ``scene``, drawn from ``rng``.

    Indoor: anywhere over the furniture-free floor region, 1.0-1.8 m high, any yaw, pitch
    -20..+10 deg, roll within +-4 deg.  Street: in the free lanes over ``drive_x``, 1.5-1.75 m
    high, looking along the road +-15 deg, pitch -4..+2 deg, roll within +-2 deg.
    """
    if isinstance(scene, StreetScene):
        lo, hi = scene.lane_y
        y_lo, y_hi = lo + STREET_LANE_MARGIN, hi - STREET_LANE_MARGIN
        if y_lo > y_hi:  # a lane narrower than twice the margin: keep to its middle
            y_lo = y_hi = (lo + hi) / 2
        position = np.array([rng.uniform(*scene.drive_x), rng.uniform(y_lo, y_hi),
                             rng.uniform(*STREET_HEIGHT)])
        return CameraPose(position=position,
                          yaw=_uniform_deg(rng, -STREET_YAW_DEG, STREET_YAW_DEG),
                          pitch=_uniform_deg(rng, *STREET_PITCH_DEG),
                          roll=_uniform_deg(rng, -STREET_ROLL_DEG, STREET_ROLL_DEG))
    if scene.room is None:
        raise ValueError("random_pose needs an indoor Scene with a room or a StreetScene")
    x0, x1, y0, y1 = camera_region(scene.room)
    position = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(*INDOOR_HEIGHT)])
    return CameraPose(position=position, yaw=rng.uniform(-math.pi, math.pi),
                      pitch=_uniform_deg(rng, *INDOOR_PITCH_DEG),
                      roll=_uniform_deg(rng, -INDOOR_ROLL_DEG, INDOOR_ROLL_DEG))
