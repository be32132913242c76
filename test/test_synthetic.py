"""Procedural scenes: determinism, exact z-depth on known geometry, agreement with geometry.py."""
import math
from dataclasses import replace

import numpy as np
import pytest

from clip_depth_ros.geometry import Intrinsics, depth_to_points
from clip_depth_ros.synthetic import (
    Box,
    CameraPose,
    Cylinder,
    Room,
    Scene,
    demo_trajectory,
    random_indoor_scene,
    render,
)
from clip_depth_ros.synthetic.scene import camera_region, with_texture_scale

SMALL = Intrinsics(fx=60.0, fy=55.0, cx=39.5, cy=29.5, width=80, height=60)
# Narrow field of view: from 5 m every ray hits the same wall.
NARROW = Intrinsics(fx=200.0, fy=200.0, cx=31.5, cy=23.5, width=64, height=48)
EMPTY = Scene(room=Room(size=(6.0, 4.0, 3.0)))
FACING_WALL = CameraPose(position=np.array([1.0, 2.0, 1.5]), yaw=0.0, pitch=0.0)


def _world_points(depth: np.ndarray, pose: CameraPose, intrinsics: Intrinsics) -> np.ndarray:
    points = depth_to_points(depth, intrinsics).reshape(-1, 3).astype(np.float64)
    return points @ pose.rotation().T + pose.position


def _surface_distance(points: np.ndarray, scene: Scene) -> np.ndarray:
    """Unsigned distance from each point to the nearest surface of the scene."""
    size = scene.room.size
    best = np.minimum(points, size - points).min(axis=1)
    for obj in scene.objects:
        if isinstance(obj, Box):
            centre = (obj.min_corner + obj.max_corner) / 2
            half = (obj.max_corner - obj.min_corner) / 2
            q = np.abs(points - centre) - half
            sdf = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
        else:
            radial = np.hypot(*(points[:, :2] - obj.center).T) - obj.radius
            mid, half_height = (obj.z_min + obj.z_max) / 2, (obj.z_max - obj.z_min) / 2
            vertical = np.abs(points[:, 2] - mid) - half_height
            q = np.stack([radial, vertical], 1)
            sdf = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
        best = np.minimum(best, np.abs(sdf))
    return best


def test_same_seed_same_images_different_seed_different():
    a, b, c = random_indoor_scene(3), random_indoor_scene(3), random_indoor_scene(4)
    rgb_a, depth_a = render(a, demo_trajectory(a, 10)[4], SMALL)
    rgb_b, depth_b = render(b, demo_trajectory(b, 10)[4], SMALL)
    rgb_c, depth_c = render(c, demo_trajectory(c, 10)[4], SMALL)
    np.testing.assert_array_equal(rgb_a, rgb_b)
    np.testing.assert_array_equal(depth_a, depth_b)
    assert not np.array_equal(depth_a, depth_c) and not np.array_equal(rgb_a, rgb_c)


@pytest.mark.parametrize("seed", range(12))
def test_random_scene_respects_its_ranges(seed):
    scene = random_indoor_scene(seed)
    w, d, h = scene.room.size
    assert 3 <= w <= 8 and 3 <= d <= 8 and 2.4 <= h <= 3.2
    assert 3 <= len(scene.objects) <= 8
    x0, x1, y0, y1 = camera_region(scene.room)
    for obj in scene.objects:
        lo, hi = obj.bounds()
        assert np.all(lo >= -1e-9) and np.all(hi <= scene.room.size + 1e-9)
        clear = hi[0] < x0 or lo[0] > x1 or hi[1] < y0 or lo[1] > y1
        assert clear, f"{obj} intrudes on the camera region"


@pytest.mark.parametrize("seed", [0, 5])
def test_depth_finite_positive_and_inside_room(seed):
    scene = random_indoor_scene(seed)
    for pose in demo_trajectory(scene, 6):
        rgb, depth = render(scene, pose, SMALL)
        assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8
        assert depth.shape == (60, 80) and depth.dtype == np.float32
        assert np.isfinite(depth).all() and (depth > 0).all()
        assert depth.max() <= np.linalg.norm(scene.room.size)
        world = _world_points(depth, pose, SMALL)
        assert np.all(world >= -1e-3) and np.all(world <= scene.room.size + 1e-3)
        assert rgb.std() > 5  # textured and shaded, not a flat fill


def test_fronto_parallel_wall_has_constant_z_depth():
    rgb, depth = render(EMPTY, FACING_WALL, NARROW)
    # Wall at x = 6, camera at x = 1: z-depth is 5 at the centre and at the corners alike
    # (the range to a corner would be 5 * sqrt(1 + ((u - cx)/fx)^2 + ((v - cy)/fy)^2)).
    np.testing.assert_allclose(depth, 5.0, rtol=1e-6)
    assert depth[0, 0] == pytest.approx(5.0, rel=1e-6)
    assert depth[24, 32] == pytest.approx(5.0, rel=1e-6)


def test_turned_camera_sees_slanted_wall():
    long_room = Scene(room=Room(size=(6.0, 10.0, 3.0)))
    pose = CameraPose(position=np.array([1.0, 5.0, 1.5]), yaw=0.3, pitch=0.0)
    _, depth = render(long_room, pose, NARROW)
    # In world the ray is forward + (x/z) right = (cos + (x/z) sin, sin - (x/z) cos, .),
    # so it reaches the wall x = 6 at z = 5 / (cos(yaw) + (x/z) sin(yaw)): 5 / cos(yaw) on axis.
    x_over_z = (np.arange(64) - NARROW.cx) / NARROW.fx
    expected = 5.0 / (math.cos(0.3) + x_over_z * math.sin(0.3))
    for row in (0, 23, 47):
        np.testing.assert_allclose(depth[row], expected, rtol=1e-5)
    assert depth[:, 0].mean() > depth[:, -1].mean()  # the image's left looks further along


def test_box_in_front_reduces_depth_only_where_it_is():
    box = Box(min_corner=(3.0, 1.9, 1.4), max_corner=(3.5, 2.1, 1.6))
    _, depth = render(Scene(room=EMPTY.room, objects=[box]), FACING_WALL, NARROW)
    assert depth[24, 32] == pytest.approx(2.0, rel=1e-6)  # front face at x = 3
    # The front face spans y = 2 -+ 0.1 at 2 m: u in (31.5 - 10, 31.5 + 10), i.e. pixels 22..41.
    np.testing.assert_array_equal(np.flatnonzero(depth[24] < 5.0), np.arange(22, 42))
    assert depth[0, 0] == pytest.approx(5.0) and depth[47, 63] == pytest.approx(5.0)


def test_cylinder_side_and_cap():
    pillar = Cylinder(center=(4.0, 2.0), radius=0.5, z_min=0.0, z_max=3.0)
    _, depth = render(Scene(room=EMPTY.room, objects=[pillar]), FACING_WALL, NARROW)
    assert depth[23:25, 31:33] == pytest.approx(2.5, rel=1e-4)  # x = 4 - 0.5, camera at x = 1
    stool = Cylinder(center=(2.0, 2.0), radius=0.3, z_min=0.0, z_max=1.0)
    down = CameraPose(position=np.array([2.0, 2.0, 2.5]), yaw=0.0, pitch=-math.pi / 2)
    _, depth = render(Scene(room=EMPTY.room, objects=[stool]), down, SMALL)
    assert depth[29:31, 39:41] == pytest.approx(1.5, rel=1e-5)  # the top cap
    assert depth[0, 0] == pytest.approx(2.5, rel=1e-5)  # the floor beyond the cap's rim


def test_back_projected_points_land_on_surfaces():
    scene = random_indoor_scene(7)
    poses = demo_trajectory(scene, 5)
    poses.append(CameraPose(position=poses[0].position, yaw=0.7, pitch=-0.9, roll=0.4))
    floor_points = 0
    for pose in poses:
        _, depth = render(scene, pose, SMALL)
        world = _world_points(depth, pose, SMALL)
        assert _surface_distance(world, scene).max() < 1e-3
        floor_points += int((np.abs(world[:, 2]) < 1e-3).sum())
    assert floor_points > 100


def test_floor_points_have_zero_height():
    pose = CameraPose(position=np.array([3.0, 2.0, 1.4]), yaw=0.5, pitch=-1.2, roll=0.2)
    _, depth = render(EMPTY, pose, SMALL)
    world = _world_points(depth, pose, SMALL)
    # Pitched down steeply in an empty room: the lower image rows all see the floor.
    lower = world.reshape(60, 80, 3)[40:]
    np.testing.assert_allclose(lower[..., 2], 0.0, atol=1e-3)


def test_rotation_convention():
    r = CameraPose(position=np.zeros(3), yaw=0.0, pitch=0.0).rotation()
    np.testing.assert_allclose(r[:, 2], [1, 0, 0], atol=1e-12)  # optical z -> world +x
    np.testing.assert_allclose(r[:, 0], [0, -1, 0], atol=1e-12)  # optical x (right) -> world -y
    np.testing.assert_allclose(r[:, 1], [0, 0, -1], atol=1e-12)  # optical y (down) -> world -z
    # Positive roll turns the camera clockwise seen from behind: its right side dips.
    assert CameraPose(position=np.zeros(3), yaw=0.0, pitch=0.0, roll=0.2).rotation()[2, 0] < 0
    r = CameraPose(position=np.zeros(3), yaw=math.pi / 2, pitch=0.3, roll=0.2).rotation()
    assert r[1, 2] > 0.9 and r[2, 2] == pytest.approx(math.sin(0.3))  # looks along +y, tilted up
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_demo_trajectory_is_smooth_and_looks_at_furniture():
    scene = random_indoor_scene(2)
    poses = demo_trajectory(scene, 48)
    assert len(poses) == 48 and demo_trajectory(scene, 0) == []
    x0, x1, y0, y1 = camera_region(scene.room)
    for a, b in zip(poses, poses[1:] + poses[:1]):
        assert x0 <= a.position[0] <= x1 and y0 <= a.position[1] <= y1
        assert 1.2 <= a.position[2] <= 1.6
        assert np.linalg.norm(a.position - b.position) < 0.4
        assert abs(math.remainder(a.yaw - b.yaw, 2 * math.pi)) < 0.5
    empty = Scene(room=scene.room, light=scene.light)
    sees_furniture = 0
    for pose in poses:
        _, with_objects = render(scene, pose, SMALL)
        _, without = render(empty, pose, SMALL)
        sees_furniture += (with_objects < without - 1e-4).mean() > 0.02
    assert sees_furniture >= 0.75 * len(poses)


def test_render_rejects_camera_outside_room():
    with pytest.raises(ValueError, match="outside"):
        render(EMPTY, CameraPose(position=np.array([7.0, 2.0, 1.5]), yaw=0.0, pitch=0.0), SMALL)


def test_fixed_texture_scale_keeps_the_room_and_changes_only_the_patterns():
    plain, textured = random_indoor_scene(3), random_indoor_scene(3, texture_scale_m=0.3)
    pose = demo_trajectory(plain, 10)[4]
    rgb_plain, depth_plain = render(plain, pose, SMALL)
    rgb_textured, depth_textured = render(textured, pose, SMALL)
    np.testing.assert_array_equal(depth_plain, depth_textured)  # same geometry
    assert not np.array_equal(rgb_plain, rgb_textured)
    scales = {m.scale for m in textured.room.face_materials()}
    scales |= {obj.material.scale for obj in textured.objects}
    assert scales == {0.3}
    assert len({m.scale for m in plain.room.face_materials()}) > 1
    with pytest.raises(ValueError, match="texture_scale_m"):
        random_indoor_scene(3, texture_scale_m=0.0)


def test_pattern_period_in_pixels_follows_distance_and_focal_length():
    """The metric cue a camera-aware model can use: on a wall of fixed pattern scale, the
    pattern's period in pixels is focal * scale / depth."""
    scene = with_texture_scale(Scene(room=Room(size=(6.0, 4.0, 3.0))), 0.5)
    wall = scene.room.walls[1]  # x = W, the wall FACING_WALL looks at
    scene.room.walls = (*scene.room.walls[:1], replace(wall, checker=1.0, stripes=0.0,
                                                        noise=0.0, contrast=0.5),
                        *scene.room.walls[2:])
    row = []
    for focal in (200.0, 400.0):
        camera = Intrinsics(focal, focal, 63.5, 23.5, 128, 48)
        rgb, depth = render(scene, FACING_WALL, camera)
        assert np.allclose(depth, 5.0, atol=1e-3)
        lum = rgb[24, :, 1].astype(float)
        edges = np.flatnonzero(np.abs(np.diff(lum)) > 20)
        row.append(float(np.median(np.diff(edges))))
    # a checker square is 0.5 m: 200 px * 0.5 m / 5 m = 20 px; twice that at 400 px
    assert row == pytest.approx([20.0, 40.0], abs=1.5)
