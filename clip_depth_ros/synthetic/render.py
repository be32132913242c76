"""Analytic ray casting and shading of a ``Scene``: RGB + metric z-depth (pure numpy).

Each pixel's ray is d_cam = ((u - cx) / fx, (v - cy) / fy, 1) rotated into the world, so the
hit parameter t is the optical-Z depth that a depth camera (REP 118) reports, not the range
along the ray.  Rays of an open scene that hit nothing see the sky: depth +inf.
"""
from __future__ import annotations

import math

import numpy as np

from clip_depth_ros.geometry import Intrinsics, ray_grid
from clip_depth_ros.synthetic.primitives import Box, CameraPose, Cylinder, Scene
from clip_depth_ros.synthetic.textures import ground_albedo, material_albedo, sky_rgb

_INF = np.float32(np.inf)
_BACKGROUND_SLOTS = 6  # room faces 0..5; open scenes use 0 = ground, 1 = sky
_SKY = 1


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


def _background_hit(scene: Scene, origin: np.ndarray, dirs: tuple,
                    inv: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Parameter and background slot of the room face (indoor) or ground / sky (open) per ray."""
    if scene.room is None:
        # Ground plane z = 0 seen from above; rays level or rising go to the sky.
        t = np.where(dirs[2] < 0, np.float32(-origin[2]) * inv[2], _INF)
        return t, np.where(dirs[2] < 0, np.int8(0), np.int8(_SKY))
    # Room seen from inside: the exit distance along each axis, nearest axis wins.
    t_axes = [np.where(d >= 0, np.float32(size - o), np.float32(o)) * np.abs(i)
              for d, i, size, o in zip(dirs, inv, scene.room.size, origin)]
    t = np.minimum(np.minimum(t_axes[0], t_axes[1]), t_axes[2])
    far = [(d >= 0).view(np.int8) for d in dirs]
    room_face = np.where(t_axes[0] == t, far[0],
                         np.where(t_axes[1] == t, far[1] + 2, far[2] + 4))
    return t, room_face


def _cast(scene: Scene, pose: CameraPose, rot: np.ndarray, intrinsics: Intrinsics,
          dirs: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit per pixel: (t, object id with 0 = background, background slot)."""
    origin = pose.position
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = tuple(np.float32(1.0) / d for d in dirs)
        t, background = _background_hit(scene, origin, dirs, inv)
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
    return t, object_id, background


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


def _surface_shading(scene: Scene, slot: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normals (n, 3) and albedo (3, n) float32 of hit points p on one surface slot."""
    if slot >= _BACKGROUND_SLOTS:
        obj = scene.objects[slot - _BACKGROUND_SLOTS]
        surface = _box_surface if isinstance(obj, Box) else _cylinder_surface
        n, s, t = surface(obj, p)
        return n, material_albedo(obj.material, s.astype(np.float32), t.astype(np.float32))
    if scene.room is not None:
        n, s, t = _room_surface(slot, p)
        material = scene.room.face_materials()[slot]
        return n, material_albedo(material, s.astype(np.float32), t.astype(np.float32))
    up = np.zeros_like(p)
    up[:, 2] = 1.0
    if slot == _SKY:  # coloured later from the ray direction; the albedo here is unused
        return up, np.zeros((3, len(p)), dtype=np.float32)
    return up, ground_albedo(scene.ground, p[:, 0].astype(np.float32),
                             p[:, 1].astype(np.float32))


def _lighting(scene: Scene, points: np.ndarray, normals: np.ndarray,
              camera: np.ndarray) -> np.ndarray:
    """Per-point brightness factor (ambient + diffuse), float32 (N,)."""
    if scene.lighting is not None:
        return _lit(scene, points, normals, camera)
    if scene.room is None:
        sun = np.asarray(scene.ground.sun_direction, dtype=np.float32)
        sun /= np.linalg.norm(sun)
        lambert = np.maximum((normals * sun[:, None]).sum(axis=0), 0)
        return np.float32(0.5) + np.float32(0.6) * lambert  # sky ambient + sun
    to_light = scene.light_position().astype(np.float32)[:, None] - points
    dist = np.sqrt(to_light[0] ** 2 + to_light[1] ** 2 + to_light[2] ** 2)
    n_dot_l = (normals * to_light).sum(axis=0)
    lambert = np.maximum(n_dot_l / np.maximum(dist, np.float32(1e-6)), 0)
    falloff = np.float32(1) / (np.float32(1) + (dist * np.float32(0.25)) ** 2)
    return np.float32(0.3) + lambert * falloff


_SHADOW_OFFSET = np.float32(2e-3)  # shadow rays start this far off the surface (no self-hit)
_SHADOW_RANGE = 40.0  # objects farther than this from the camera cast no shadows (streets)


def _occluded(casters: list, points: np.ndarray, direction: np.ndarray,
              max_t: np.ndarray | float) -> np.ndarray:
    """Which points (3, N) have an object between them and a light ``direction`` away
    ((3,) or (3, N), parameter 1 = the light for a point light, max_t), by the slab method on
    each caster's bounding box (a cylinder shadows like its box: simple shadows; a box that
    contains the point itself never shadows it)."""
    blocked = np.zeros(points.shape[1], dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.float32(1.0) / direction
        for lo, hi in casters:
            t_near = np.full(points.shape[1], -np.inf, dtype=np.float32)
            t_far = np.full(points.shape[1], np.inf, dtype=np.float32)
            for a in range(3):
                inv_a = inv[a]
                t1 = (np.float32(lo[a]) - points[a]) * inv_a
                t2 = (np.float32(hi[a]) - points[a]) * inv_a
                np.maximum(t_near, np.minimum(t1, t2), out=t_near)
                np.minimum(t_far, np.maximum(t1, t2), out=t_far)
            # an entry in front of the point; a ray starting inside a caster's box (a point
            # on a cylinder, whose box contains it) is not blocked by that box
            blocked |= (t_near <= t_far) & (t_near > 0) & (t_near < max_t)
    return blocked


def _lit(scene: Scene, points: np.ndarray, normals: np.ndarray,
         camera: np.ndarray) -> np.ndarray:
    """Brightness (N,) under ``scene.lighting``: ambient, the room's point light with distance
    falloff, a directional light, each but the ambient blocked by objects' cast shadows."""
    light = scene.lighting
    brightness = np.full(points.shape[1], np.float32(light.ambient), dtype=np.float32)
    lifted = points + normals * _SHADOW_OFFSET
    casters = []
    if light.shadows:
        for obj in scene.objects:
            lo, hi = obj.bounds()
            if np.linalg.norm(np.clip(camera, lo, hi) - camera) <= _SHADOW_RANGE:
                casters.append((lo, hi))
    if light.sun is not None and light.sun_strength > 0:
        sun = np.asarray(light.sun, dtype=np.float32)
        sun /= np.linalg.norm(sun)
        lambert = np.maximum(sun @ normals, 0)
        lit = lambert > 0
        if casters and lit.any():
            lit[lit] = ~_occluded(casters, lifted[:, lit], sun, np.inf)
        brightness += np.float32(light.sun_strength) * np.where(lit, lambert, 0)
    if scene.room is not None and light.point > 0:
        to_light = scene.light_position().astype(np.float32)[:, None] - points
        dist = np.sqrt((to_light * to_light).sum(axis=0))
        lambert = np.maximum((normals * to_light).sum(axis=0) / np.maximum(dist, 1e-6), 0)
        lit = lambert > 0
        if casters and lit.any():
            lit[lit] = ~_occluded(casters, lifted[:, lit], to_light[:, lit], 1.0)
        falloff = np.float32(1) / (np.float32(1) + (dist * np.float32(0.25)) ** 2)
        brightness += np.float32(light.point) * np.where(lit, lambert * falloff, 0)
    return brightness


def _shade(scene: Scene, origin: np.ndarray, dirs: tuple, t: np.ndarray,
           object_id: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Lambertian-shaded, textured colour of every pixel as an (H*W, 3) uint8 RGB array."""
    # Sorting pixels by surface makes every surface a contiguous slice: one gather and one
    # scatter in total instead of a mask, gather and scatter per surface.  Channels-first
    # (3, N) arrays keep the per-channel arithmetic contiguous.
    surface_id = np.where(object_id == 0, background, object_id + 5).ravel()
    order = np.argsort(surface_id, kind="stable")
    counts = np.bincount(surface_id, minlength=_BACKGROUND_SLOTS + len(scene.objects))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    flat_t = t.ravel()[order]
    if scene.is_open:  # sky rays (t = inf) get a finite dummy point; their colour comes later
        flat_t = np.where(np.isfinite(flat_t), flat_t, np.float32(0))
    points = np.stack([np.float32(o) + flat_t * d.ravel()[order] for o, d in zip(origin, dirs)])
    normals = np.empty_like(points)
    albedo = np.empty_like(points)
    for slot in range(len(counts)):
        part = slice(bounds[slot], bounds[slot + 1])
        if part.start == part.stop:
            continue
        n, albedo[:, part] = _surface_shading(scene, slot, points[:, part].T)
        normals[:, part] = n.T
    albedo *= _lighting(scene, points, normals, origin) * np.float32(255)
    if scene.lighting is not None:  # the camera's exposure and white balance
        albedo *= (np.float32(scene.lighting.exposure)
                   * np.asarray(scene.lighting.white_balance, dtype=np.float32)[:, None])
    if scene.is_open:  # aerial perspective: distant surfaces fade into the horizon haze
        keep = np.exp(-flat_t / np.float32(scene.ground.haze_distance))
        haze = np.asarray(scene.ground.horizon_color, dtype=np.float32)[:, None] * 255
        albedo = albedo * keep + haze * (1 - keep)
    albedo += np.float32(0.5)
    rgb_sorted = np.minimum(albedo, np.float32(255), out=albedo).astype(np.uint8)
    unsort = np.empty_like(order)
    unsort[order] = np.arange(order.size)
    return np.ascontiguousarray(np.take(rgb_sorted, unsort, axis=1).T)


def _check_camera(scene: Scene, pose: CameraPose) -> None:
    if scene.room is None:
        if pose.position[2] <= 0:
            raise ValueError(f"camera at {pose.position} is not above the ground plane z = 0")
    elif np.any(pose.position <= 0) or np.any(pose.position >= scene.room.size):
        raise ValueError(f"camera at {pose.position} is outside the room {scene.room.size}")


def render(scene: Scene, pose: CameraPose,
           intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view: (rgb uint8 HxWx3, depth_m float32 HxW along optical Z; +inf = sky)."""
    if not intrinsics.is_valid():
        raise ValueError(f"invalid intrinsics: {intrinsics}")
    _check_camera(scene, pose)
    rot = pose.rotation()
    x_over_z, y_over_z = ray_grid(intrinsics, 1)
    r32 = rot.astype(np.float32)
    dirs = tuple(r32[i, 0] * x_over_z + r32[i, 1] * y_over_z + r32[i, 2] for i in range(3))
    t, object_id, background = _cast(scene, pose, rot, intrinsics, dirs)
    rgb = _shade(scene, pose.position, dirs, t, object_id, background)
    rgb = rgb.reshape(intrinsics.height, intrinsics.width, 3)
    if scene.is_open:
        sky = (object_id == 0) & (background == _SKY)
        rgb[sky] = sky_rgb(scene.ground, dirs[0][sky], dirs[1][sky], dirs[2][sky])
    return rgb, t
