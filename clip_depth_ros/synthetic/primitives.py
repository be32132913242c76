"""Scene description for the synthetic renderer: materials, primitives, rooms, open ground, poses.

World frame: z up, metres.  An indoor scene is a closed room [0, W] x [0, D] x [0, H] seen from
inside; an open (street) scene is the ground plane z = 0 under the sky, with a straight road
along world +x whose centreline is y = 0.  Cameras use the ROS optical frame (x right, y down,
z forward).  Pure data: the ray casting and shading live in ``render.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Material:
    """Albedo plus a mix of procedural patterns, evaluated in surface coordinates (metres)."""

    color: tuple[float, float, float] = (0.7, 0.7, 0.7)  # RGB albedo in [0, 1]
    checker: float = 0.0  # pattern weights; they are normalised to sum to one
    stripes: float = 0.0
    noise: float = 1.0
    scale: float = 0.5  # pattern period in metres
    contrast: float = 0.3  # 0 = flat colour, 1 = albedo swings from 0 to twice the colour
    seed: int = 0
    grid: float = 0.0  # dark cells in a light lattice (windows, tiles); weight like the others
    photo: str = ""  # a photograph (photos.PHOTOS) tiled every ``scale`` m instead of patterns


@dataclass
class Box:
    """Axis-aligned box (furniture, building, car) between two corners in world metres."""

    min_corner: np.ndarray
    max_corner: np.ndarray
    material: Material = field(default_factory=Material)

    def __post_init__(self) -> None:
        self.min_corner = np.asarray(self.min_corner, dtype=np.float64)
        self.max_corner = np.asarray(self.max_corner, dtype=np.float64)
        if np.any(self.min_corner >= self.max_corner):
            raise ValueError(
                f"box corners must satisfy min < max: {self.min_corner}, {self.max_corner}")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (min corner, max corner)."""
        return self.min_corner, self.max_corner


@dataclass
class Cylinder:
    """Vertical cylinder with closed caps: axis at (x, y) = center, spanning z_min..z_max."""

    center: np.ndarray
    radius: float
    z_min: float
    z_max: float
    material: Material = field(default_factory=Material)

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float64)[:2]
        if self.radius <= 0 or self.z_min >= self.z_max:
            raise ValueError("cylinder needs radius > 0 and z_min < z_max")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (min corner, max corner)."""
        r = self.radius
        return (np.array([self.center[0] - r, self.center[1] - r, self.z_min]),
                np.array([self.center[0] + r, self.center[1] + r, self.z_max]))


def _plain(color: tuple[float, float, float]) -> Material:
    return Material(color=color, noise=1.0, contrast=0.15)


@dataclass
class Room:
    """Closed axis-aligned room [0, W] x [0, D] x [0, H] seen from inside."""

    size: np.ndarray  # (W, D, H) in metres
    floor: Material = field(default_factory=lambda: _plain((0.55, 0.42, 0.3)))
    ceiling: Material = field(default_factory=lambda: _plain((0.92, 0.92, 0.9)))
    walls: tuple[Material, Material, Material, Material] = field(  # x=0, x=W, y=0, y=D
        default_factory=lambda: (_plain((0.8, 0.78, 0.72)),) * 4)

    def __post_init__(self) -> None:
        self.size = np.asarray(self.size, dtype=np.float64)
        if self.size.shape != (3,) or np.any(self.size <= 0):
            raise ValueError(f"room size must be three positive numbers, got {self.size}")

    def face_materials(self) -> list[Material]:
        """Materials indexed by face id 2 * axis + (1 if at the far bound else 0)."""
        return [*self.walls, self.floor, self.ceiling]


@dataclass(frozen=True)
class Ground:
    """Open-air ground plane z = 0 with a straight road along world x (centreline y = 0).

    The carriageway has ``lanes_per_side`` lanes of ``lane_width`` on each side of the
    centreline plus a parking strip ``parking_width`` wide along each kerb; beyond it lies the
    pavement.  Lane lines are painted (dashed between lanes, solid at the carriageway edge).
    Rays that hit nothing see the sky and get depth +inf (no ground truth, as in KITTI).
    """

    road: Material = field(default_factory=lambda: Material(
        color=(0.32, 0.32, 0.34), noise=1.0, scale=0.6, contrast=0.25))
    pavement: Material = field(default_factory=lambda: Material(
        color=(0.62, 0.6, 0.57), checker=0.5, noise=0.5, scale=0.6, contrast=0.2))
    lanes_per_side: int = 1
    lane_width: float = 3.5
    parking_width: float = 0.0
    marking_color: tuple[float, float, float] = (0.9, 0.9, 0.86)
    sky_color: tuple[float, float, float] = (0.45, 0.62, 0.88)  # at the zenith
    horizon_color: tuple[float, float, float] = (0.82, 0.86, 0.9)  # sky near the horizon, haze
    sun_direction: tuple[float, float, float] = (0.35, -0.45, 0.82)  # towards the sun
    haze_distance: float = 350.0  # metres over which surfaces fade towards the horizon colour

    def __post_init__(self) -> None:
        if self.lanes_per_side < 0 or self.lane_width <= 0 or self.parking_width < 0:
            raise ValueError("ground needs lanes_per_side >= 0, lane_width > 0, parking >= 0")

    @property
    def carriageway_half_width(self) -> float:
        """Distance from the centreline to the outer edge of the driving lanes (metres)."""
        return self.lanes_per_side * self.lane_width

    @property
    def road_half_width(self) -> float:
        """Distance from the centreline to the kerb (metres)."""
        return self.carriageway_half_width + self.parking_width


@dataclass(frozen=True)
class Lighting:
    """Lights of a scene beyond the defaults, plus the camera's exposure and white balance.

    ``sun``: direction towards a directional light (the sun outdoors, a window's light
    indoors, which the room's walls do not block) or None; ``point``: the strength of the
    room's point light; ``ambient``: light reaching every surface; with ``shadows`` objects
    cast shadows from the directional and the point light.  ``exposure`` and
    ``white_balance`` (per-channel gains) scale the shaded colour before it is quantised.
    """

    sun: tuple[float, float, float] | None = None
    sun_strength: float = 0.6
    point: float = 1.0
    ambient: float = 0.3
    shadows: bool = True
    exposure: float = 1.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass
class Scene:
    """Either a closed ``room`` (indoor) or an open ``ground`` (outdoor), plus objects.

    Rooms are lit by one point light (``light``; None: 0.3 m below the ceiling centre); open
    scenes by the sun along ``ground.sun_direction`` plus sky ambient.  ``lighting`` (None:
    exactly that, no shadows) adds a directional light, cast shadows, exposure and white
    balance.
    """

    room: Room | None = None
    objects: list[Box | Cylinder] = field(default_factory=list)
    light: np.ndarray | None = None
    ground: Ground | None = None
    lighting: Lighting | None = None

    def __post_init__(self) -> None:
        if (self.room is None) == (self.ground is None):
            raise ValueError("a scene needs exactly one of room (indoor) or ground (open air)")

    @property
    def is_open(self) -> bool:
        """True for an open-air scene (ground plane and sky instead of a room)."""
        return self.room is None

    def light_position(self) -> np.ndarray:
        """World position of the point light of an indoor scene."""
        if self.light is not None:
            return np.asarray(self.light, dtype=np.float64)
        if self.room is None:
            raise ValueError("an open scene is lit by the sun and has no point light")
        w, d, h = self.room.size
        return np.array([w / 2, d / 2, h - 0.3])


@dataclass
class CameraPose:
    """Camera position in the world plus yaw / pitch / roll in radians.

    yaw turns about world +z (0 looks along world +x, pi/2 along +y); positive pitch looks up;
    positive roll turns the camera clockwise about its optical axis, as seen from behind it.
    """

    position: np.ndarray
    yaw: float
    pitch: float
    roll: float = 0.0

    def __post_init__(self) -> None:
        self.position = np.asarray(self.position, dtype=np.float64)

    def rotation(self) -> np.ndarray:
        """R such that p_world = R @ p_optical + position; columns are the optical x, y, z axes."""
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        forward = np.array([cp * cy, cp * sy, sp])
        right = np.array([sy, -cy, 0.0])
        down = np.cross(forward, right)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        return np.stack([cr * right + sr * down, -sr * right + cr * down, forward], axis=1)
