"""Varied synthetic worlds: families, the held-out family, lights and shadows, photo textures,
sensor effects, and the synthetic-worlds data kind."""
import math
from dataclasses import replace

import numpy as np
import pytest

from clip_depth_ros.errors import MissingDependencyError
from clip_depth_ros.geometry import Intrinsics, depth_to_points
from clip_depth_ros.synthetic import Box, CameraPose, Room, Scene, render
from clip_depth_ros.synthetic import photos as photos_module
from clip_depth_ros.synthetic.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, photo_texture
from clip_depth_ros.synthetic.primitives import Lighting, Material
from clip_depth_ros.synthetic.sensor import SensorEffects, apply_sensor, random_sensor
from clip_depth_ros.synthetic.worlds import (HELDOUT_FAMILY, TRAIN_FAMILIES, WORLD_FAMILIES,
                                             random_world, random_world_pose, world_family,
                                             world_view)

SMALL = Intrinsics(fx=80.0, fy=80.0, cx=39.5, cy=29.5, width=80, height=60)


def _materials(world):
    scene = world.scene
    found = [obj.material for obj in scene.objects]
    if scene.room is not None:
        found += scene.room.face_materials()
    return found


@pytest.mark.parametrize("family", WORLD_FAMILIES)
def test_every_family_renders_deterministically_with_valid_depth(family):
    a = world_view(family, 3, 5, 80, 60)
    b = world_view(family, 3, 5, 80, 60)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    rgb, depth, intrinsics, pose = a
    assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8 and depth.shape == (60, 80)
    if family == "street":
        assert np.isfinite(depth).mean() > 0.3  # the road at least; the sky is +inf
    else:  # a closed room: every ray ends on a surface
        assert np.isfinite(depth).all()
    assert (depth[np.isfinite(depth)] > 0).all()
    assert 0.3 <= pose.position[2] <= 2.0
    focal_at_640 = intrinsics.fx * 640 / 80
    assert 250 - 1e-6 <= focal_at_640 <= 1000 + 1e-6
    other = world_view(family, 4, 5, 80, 60)
    assert not np.array_equal(other[0], rgb)


def test_the_held_out_family_is_never_drawn_for_training_and_uses_only_held_out_photos():
    assert HELDOUT_FAMILY not in TRAIN_FAMILIES
    drawn = {world_family(seed) for seed in range(300)}
    assert drawn == set(TRAIN_FAMILIES)  # every training family appears, the hall never
    held_photos = {m.photo for s in range(6) for m in _materials(random_world("hall", s))}
    assert held_photos and held_photos <= set(HELDOUT_PHOTOS)  # every hall surface a photo
    train_photos = {m.photo for f in TRAIN_FAMILIES if f != "street" for s in range(12)
                    for m in _materials(random_world(f, s))} - {""}
    assert train_photos and train_photos <= set(TRAIN_PHOTOS)


def test_cameras_stay_out_of_furniture_and_inside_the_room():
    for seed in range(10):
        world = random_world("room", seed)
        rng = np.random.default_rng(seed)
        for _ in range(10):
            pose = random_world_pose(world, rng)
            x, y, z = pose.position
            assert np.all(pose.position > 0) and np.all(pose.position < world.scene.room.size)
            for x0, x1, y0, y1 in world.keep_out:
                assert not (x0 - 0.3 < x < x1 + 0.3 and y0 - 0.3 < y < y1 + 0.3)
            assert math.radians(-36) <= pose.pitch <= math.radians(16)


def _shadow_scene(lighting):
    table = Box((1.5, 1.5, 1.0), (2.5, 2.5, 1.1), Material(color=(0.5, 0.5, 0.5), noise=0.0))
    room = Room(size=(4.0, 4.0, 3.0), floor=Material(color=(0.8, 0.8, 0.8), contrast=0.0))
    return Scene(room=room, objects=[table], lighting=lighting)


def test_a_round_column_is_lit_on_its_sunny_side_and_the_room_light_hangs_in_free_space():
    from clip_depth_ros.synthetic import Cylinder
    column = Cylinder((2.0, 2.0), 0.3, 0.0, 3.0, Material(color=(0.7, 0.7, 0.7), contrast=0.0))
    room = Room(size=(4.0, 4.0, 3.0))
    sun = Lighting(sun=(1.0, 0.0, 0.2), sun_strength=0.8, point=0.0, ambient=0.2)
    pose = CameraPose(np.array([0.5, 2.0, 1.5]), yaw=0.0, pitch=0.0)  # sees its sunlit-less side
    side = CameraPose(np.array([3.6, 2.0, 1.5]), yaw=math.pi, pitch=0.0)  # faces the sun side
    for view in (pose, side):
        shadowed, _ = render(Scene(room=room, objects=[column], lighting=sun), view, SMALL)
        free, _ = render(Scene(room=room, objects=[column],
                               lighting=replace(sun, shadows=False)), view, SMALL)
        centre = np.s_[25:35, 37:43]  # the column's middle
        # its own bounding box never shadows the column: shadows change nothing here
        assert np.array_equal(shadowed[centre], free[centre])
    for seed in range(40):  # the lamp is never inside the L's block or another object
        world = random_world("lshape", seed)
        light = world.scene.light_position()
        assert not any(np.all(light >= obj.bounds()[0]) and np.all(light <= obj.bounds()[1])
                       for obj in world.scene.objects)


def test_an_object_casts_a_shadow_from_the_sun_and_exposure_scales_the_image():
    pose = CameraPose(np.array([0.6, 2.0, 2.2]), yaw=0.0, pitch=-math.radians(55))
    sun = Lighting(sun=(0.0, 0.0, 1.0), sun_strength=0.8, point=0.0, ambient=0.2)
    lit, depth = render(_shadow_scene(replace(sun, shadows=False)), pose, SMALL)
    shaded, depth2 = render(_shadow_scene(sun), pose, SMALL)
    assert np.array_equal(depth, depth2)  # light changes colour, never geometry
    # floor pixels straight under the table are in its shadow
    world = depth_to_points(depth, SMALL).reshape(-1, 3) @ pose.rotation().T + pose.position
    world = world.reshape(60, 80, 3)
    under = (np.abs(world[..., 2]) < 1e-3) & (np.abs(world[..., 0] - 2.0) < 0.4) \
        & (np.abs(world[..., 1] - 2.0) < 0.4)
    open_floor = (np.abs(world[..., 2]) < 1e-3) & (world[..., 0] < 1.3)
    assert under.sum() > 5 and open_floor.sum() > 5
    assert shaded[under].mean() < 0.5 * lit[under].mean()  # only ambient reaches it
    assert shaded[open_floor].mean() == pytest.approx(lit[open_floor].mean(), abs=1)
    dark, _ = render(_shadow_scene(replace(sun, exposure=0.5)), pose, SMALL)
    assert dark[open_floor].mean() == pytest.approx(0.5 * shaded[open_floor].mean(), rel=0.05)


def test_photo_textures_come_from_scikit_image_and_fail_clearly_without_it(monkeypatch):
    texture = photo_texture("brick")
    assert texture.shape == (3, 256 * 256) and texture.dtype == np.float32
    assert 0 <= texture.min() and texture.max() <= 1 and abs(texture.mean() - 0.5) < 0.02
    assert not np.allclose(photo_texture("coffee")[0], photo_texture("coffee")[2])  # colour
    with pytest.raises(ValueError, match="unknown photo"):
        photo_texture("mona-lisa")
    photo_texture.cache_clear()
    monkeypatch.setattr(photos_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="scikit-image"):
        photo_texture("gravel")
    photo_texture.cache_clear()


def _checker_image():
    y, x = np.mgrid[:120, :160]
    tile = (((x // 8) + (y // 8)) % 2 * 200 + 30).astype(np.uint8)
    return np.repeat(tile[..., None], 3, axis=2)


def test_sensor_effects_each_change_the_image_as_a_camera_would():
    image = _checker_image()
    rng = np.random.default_rng(0)
    assert np.array_equal(apply_sensor(image, SensorEffects(), 100.0, rng), image)
    # a lens undone with its exact k1 gives the pinhole image back (up to resampling)
    exact = apply_sensor(image, SensorEffects(distortion_k1=-0.2), 100.0, rng)
    wrong = apply_sensor(image, SensorEffects(distortion_k1=-0.2, calibration_error=0.5),
                         100.0, rng)
    centre = np.s_[50:70, 70:90]
    assert np.abs(exact.astype(int) - image).mean() < 3
    assert np.abs(wrong.astype(int) - image).mean() > np.abs(exact.astype(int) - image).mean()
    # the residual warp grows from the centre towards the corners
    wrong_error = np.abs(wrong.astype(int) - image)
    assert wrong_error[centre].mean() < 0.5 * wrong_error[:20, :20].mean()
    vignetted = apply_sensor(image, SensorEffects(vignetting=0.4), 100.0, rng).astype(float)
    assert vignetted[:10, :10].mean() < 0.75 * image[:10, :10].mean()
    assert vignetted[centre].mean() == pytest.approx(image[centre].mean(), rel=0.02)
    blurred = apply_sensor(image, SensorEffects(blur_sigma=1.5), 100.0, rng)
    assert np.abs(np.diff(blurred.astype(int), axis=1)).mean() < \
        0.8 * np.abs(np.diff(image.astype(int), axis=1)).mean()
    noisy = apply_sensor(image, SensorEffects(noise_std=5.0), 100.0, rng).astype(int)
    assert 3 < np.std(noisy - image) < 7
    jpeg = apply_sensor(image, SensorEffects(jpeg_quality=30), 100.0, rng)
    assert not np.array_equal(jpeg, image) and np.abs(jpeg.astype(int) - image).mean() < 20
    effects = random_sensor(np.random.default_rng(3))
    a = apply_sensor(image, effects, 100.0, np.random.default_rng(1))
    b = apply_sensor(image, effects, 100.0, np.random.default_rng(1))
    assert np.array_equal(a, b)


def test_the_residual_lens_warp_stays_mild_even_for_wide_barrel_lenses():
    """Undistorting with a slightly wrong k1 moves pixels a little, never by tens of pixels
    (a strong barrel lens folds back beyond the image's corners: k1 is held off the fold)."""
    from clip_depth_ros.synthetic.sensor import _residual_warp
    h, w = 240, 320
    xs = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    ys = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
    coords = np.dstack([xs, ys, np.zeros_like(xs)])
    rng = np.random.default_rng(0)
    worst = []
    for _ in range(60):
        effects = random_sensor(rng)
        focal = float(np.exp(rng.uniform(np.log(125.0), np.log(500.0))))
        k1 = effects.distortion_k1
        out = _residual_warp(coords, k1, k1 * (1 + effects.calibration_error), focal)
        worst.append(float(np.hypot(out[..., 0] - xs, out[..., 1] - ys).max()))
        exact = _residual_warp(coords, k1, k1, focal)  # the right k1: the pinhole image
        assert np.abs(exact[..., :2] - coords[..., :2]).max() < 0.01
    assert max(worst) < 4.0 and np.median(worst) < 1.5, worst


def test_synthetic_worlds_dataset_and_its_configuration():
    from clip_depth_ros.errors import ConfigError
    from training.config import TrainConfig
    from training.data.worlds import SyntheticWorldDataset

    data = SyntheticWorldDataset(12, (48, 64), seed=2, families=("corridor", "hall"),
                                 max_depth=6.0)
    sample = data[5]
    assert sample["family"] in ("corridor", "hall") and sample["image"].shape == (48, 64, 3)
    assert 0.3 <= sample["camera_height_m"] <= 2.0
    assert np.array_equal(sample["valid_mask"], sample["depth"] > 0)
    assert sample["depth"].max() <= 6.0
    assert np.array_equal(data[5]["image"], sample["image"])
    assert {data.world_seed(i) for i in range(12)}.isdisjoint(
        {SyntheticWorldDataset(12, seed=2 + 7919).world_seed(i) for i in range(12)})
    with pytest.raises(ValueError, match="unknown world families"):
        SyntheticWorldDataset(4, families=("castle",))
    with pytest.raises(ConfigError, match="castle"):
        TrainConfig.from_dict({"data": {"kind": "synthetic-worlds", "families": ["castle"]}})
    with pytest.raises(ConfigError, match="synthetic-worlds"):
        TrainConfig.from_dict({"data": {"kind": "synthetic-indoor", "families": ["hall"]}})


def test_evaluate_anchors_worlds_views_with_each_views_camera_height():
    from clip_depth_ros.trust import TrustSettings
    from training.data.worlds import SyntheticWorldDataset
    from training.evaluate import anchor_prediction

    data = SyntheticWorldDataset(40, (120, 160), seed=5, families=("room",))
    held = 0
    for i in range(40):
        sample = data[i]
        truth = sample["depth"]
        valid = sample["valid_mask"]
        anchored, ok = anchor_prediction(np.where(valid, 2.5 * truth, 0).astype(np.float32),
                                         sample, TrustSettings(scale_anchor="ground_plane"),
                                         0.01, i)
        if ok:
            held += 1
            ratio = np.median(anchored[valid] / truth[valid])
            assert ratio == pytest.approx(1.0, abs=0.03), sample["name"]
    assert held >= 8  # the floor is in view and level enough in a good share of the views


def test_contact_sheet_command_writes_every_family_and_refuses_mistakes(tmp_path, capsys):
    import cv2

    from clip_depth_ros.synthetic.worlds import main
    out = tmp_path / "sheet.png"
    assert main(["--out", str(out), "--per-family", "2", "--size", "40", "30"]) == 0
    sheet = cv2.imread(str(out))
    assert sheet.shape == (len(WORLD_FAMILIES) * 60, 80, 3)
    for bad in (["--out", str(tmp_path / "x.gif")], ["--out", str(out), "--per-family", "0"],
                ["--out", str(out), "--families", "castle"]):
        with pytest.raises(SystemExit) as err:
            main(bad)
        assert err.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x.gif").exists()
