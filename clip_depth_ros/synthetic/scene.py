"""Procedural indoor scenes and an analytic ray caster giving RGB + metric z-depth (pure numpy).

World frame: z up, the room spans [0, W] x [0, D] x [0, H] (x, y on the floor).  Cameras use
the ROS optical frame (x right, y down, z forward).  Each pixel's ray is
d_cam = ((u - cx) / fx, (v - cy) / fy, 1), so the hit parameter t is the optical-Z depth that
a depth camera (REP 118) reports, not the range along the ray.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from clip_depth_ros.geometry import Intrinsics, ray_grid

_INF = np.float32(np.inf)


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


@dataclass
class Box:
    """Axis-aligned box (furniture) between two corners in world metres."""

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


@dataclass
class Scene:
    """A room, the objects inside it and one point light (None: 0.3 m below the ceiling centre)."""

    room: Room
    objects: list[Box | Cylinder] = field(default_factory=list)
    light: np.ndarray | None = None

    def light_position(self) -> np.ndarray:
        """World position of the point light."""
        if self.light is not None:
            return np.asarray(self.light, dtype=np.float64)
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


# ---------------------------------------------------------------- ray casting


def _slab(origin: np.ndarray, inv: tuple, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Entry parameter of rays into a box (inf on a miss), via the slab method."""
    t_near, t_far = None, None
    for axis in range(3):
        t1 = (np.float32(lo[axis] - origin[axis])) * inv[axis]
        t2 = (np.float32(hi[axis] - origin[axis])) * inv[axis]
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near = near if t_near is None else np.maximum(t_near, near, out=t_near)
        t_far = far if t_far is None else np.minimum(t_far, far, out=t_far)
    hit = (t_near <= t_far) & (t_near > 0)
    return np.where(hit, t_near, _INF)


def _cylinder_hit(origin: np.ndarray, dirs: tuple, inv_z: np.ndarray,
                  cyl: Cylinder) -> np.ndarray:
    """Entry parameter of rays into a capped vertical cylinder (camera outside), inf on a miss."""
    dx, dy, dz = dirs
    ex, ey = np.float32(origin[0] - cyl.center[0]), np.float32(origin[1] - cyl.center[1])
    r2 = np.float32(cyl.radius ** 2)
    a = dx * dx + dy * dy
    half_b = dx * ex + dy * ey
    disc = half_b * half_b - a * (ex * ex + ey * ey - r2)
    t = (-half_b - np.sqrt(np.maximum(disc, 0))) / a
    z = np.float32(origin[2]) + t * dz
    best = np.where((disc >= 0) & (t > 0) & (z >= cyl.z_min) & (z <= cyl.z_max), t, _INF)
    # Only the cap facing the camera can be the entry point.
    for cap_z, faces_camera in ((cyl.z_max, origin[2] > cyl.z_max),
                                (cyl.z_min, origin[2] < cyl.z_min)):
        if faces_camera:
            tc = np.float32(cap_z - origin[2]) * inv_z
            hx, hy = ex + tc * dx, ey + tc * dy
            best = np.minimum(best, np.where((tc > 0) & (hx * hx + hy * hy <= r2), tc, _INF))
    return best


def _pixel_window(obj: Box | Cylinder, pose: CameraPose, rot: np.ndarray,
                  intrinsics: Intrinsics) -> tuple[slice, slice] | None:
    """Image rows/cols that can see the object (from its projected bounding box), None if none."""
    lo, hi = obj.bounds()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    cam = (corners - pose.position) @ rot  # rows are R^T (p - position)
    full = (slice(0, intrinsics.height), slice(0, intrinsics.width))
    if np.any(cam[:, 2] < 1e-3):  # straddles the camera plane: projection is unbounded
        return full if np.any(cam[:, 2] > 0) else None
    u = intrinsics.fx * cam[:, 0] / cam[:, 2] + intrinsics.cx
    v = intrinsics.fy * cam[:, 1] / cam[:, 2] + intrinsics.cy
    # Pixel centres are integers: keep every u in [u.min(), u.max()] plus a pixel of slack.
    u0 = max(math.floor(u.min()) - 1, 0)
    u1 = min(math.ceil(u.max()) + 2, intrinsics.width)
    v0 = max(math.floor(v.min()) - 1, 0)
    v1 = min(math.ceil(v.max()) + 2, intrinsics.height)
    if u0 >= u1 or v0 >= v1:
        return None
    return slice(v0, v1), slice(u0, u1)


def _cast(scene: Scene, pose: CameraPose, rot: np.ndarray, intrinsics: Intrinsics,
          dirs: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit per pixel: (t, object id with 0 = room, room face id 2 * axis + far)."""
    origin = pose.position
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = tuple(np.float32(1.0) / d for d in dirs)
        # Room seen from inside: the exit distance along each axis, nearest axis wins.
        t_axes = [np.where(d >= 0, np.float32(size - o), np.float32(o)) * np.abs(i)
                  for d, i, size, o in zip(dirs, inv, scene.room.size, origin)]
        t = np.minimum(np.minimum(t_axes[0], t_axes[1]), t_axes[2])
        far = [(d >= 0).view(np.int8) for d in dirs]
        room_face = np.where(t_axes[0] == t, far[0],
                             np.where(t_axes[1] == t, far[1] + 2, far[2] + 4))
        object_id = np.zeros(t.shape, dtype=np.int16)
        for k, obj in enumerate(scene.objects, start=1):
            window = _pixel_window(obj, pose, rot, intrinsics)
            if window is None:
                continue
            if isinstance(obj, Box):
                inv_window = tuple(i[window] for i in inv)
                t_obj = _slab(origin, inv_window, obj.min_corner, obj.max_corner)
            else:
                dirs_window = tuple(d[window] for d in dirs)
                t_obj = _cylinder_hit(origin, dirs_window, inv[2][window], obj)
            closer = t_obj < t[window]
            np.copyto(t[window], t_obj, where=closer)
            np.copyto(object_id[window], np.int16(k), where=closer)
    return t, object_id, room_face


# ---------------------------------------------------------------- appearance


_LATTICE = 256


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
    total = material.checker + material.stripes + material.noise
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
    return tex / np.float32(total)


def _box_surface(box: Box, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outward normals (n, 3) and surface coordinates (s, t) of hit points p (n, 3) on a box."""
    lo, hi = box.min_corner, box.max_corner
    gaps = np.stack([np.minimum(np.abs(p[:, a] - lo[a]), np.abs(p[:, a] - hi[a]))
                     for a in range(3)], 1)
    axis = np.argmin(gaps, axis=1)  # the face plane the point lies on
    rows = np.arange(len(p))
    on_far = np.abs(p[rows, axis] - hi[axis]) < np.abs(p[rows, axis] - lo[axis])
    normal = np.zeros_like(p)
    normal[rows, axis] = np.where(on_far, 1.0, -1.0)
    s = np.where(axis == 0, p[:, 1], p[:, 0])
    t = np.where(axis == 2, p[:, 1], p[:, 2])
    return normal, s, t


def _cylinder_surface(cyl: Cylinder,
                      p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outward normals and surface coordinates (arc length and z, or x and y on a cap)."""
    ex, ey = p[:, 0] - cyl.center[0], p[:, 1] - cyl.center[1]
    radial = np.sqrt(ex * ex + ey * ey)
    to_top, to_bottom = np.abs(p[:, 2] - cyl.z_max), np.abs(p[:, 2] - cyl.z_min)
    on_cap = np.minimum(to_top, to_bottom) < np.abs(radial - cyl.radius)
    safe = np.maximum(radial, 1e-9)
    zero = np.zeros_like(ex)
    cap_normal = np.stack([zero, zero, np.where(to_top < to_bottom, 1.0, -1.0)], 1)
    side_normal = np.stack([ex / safe, ey / safe, zero], 1)
    normal = np.where(on_cap[:, None], cap_normal, side_normal)
    s = np.where(on_cap, p[:, 0], np.arctan2(ey, ex) * cyl.radius)
    t = np.where(on_cap, p[:, 1], p[:, 2])
    return normal, s, t


def _room_surface(face: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inward normals and surface coordinates of hit points on one room face id."""
    axis, far = divmod(face, 2)
    normal = np.zeros_like(p)
    normal[:, axis] = -1.0 if far else 1.0
    s = p[:, 0] if axis != 0 else p[:, 1]
    t = p[:, 2] if axis != 2 else p[:, 1]
    return normal, s, t


def _shade(scene: Scene, origin: np.ndarray, dirs: tuple, t: np.ndarray,
           object_id: np.ndarray, room_face: np.ndarray) -> np.ndarray:
    """Lambertian-shaded, textured colour of every pixel as an (H*W, 3) uint8 RGB array."""
    # Sorting pixels by surface makes every surface a contiguous slice: one gather and one
    # scatter in total instead of a mask, gather and scatter per surface.  Channels-first
    # (3, N) arrays keep the per-channel arithmetic contiguous.
    surface_id = np.where(object_id == 0, room_face, object_id + 5).ravel()
    order = np.argsort(surface_id, kind="stable")
    counts = np.bincount(surface_id, minlength=6 + len(scene.objects))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    flat_t = t.ravel()[order]
    points = np.stack([np.float32(o) + flat_t * d.ravel()[order] for o, d in zip(origin, dirs)])
    normals = np.empty_like(points)
    albedo = np.empty_like(points)
    surfaces = (list(enumerate(scene.room.face_materials()))
                + [(obj, obj.material) for obj in scene.objects])
    for k, (surface, material) in enumerate(surfaces):
        part = slice(bounds[k], bounds[k + 1])
        if part.start == part.stop:
            continue
        p = points[:, part].T
        if isinstance(surface, int):
            n, s, tt = _room_surface(surface, p)
        elif isinstance(surface, Box):
            n, s, tt = _box_surface(surface, p)
        else:
            n, s, tt = _cylinder_surface(surface, p)
        tex = _texture(material, s.astype(np.float32), tt.astype(np.float32))
        gain = np.float32(1 - material.contrast) + np.float32(2 * material.contrast) * tex
        normals[:, part] = n.T
        color = np.asarray(material.color, dtype=np.float32)[:, None]
        np.multiply(color, gain, out=albedo[:, part])
    to_light = scene.light_position().astype(np.float32)[:, None] - points
    dist = np.sqrt(to_light[0] ** 2 + to_light[1] ** 2 + to_light[2] ** 2)
    n_dot_l = (normals * to_light).sum(axis=0)
    lambert = np.maximum(n_dot_l / np.maximum(dist, np.float32(1e-6)), 0)
    falloff = np.float32(1) / (np.float32(1) + (dist * np.float32(0.25)) ** 2)
    albedo *= (np.float32(0.3) + lambert * falloff) * np.float32(255)  # ambient + diffuse
    albedo += np.float32(0.5)
    rgb_sorted = np.minimum(albedo, np.float32(255), out=albedo).astype(np.uint8)
    unsort = np.empty_like(order)
    unsort[order] = np.arange(order.size)
    return np.ascontiguousarray(np.take(rgb_sorted, unsort, axis=1).T)


def render(scene: Scene, pose: CameraPose,
           intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view: (rgb uint8 HxWx3, depth_m float32 HxW along optical Z)."""
    if not intrinsics.is_valid():
        raise ValueError(f"invalid intrinsics: {intrinsics}")
    if np.any(pose.position <= 0) or np.any(pose.position >= scene.room.size):
        raise ValueError(f"camera at {pose.position} is outside the room {scene.room.size}")
    rot = pose.rotation()
    x_over_z, y_over_z = ray_grid(intrinsics, 1)
    r32 = rot.astype(np.float32)
    dirs = tuple(r32[i, 0] * x_over_z + r32[i, 1] * y_over_z + r32[i, 2] for i in range(3))
    t, object_id, room_face = _cast(scene, pose, rot, intrinsics, dirs)
    rgb = _shade(scene, pose.position, dirs, t, object_id, room_face)
    return rgb.reshape(intrinsics.height, intrinsics.width, 3), t


# ---------------------------------------------------------------- scene generation, camera paths

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


def random_indoor_scene(seed: int) -> Scene:
    """A random furnished room: 3-8 m wide and deep, 2.4-3.2 m high, 3-8 objects around a
    furniture-free camera region; deterministic in ``seed``."""
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
    return Scene(room=room, objects=objects, light=light)


def _smoothstep(x: float) -> float:
    return x * x * (3 - 2 * x)


def demo_trajectory(scene: Scene, n_frames: int) -> list[CameraPose]:
    """A slow, smooth loop: the camera pans from one piece of furniture to the next, dwelling on
    each, while dollying gently inside the camera region at 1.2-1.6 m height."""
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
        height = 1.4 + 0.2 * math.sin(2 * np.pi * phase)
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
