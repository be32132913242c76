"""Street scenes: sky as +inf, exact ground-plane depth, cars, far depths, random poses."""
import math

import numpy as np
import pytest

from clip_depth_ros.geometry import Intrinsics
from clip_depth_ros.synthetic import (
    Box,
    CameraPose,
    Ground,
    Room,
    Scene,
    StreetScene,
    random_pose,
    random_scene,
    random_street_scene,
    render,
    street_trajectory,
)
from clip_depth_ros.synthetic.scene import camera_region
from clip_depth_ros.synthetic.street import CAR_SIZE

# KITTI's camera at a quarter of its size: fast, same field of view.
KITTI_SMALL = Intrinsics(fx=721.5377, fy=721.5377, cx=609.5593, cy=172.854,
                         width=1242, height=375).scaled_to(310, 94)
OPEN = Scene(ground=Ground())


def test_same_seed_same_street_different_seed_different():
    renders = []
    for seed in (3, 3, 4):
        scene = random_street_scene(seed)
        renders.append(render(scene, street_trajectory(scene, 5)[2], KITTI_SMALL))
    np.testing.assert_array_equal(renders[0][0], renders[1][0])
    np.testing.assert_array_equal(renders[0][1], renders[1][1])
    assert not np.array_equal(renders[0][0], renders[2][0])


def test_sky_has_infinite_depth_and_sky_colour():
    pose = CameraPose(position=np.array([0.0, -1.75, 1.6]), yaw=0.0, pitch=0.0)
    rgb, depth = render(OPEN, pose, KITTI_SMALL)
    above = np.arange(KITTI_SMALL.height) < KITTI_SMALL.cy  # rows whose rays rise
    assert np.isposinf(depth[above]).all()
    assert np.isfinite(depth[~above]).all() and (depth[~above] > 0).all()
    sky = rgb[above].reshape(-1, 3).astype(int)
    assert (sky[:, 2] > sky[:, 0]).all()  # bluish
    assert rgb[0, :, 0].mean() < rgb[int(KITTI_SMALL.cy) - 1, :, 0].mean()  # hazy horizon


def test_ground_depth_matches_analytic_plane_distance():
    height = 1.6
    pose = CameraPose(position=np.array([5.0, -1.75, height]), yaw=0.0, pitch=0.0)
    _, depth = render(OPEN, pose, KITTI_SMALL)
    rows = np.arange(KITTI_SMALL.height)
    below = rows > KITTI_SMALL.cy
    # Level camera: the ray through row v meets z = 0 at optical z = h * fy / (v - cy), in
    # every column (z-depth, not range).
    expected = height * KITTI_SMALL.fy / (rows[below] - KITTI_SMALL.cy)
    np.testing.assert_allclose(depth[below], np.repeat(expected[:, None], KITTI_SMALL.width, 1),
                               rtol=1e-5)
    # The same holds in a furnished street on the free lane ahead of the camera.
    scene = random_street_scene(0)
    pose = street_trajectory(scene, 3)[0]
    _, depth = render(scene, pose, KITTI_SMALL)
    u, v = int(round(KITTI_SMALL.cx)), KITTI_SMALL.height - 5
    assert depth[v, u] == pytest.approx(pose.position[2] * KITTI_SMALL.fy / (v - KITTI_SMALL.cy),
                                        rel=1e-5)


def test_cars_only_reduce_depth():
    seen = 0
    for seed in range(3):
        scene, empty = random_street_scene(seed), random_street_scene(seed, with_cars=False)
        assert len(scene.objects) > len(empty.objects)
        for pose in street_trajectory(scene, 3):
            _, with_cars = render(scene, pose, KITTI_SMALL)
            _, without = render(empty, pose, KITTI_SMALL)
            assert (with_cars <= without).all()
            seen += (with_cars < without).mean() > 0.01
    assert seen >= 5


@pytest.mark.parametrize("seed", range(4))
def test_depth_reaches_far_and_sky_is_visible(seed):
    scene = random_street_scene(seed)
    _, depth = render(scene, street_trajectory(scene, 3)[1], KITTI_SMALL)
    finite = depth[np.isfinite(depth)]
    assert (finite > 0).all() and finite.max() > 40 and (finite > 40).mean() > 0.01
    assert np.isposinf(depth).mean() > 0.005


@pytest.mark.parametrize("seed", range(6))
def test_street_layout_respects_its_ranges(seed):
    scene = random_street_scene(seed)
    assert isinstance(scene, StreetScene) and scene.room is None
    lane_lo, lane_hi = scene.lane_y
    assert 0 < -lane_lo <= scene.ground.road_half_width and lane_hi == 0
    n_static = len(random_street_scene(seed, with_cars=False).objects)
    cars = scene.objects[n_static:]  # cars come last, as body + cabin pairs
    assert cars and len(cars) % 2 == 0
    for body, cabin in zip(cars[::2], cars[1::2]):
        lo = np.minimum(body.bounds()[0], cabin.bounds()[0])
        hi = np.maximum(body.bounds()[1], cabin.bounds()[1])
        np.testing.assert_allclose(hi - lo, CAR_SIZE)
        assert lo[2] == 0 and abs(lo[1] + hi[1]) / 2 < scene.ground.road_half_width
    for obj in scene.objects[:n_static]:
        lo, hi = obj.bounds()
        if isinstance(obj, Box) and lo[0] < scene.drive_x[1]:  # a building beside the road
            assert 6 <= min(abs(lo[1]), abs(hi[1])) <= 15 and lo[1] * hi[1] > 0
    for obj in scene.objects:
        lo, hi = obj.bounds()
        # Nothing stands in the free lanes where cameras drive.
        overlaps_lanes = lo[1] < lane_hi and hi[1] > lane_lo
        overlaps_drive = lo[0] < scene.drive_x[1] + 1 and hi[0] > scene.drive_x[0] - 1
        assert not (overlaps_lanes and overlaps_drive), obj
        assert lo[2] >= 0


def test_trajectory_drives_forward_at_camera_height():
    scene = random_street_scene(1)
    poses = street_trajectory(scene, 10)
    assert len(poses) == 10 and street_trajectory(scene, 0) == []
    xs = [p.position[0] for p in poses]
    assert xs == sorted(xs) and xs[0] == scene.drive_x[0] and xs[-1] == scene.drive_x[1]
    for pose in poses:
        assert pose.position[2] == 1.6 and pose.yaw == 0 and pose.pitch == 0
        assert scene.lane_y[0] < pose.position[1] < scene.lane_y[1]


def test_lane_markings_are_painted():
    down = CameraPose(position=np.array([1.5, 0.0, 5.0]), yaw=0.0, pitch=-math.pi / 2)
    rgb, depth = render(OPEN, down, KITTI_SMALL)
    np.testing.assert_allclose(depth, 5.0, rtol=1e-5)
    u = int(round(KITTI_SMALL.cx))  # the image's vertical centre line looks at y = 0
    dash = rgb[:, u - 1:u + 2].mean()  # x = 1.5 +- 0.6 m lies on a dash (x mod 9 < 3)
    asphalt = rgb[:, u + 40:u + 60].mean()
    assert dash > asphalt + 60


def test_random_poses_are_valid():
    rng = np.random.default_rng(0)
    street = random_scene("street", 2)
    indoor = random_scene("indoor", 2)
    x0, x1, y0, y1 = camera_region(indoor.room)
    for _ in range(50):
        pose = random_pose(street, rng)
        assert street.drive_x[0] <= pose.position[0] <= street.drive_x[1]
        assert street.lane_y[0] < pose.position[1] < street.lane_y[1]
        assert 1.5 <= pose.position[2] <= 1.75 and abs(pose.yaw) <= math.radians(15)
        pose = random_pose(indoor, rng)
        assert x0 <= pose.position[0] <= x1 and y0 <= pose.position[1] <= y1
        assert 1.0 <= pose.position[2] <= 1.8
        assert math.radians(-20) <= pose.pitch <= math.radians(10) and abs(pose.roll) < 0.1
    with pytest.raises(ValueError, match="kind"):
        random_scene("forest", 0)


def test_open_scene_validation():
    with pytest.raises(ValueError, match="exactly one"):
        Scene()
    with pytest.raises(ValueError, match="exactly one"):
        Scene(room=Room(size=(3.0, 3.0, 3.0)), ground=Ground())
    with pytest.raises(ValueError, match="above the ground"):
        render(OPEN, CameraPose(position=np.array([0.0, 0.0, -0.1]), yaw=0.0, pitch=0.0),
               KITTI_SMALL)
