"""Varied synthetic worlds for training and for measuring generalization, deterministic by seed.

Families (``WORLD_FAMILIES``): furnished ``room``s with clutter on the floor, long
``corridor``s with doors, ``lshape`` rooms, rooms with ``stairs`` or a ramp, ``street``s, and
``hall``s: large spaces with a grid of columns.  ``hall`` is the held-out family
(``HELDOUT_FAMILY``): no training world is a hall, and halls are surfaced only with
photographs no training world uses (``photos.HELDOUT_PHOTOS``), so a model's score on halls
measures generalization to a new layout *and* new materials.

Every world also draws its lighting (window or sun light with cast shadows, a point light,
ambient, exposure and white balance), and every view its camera (height 0.3-2 m, pitch, roll,
focal length 250-1000 px at 640 px width, principal point jitter) and sensor
(``sensor.random_sensor``).  ``world_view(family, seed, index, width, height)`` gives one
rendered, degraded view with its exact metric depth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.synthetic.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS
from clip_depth_ros.synthetic.primitives import (Box, CameraPose, Cylinder, Lighting, Material,
                                                 Room, Scene)
from clip_depth_ros.synthetic.render import render
from clip_depth_ros.synthetic.scene import (_FLOOR_COLORS, _FURNITURE_COLORS, _WALL_COLORS,
                                            _overlap_xy)
from clip_depth_ros.synthetic.sensor import apply_sensor, random_sensor
from clip_depth_ros.synthetic.street import StreetScene, random_street_scene

WORLD_FAMILIES = ("room", "corridor", "lshape", "stairs", "street", "hall")
HELDOUT_FAMILY = "hall"
TRAIN_FAMILIES = tuple(f for f in WORLD_FAMILIES if f != HELDOUT_FAMILY)
# how often each training family is drawn (world_family)
FAMILY_WEIGHTS = {"room": 0.3, "corridor": 0.2, "lshape": 0.15, "stairs": 0.2, "street": 0.15}
FOCAL_AT_640 = (250.0, 1000.0)  # focal length range in pixels for a 640 px wide image
CAMERA_HEIGHT = (0.3, 2.0)
PITCH_DEG = (-35.0, 15.0)
ROLL_DEG = 8.0
_CLEARANCE = 0.35  # cameras keep this far from walls and object footprints


@dataclass
class World:
    """A scene, its family, and the floor footprints (x0, x1, y0, y1) cameras keep out of."""

    family: str
    scene: Scene
    keep_out: list[tuple[float, float, float, float]]


class _Surfaces:
    """Draws materials: procedural patterns or, with probability ``photo_p``, a photograph."""

    def __init__(self, rng: np.random.Generator, photos: tuple[str, ...], photo_p: float):
        self.rng, self.photos, self.photo_p = rng, photos, photo_p

    def __call__(self, palette: list, jitter: float = 0.08) -> Material:
        rng = self.rng
        base = np.asarray(palette[rng.integers(len(palette))]) + rng.uniform(-jitter, jitter, 3)
        color = tuple(float(c) for c in np.clip(base, 0.05, 1))
        if rng.random() < self.photo_p:
            tint = tuple(float(c) for c in np.clip(0.55 + 0.45 * np.asarray(color)
                                                   + rng.uniform(-0.05, 0.05, 3), 0.2, 1))
            return Material(color=tint, photo=str(self.photos[rng.integers(len(self.photos))]),
                            scale=float(rng.uniform(0.3, 2.0)),
                            contrast=float(rng.uniform(0.3, 0.8)),
                            seed=int(rng.integers(1 << 30)))
        checker, stripes, noise, grid = rng.dirichlet([0.5, 0.5, 1.2, 0.3])
        return Material(color=color, checker=float(checker), stripes=float(stripes),
                        noise=float(noise), grid=float(grid),
                        scale=float(rng.uniform(0.1, 1.0)), contrast=float(rng.uniform(0.1, 0.55)),
                        seed=int(rng.integers(1 << 30)))


def _lighting(rng: np.random.Generator, outdoor: bool) -> Lighting:
    azimuth, elevation = rng.uniform(-math.pi, math.pi), rng.uniform(0.25, 1.1)
    sun = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
           math.sin(elevation))
    warmth = rng.uniform(-0.12, 0.12)
    balance = (1 + warmth, 1 + rng.uniform(-0.03, 0.03), 1 - warmth)
    if outdoor:
        return Lighting(sun=sun, sun_strength=float(rng.uniform(0.5, 0.9)), point=0.0,
                        ambient=float(rng.uniform(0.35, 0.6)),
                        exposure=float(rng.uniform(0.75, 1.3)), white_balance=balance)
    window = rng.random() < 0.6
    return Lighting(sun=sun if window else None, sun_strength=float(rng.uniform(0.2, 0.8)),
                    point=float(rng.uniform(0.4, 1.2)), ambient=float(rng.uniform(0.15, 0.45)),
                    exposure=float(rng.uniform(0.7, 1.4)), white_balance=balance)


def _room(rng: np.random.Generator, surfaces: _Surfaces, size: tuple) -> Room:
    return Room(size=np.asarray(size, dtype=float), floor=surfaces(_FLOOR_COLORS),
                ceiling=surfaces([(0.93, 0.93, 0.9), (0.85, 0.85, 0.83)], 0.03),
                walls=tuple(surfaces(_WALL_COLORS, 0.05) for _ in range(4)))


def _footprint(obj: Box | Cylinder) -> tuple[float, float, float, float]:
    lo, hi = obj.bounds()
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _piece(rng: np.random.Generator, surfaces: _Surfaces, size: np.ndarray,
           scale: float) -> list[Box | Cylinder]:
    """One piece of furniture or clutter at a random place: boxes and cylinders."""
    w, d, h = size
    material = surfaces(_FURNITURE_COLORS, 0.1)
    kind = rng.choice(["cabinet", "table", "shelf", "cylinder", "clutter"],
                      p=[0.25, 0.2, 0.1, 0.15, 0.3])
    if kind == "cylinder":
        radius = rng.uniform(0.08, 0.4) * scale
        top = h if rng.random() < 0.1 else rng.uniform(0.3, 1.6)
        cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, d - radius)
        return [Cylinder(center=(cx, cy), radius=radius, z_min=0.0, z_max=min(top, h - 0.01),
                         material=material)]
    if kind == "clutter":  # boxes, bags, bins left on the floor
        sx, sy = rng.uniform(0.1, 0.45, 2)
        x0, y0 = rng.uniform(0, w - sx), rng.uniform(0, d - sy)
        return [Box((x0, y0, 0.0), (x0 + sx, y0 + sy, rng.uniform(0.08, 0.5)), material)]
    sx, sy = rng.uniform(0.4, 1.6, 2) * scale
    x0, y0 = rng.uniform(0, max(w - sx, 1e-3)), rng.uniform(0, max(d - sy, 1e-3))
    x1, y1 = min(x0 + sx, w - 1e-3), min(y0 + sy, d - 1e-3)
    if kind == "shelf":  # hung on the nearest wall
        z0 = rng.uniform(0.8, 1.8)
        return [Box((x0, y0, z0), (x1, y1, min(z0 + rng.uniform(0.05, 0.5), h - 0.05)),
                    material)]
    if kind == "table":  # a top on four legs: thin structure and the floor seen beneath
        top = rng.uniform(0.45, 1.05)
        leg = 0.05
        parts = [Box((x0, y0, top - 0.04), (x1, y1, top), material)]
        for lx, ly in ((x0, y0), (x1 - leg, y0), (x0, y1 - leg), (x1 - leg, y1 - leg)):
            parts.append(Box((lx, ly, 0.0), (lx + leg, ly + leg, top - 0.04), material))
        return parts
    return [Box((x0, y0, 0.0), (x1, y1, rng.uniform(0.4, min(2.2, h - 0.1))), material)]


def _furnish(rng: np.random.Generator, surfaces: _Surfaces, size: np.ndarray, n: int,
             taken: list[tuple], keep_clear: list[tuple]) -> list[Box | Cylinder]:
    """Up to ``n`` pieces that overlap neither ``taken`` footprints nor ``keep_clear`` areas
    (both extended as they are placed)."""
    objects: list[Box | Cylinder] = []
    placed = 0
    for attempt in range(400):
        if placed == n:
            break
        parts = _piece(rng, surfaces, size, scale=max(0.3, 1.0 - attempt / 200))
        prints = [_footprint(p) for p in parts]
        whole = (min(p[0] for p in prints), max(p[1] for p in prints),
                 min(p[2] for p in prints), max(p[3] for p in prints))
        if any(_overlap_xy(whole, other, 0.05) for other in taken + keep_clear):
            continue
        objects += parts
        taken.append(whole)
        placed += 1
    return objects


def _room_world(rng, surfaces) -> tuple[Room, list, list]:
    size = np.array([rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(2.3, 3.2)])
    centre = (size[0] / 2 - 0.6, size[0] / 2 + 0.6, size[1] / 2 - 0.6, size[1] / 2 + 0.6)
    taken: list[tuple] = []
    objects = _furnish(rng, surfaces, size, int(rng.integers(4, 16)), taken, [centre])
    return _room(rng, surfaces, size), objects, taken


def _corridor_world(rng, surfaces) -> tuple[Room, list, list]:
    width, length, height = rng.uniform(1.5, 3.0), rng.uniform(8, 24), rng.uniform(2.3, 3.1)
    size = np.array([width, length, height])
    door = surfaces([(0.55, 0.35, 0.2), (0.8, 0.8, 0.78), (0.3, 0.35, 0.45)], 0.05)
    objects: list[Box | Cylinder] = []
    y = rng.uniform(0.5, 3.0)
    while y < length - 1.2:  # doors, slightly proud of the walls, on either side
        x0, x1 = (0.0, 0.04) if rng.random() < 0.5 else (width - 0.04, width)
        objects.append(Box((x0, y, 0.0), (x1, y + 0.9, 2.05), door))
        y += rng.uniform(1.8, 5.0)
    lamp = Material(color=(1.0, 1.0, 0.97), noise=1.0, contrast=0.02)
    for yl in np.arange(rng.uniform(1, 3), length - 0.5, rng.uniform(2.5, 4.5)):
        objects.append(Box((width / 2 - 0.15, yl, height - 0.03), (width / 2 + 0.15, yl + 1.2,
                                                                     height), lamp))
    taken = [_footprint(o) for o in objects]
    lane = (width / 2 - 0.45, width / 2 + 0.45, 0.0, length)  # the walkway stays free
    objects += _furnish(rng, surfaces, size, int(rng.integers(1, 7)), taken, [lane])
    return _room(rng, surfaces, size), objects, taken


def _lshape_world(rng, surfaces) -> tuple[Room, list, list]:
    size = np.array([rng.uniform(5, 10), rng.uniform(5, 10), rng.uniform(2.4, 3.2)])
    cut = rng.uniform(0.4, 0.6, 2) * size[:2]
    corner = rng.integers(4)
    x0, x1 = (0.0, cut[0]) if corner % 2 == 0 else (size[0] - cut[0], size[0])
    y0, y1 = (0.0, cut[1]) if corner < 2 else (size[1] - cut[1], size[1])
    block = Box((x0, y0, 0.0), (x1, y1, size[2]), surfaces(_WALL_COLORS, 0.05))
    taken = [_footprint(block)]
    objects = [block] + _furnish(rng, surfaces, size, int(rng.integers(3, 12)), taken, [])
    return _room(rng, surfaces, size), objects, taken


def _stairs_world(rng, surfaces) -> tuple[Room, list, list]:
    size = np.array([rng.uniform(4, 9), rng.uniform(4, 9), rng.uniform(2.8, 4.0)])
    ramp = rng.random() < 0.3
    rise = rng.uniform(0.015, 0.03) if ramp else rng.uniform(0.15, 0.19)
    run = rise / rng.uniform(0.12, 0.2) if ramp else rng.uniform(0.25, 0.32)
    steps = int(min(size[2] * 0.6, rng.uniform(0.6, 1.6)) / rise)
    width = rng.uniform(0.9, 1.6)
    material = surfaces(_FLOOR_COLORS + _FURNITURE_COLORS, 0.05)
    along_x = rng.random() < 0.5
    length = steps * run
    long_side = size[0] if along_x else size[1]
    if length > long_side - 1.0:
        steps = int((long_side - 1.0) / run)
        length = steps * run
    start = rng.uniform(0.0, long_side - length)
    side = 0.0 if rng.random() < 0.5 else (size[1] if along_x else size[0]) - width
    objects: list[Box | Cylinder] = []
    for k in range(max(steps, 1)):  # each step a block from the floor up to its tread
        a0, a1 = start + k * run, start + (k + 1) * run
        lo, hi = ((a0, side, 0.0), (a1, side + width, (k + 1) * rise)) if along_x else \
            ((side, a0, 0.0), (side + width, a1, (k + 1) * rise))
        objects.append(Box(lo, hi, material))
    taken = [_footprint(Box(np.min([o.min_corner for o in objects], 0),
                            np.max([o.max_corner for o in objects], 0)))]
    objects += _furnish(rng, surfaces, size, int(rng.integers(2, 10)), taken, [])
    return _room(rng, surfaces, size), objects, taken


def _hall_world(rng, surfaces) -> tuple[Room, list, list]:
    size = np.array([rng.uniform(8, 14), rng.uniform(8, 14), rng.uniform(3.5, 6.0)])
    spacing = rng.uniform(3.0, 5.0)
    round_columns = rng.random() < 0.5
    column = surfaces(_WALL_COLORS, 0.05)
    objects: list[Box | Cylinder] = []
    for cx in np.arange(spacing, size[0] - 1.0, spacing):
        for cy in np.arange(spacing, size[1] - 1.0, spacing):
            r = rng.uniform(0.15, 0.35)
            objects.append(Cylinder((cx, cy), r, 0.0, size[2], column) if round_columns else
                           Box((cx - r, cy - r, 0.0), (cx + r, cy + r, size[2]), column))
    taken = [_footprint(o) for o in objects]
    objects += _furnish(rng, surfaces, size, int(rng.integers(3, 12)), taken, [])
    return _room(rng, surfaces, size), objects, taken


_BUILDERS = {"room": _room_world, "corridor": _corridor_world, "lshape": _lshape_world,
             "stairs": _stairs_world, "hall": _hall_world}


def world_family(seed: int, families: tuple[str, ...] = TRAIN_FAMILIES) -> str:
    """The family of world ``seed`` in a mixture of ``families``, weighted by FAMILY_WEIGHTS
    (a family it does not list, such as the held-out hall, weighs 1.0)."""
    weights = np.array([FAMILY_WEIGHTS.get(f, 1.0) for f in families], dtype=float)
    rng = np.random.default_rng([seed, 17])
    return families[int(rng.choice(len(families), p=weights / weights.sum()))]


def random_world(family: str, seed: int) -> World:
    """A random world of ``family``, deterministic in ``seed``."""
    if family not in WORLD_FAMILIES:
        raise ValueError(f"unknown world family {family!r}; families: "
                         f"{', '.join(WORLD_FAMILIES)}")
    rng = np.random.default_rng([seed, WORLD_FAMILIES.index(family)])
    if family == "street":
        street = random_street_scene(int(rng.integers(1 << 30)))
        street = replace(street, lighting=_lighting(rng, outdoor=True))
        return World(family, street, [])
    photos, photo_p = (HELDOUT_PHOTOS, 1.0) if family == HELDOUT_FAMILY else (TRAIN_PHOTOS, 0.35)
    surfaces = _Surfaces(rng, photos, photo_p)
    room, objects, taken = _BUILDERS[family](rng, surfaces)
    size = room.size
    light = np.array([size[0] / 2, size[1] / 2, size[2] - 0.2])
    for _ in range(100):  # the lamp hangs in free space, not inside the L's block or a column
        light = np.array([rng.uniform(0.15, 0.85) * size[0], rng.uniform(0.15, 0.85) * size[1],
                          size[2] - 0.2])
        if not any(np.all(light >= o.bounds()[0] - 0.1) and np.all(light <= o.bounds()[1] + 0.1)
                   for o in objects):
            break
    scene = Scene(room=room, objects=objects, light=light, lighting=_lighting(rng, False))
    return World(family, scene, taken)


def random_world_pose(world: World, rng: np.random.Generator) -> CameraPose:
    """A random camera pose in the free space of ``world``: height 0.3-2 m (below the
    ceiling), looking at a random point of the room at least 1.5 m away (pitch within
    -35..+15 deg), roll within +-8 deg (streets: in the lanes, along the road +-20 deg)."""
    pitch = math.radians(rng.uniform(*PITCH_DEG))
    roll = math.radians(rng.uniform(-ROLL_DEG, ROLL_DEG))
    scene = world.scene
    if isinstance(scene, StreetScene):
        lo, hi = scene.lane_y
        position = (rng.uniform(*scene.drive_x), rng.uniform(lo + 0.5, hi - 0.5),
                    rng.uniform(*CAMERA_HEIGHT))
        return CameraPose(np.array(position), yaw=math.radians(rng.uniform(-20, 20)),
                          pitch=pitch * 0.5, roll=roll)
    w, d, h = scene.room.size
    top = min(CAMERA_HEIGHT[1], h - 0.3)
    xy = (w / 2, d / 2)
    # rejection sampling of a free spot (every family leaves one; after 200 misses the last
    # draw is kept: a camera inside a box sees through it, nothing fails)
    for _ in range(200):
        xy = (rng.uniform(_CLEARANCE, w - _CLEARANCE), rng.uniform(_CLEARANCE, d - _CLEARANCE))
        spot = (xy[0], xy[0], xy[1], xy[1])
        if not any(_overlap_xy(spot, fp, _CLEARANCE) for fp in world.keep_out):
            break
    height = rng.uniform(CAMERA_HEIGHT[0], top)
    # look at a random point of the room at least 1.5 m away (not at the nearest wall)
    target = np.array([w / 2, d / 2, h / 2])
    for _ in range(50):
        target = np.array([rng.uniform(0, w), rng.uniform(0, d), rng.uniform(0.1, h - 0.2)])
        if math.hypot(target[0] - xy[0], target[1] - xy[1]) >= 1.5:
            break
    run = math.hypot(target[0] - xy[0], target[1] - xy[1])
    look = math.atan2(target[2] - height, max(run, 1e-3)) + math.radians(rng.uniform(-10, 10))
    pitch = float(np.clip(look, *np.radians(PITCH_DEG)))
    return CameraPose(np.array([xy[0], xy[1], height]),
                      yaw=math.atan2(target[1] - xy[1], target[0] - xy[0]), pitch=pitch,
                      roll=roll)


def random_intrinsics(rng: np.random.Generator, width: int, height: int,
                      focal_at_640: tuple[float, float] = FOCAL_AT_640) -> Intrinsics:
    """A pinhole camera: focal length log-uniform in ``focal_at_640`` (pixels at 640 px width,
    scaled to ``width``), principal point within 2% of the image centre."""
    lo, hi = focal_at_640
    focal = math.exp(rng.uniform(math.log(lo), math.log(hi))) * width / 640.0
    cx = (width - 1) / 2 + rng.uniform(-0.02, 0.02) * width
    cy = (height - 1) / 2 + rng.uniform(-0.02, 0.02) * height
    return Intrinsics(focal, focal, cx, cy, width, height)


def world_view(family: str, seed: int, index: int, width: int, height: int,
               sensor: bool = True, world: World | None = None,
               focal_at_640: tuple[float, float] = FOCAL_AT_640,
               ) -> tuple[np.ndarray, np.ndarray, Intrinsics, CameraPose]:
    """View ``index`` of world (``family``, ``seed``): (rgb uint8, depth float32 with +inf for
    sky, intrinsics, pose), the image degraded by a random sensor unless ``sensor`` is False.
    ``world``: the already built ``random_world(family, seed)``, to skip rebuilding it."""
    world = world or random_world(family, seed)
    rng = np.random.default_rng([seed, index, 29])
    pose = random_world_pose(world, rng)
    intrinsics = random_intrinsics(rng, width, height, focal_at_640)
    rgb, depth = render(world.scene, pose, intrinsics)
    if sensor:
        rgb = apply_sensor(rgb, random_sensor(rng), intrinsics.fx, rng)
    return rgb, depth, intrinsics, pose


def contact_sheet(families: tuple[str, ...] = WORLD_FAMILIES, per_family: int = 4,
                  width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """One row per family of ``per_family`` views (RGB above, depth 0-10 m below), RGB."""
    import cv2
    rows = []
    for family in families:
        tiles = []
        for k in range(per_family):
            rgb, depth, _, _ = world_view(family, seed + k, k, width, height)
            metres = np.clip(np.nan_to_num(depth, posinf=10.0) / 10.0, 0, 1)
            colour = cv2.applyColorMap((metres * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
            tiles.append(np.vstack([rgb, colour[..., ::-1]]))
        row = np.hstack(tiles)
        cv2.putText(row, family, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        rows.append(row)
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m clip_depth_ros.synthetic.worlds --out worlds.png``: a contact sheet."""
    import cv2

    from clip_depth_ros.errors import OneLineParser
    ap = OneLineParser(prog="python -m clip_depth_ros.synthetic.worlds",
                       description="Render a contact sheet of the synthetic world families "
                                   "(each view above its depth, 0-10 m).")
    ap.add_argument("--out", required=True, help="PNG or JPEG file to write")
    ap.add_argument("--families", nargs="+", default=list(WORLD_FAMILIES),
                    choices=WORLD_FAMILIES, metavar="FAMILY",
                    help=f"families, of {', '.join(WORLD_FAMILIES)} (default: all)")
    ap.add_argument("--per-family", type=int, default=4, help="views per family (default 4)")
    ap.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"),
                    help="view size in pixels (default 320 240)")
    ap.add_argument("--seed", type=int, default=0, help="first world seed (default 0)")
    args = ap.parse_args(argv)
    if args.per_family < 1 or min(args.size) < 16 or args.seed < 0:
        ap.error("--per-family must be >= 1, --size at least 16 16 and --seed >= 0")
    if not args.out.lower().endswith((".png", ".jpg", ".jpeg")):
        ap.error(f"--out must be a .png or .jpg file, not {args.out}")
    sheet = contact_sheet(tuple(args.families), args.per_family, *args.size, seed=args.seed)
    if not cv2.imwrite(args.out, sheet[..., ::-1]):
        ap.error(f"could not write {args.out}")
    print(f"wrote {args.out} ({len(args.families)} families x {args.per_family} views)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
