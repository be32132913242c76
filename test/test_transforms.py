"""Sample transforms: crops, flips, resizes and rotations keep image, depth, mask and intrinsics
consistent; colour jitter touches the image only."""

import numpy as np
import pytest
import torch

from clip_depth_ros.geometry import Intrinsics
from training.data import (
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRotate,
    Resize,
    crop_sample,
    rotate_sample,
    to_tensors,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# -------------------------------------------------------------------------------- transforms
def _sample(h: int = 12, w: int = 16) -> dict:
    rng = np.random.default_rng(7)
    depth = (np.arange(h * w, dtype=np.float32).reshape(h, w) + 1) / 10  # unique per pixel
    depth[3, 4] = 0
    return {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "depth": depth,
            "valid_mask": depth > 0,
            "intrinsics": Intrinsics(fx=20.0, fy=21.0, cx=7.0, cy=5.5, width=w, height=h),
            "name": "s"}


def test_crop_shifts_principal_point_and_matches_array_crop():
    s = _sample()
    out = crop_sample(s, top=2, left=3, height=8, width=10)
    np.testing.assert_array_equal(out["depth"], s["depth"][2:10, 3:13])
    np.testing.assert_array_equal(out["image"], s["image"][2:10, 3:13])
    np.testing.assert_array_equal(out["valid_mask"], s["valid_mask"][2:10, 3:13])
    k = out["intrinsics"]
    assert (k.fx, k.cx, k.cy, k.width, k.height) == (20.0, 4.0, 3.5, 10, 8)
    random = RandomCrop(8, 10)(s, np.random.default_rng(3))
    top, left = np.argwhere(s["depth"] == random["depth"][0, 0])[0]
    np.testing.assert_array_equal(random["image"], s["image"][top:top + 8, left:left + 10])
    assert random["intrinsics"].cx == 7.0 - left and random["intrinsics"].cy == 5.5 - top
    with pytest.raises(ValueError):
        RandomCrop(20, 10)(s, np.random.default_rng(0))


def test_flip_mirrors_everything_consistently():
    s = _sample()
    out = RandomHorizontalFlip(p=1.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(out["depth"], s["depth"][:, ::-1])
    np.testing.assert_array_equal(out["image"], s["image"][:, ::-1])
    np.testing.assert_array_equal(out["valid_mask"], s["valid_mask"][:, ::-1])
    k, k2 = s["intrinsics"], out["intrinsics"]
    assert k2.cx == 16 - 1 - 7.0 and k2.cy == k.cy
    # the 3-D point at pixel u comes back mirrored: x' = -x
    u, v = 2, 3
    x = (u - k.cx) / k.fx * s["depth"][v, u]
    x2 = (15 - u - k2.cx) / k2.fx * out["depth"][v, 15 - u]
    assert x2 == pytest.approx(-x)
    assert RandomHorizontalFlip(p=0.0)(s, np.random.default_rng(0)) is s


def test_resize_scales_focal_and_keeps_depth_values():
    s = _sample()
    out = Resize(6, 8)(s, np.random.default_rng(0))
    assert out["depth"].shape == (6, 8) and out["image"].shape == (6, 8, 3)
    assert (out["intrinsics"].fx, out["intrinsics"].fy) == pytest.approx((10.0, 10.5))
    assert out["intrinsics"] == s["intrinsics"].scaled_to(8, 6)
    # nearest: every output depth is one of the inputs (no blending across holes)
    assert np.isin(out["depth"], s["depth"]).all()
    np.testing.assert_array_equal(out["depth"], s["depth"][1::2, 1::2])
    np.testing.assert_array_equal(out["valid_mask"], out["depth"] > 0)


def test_rotation_fills_invalid_with_zero():
    s = _sample(40, 40)
    s["intrinsics"] = Intrinsics(30.0, 30.0, 19.5, 19.5, 40, 40)
    out = rotate_sample(s, 20.0)
    assert out["depth"][0, 0] == 0 and not out["valid_mask"][0, 0]  # rotated-in corner
    assert np.all(out["depth"][~out["valid_mask"]] == 0)
    assert np.all(out["depth"][out["valid_mask"]] > 0)
    assert np.isin(out["depth"], np.append(s["depth"], 0)).all()  # nearest, no blending
    assert out["intrinsics"] == s["intrinsics"]
    same = rotate_sample(s, 0.0)
    np.testing.assert_array_equal(same["depth"], s["depth"])
    r = RandomRotate(2.5)(s, np.random.default_rng(1))
    assert r["depth"].shape == (40, 40)


def test_color_jitter_touches_image_only_and_compose_with_to_tensors():
    s = _sample()
    pipeline = Compose([RandomHorizontalFlip(1.0), ColorJitter(0.4, 0.4, 0.4)])
    out = pipeline(s, np.random.default_rng(0))
    np.testing.assert_array_equal(out["depth"], s["depth"][:, ::-1])
    assert out["image"].dtype == np.uint8 and not np.array_equal(out["image"], s["image"][:, ::-1])
    t = to_tensors(out, CLIP_MEAN, CLIP_STD)
    assert t["image"].shape == (3, 12, 16) and t["image"].dtype == torch.float32
    expected = (out["image"][0, 0, 1] / 255.0 - CLIP_MEAN[1]) / CLIP_STD[1]
    assert t["image"][1, 0, 0].item() == pytest.approx(expected, abs=1e-6)
    assert t["depth"].shape == (1, 12, 16) and t["valid_mask"].dtype == torch.bool
    assert t["focal_px"].item() == 20.0 and t["focal_px"].dtype == torch.float32
    batch = torch.utils.data.default_collate([t, t])
    assert batch["image"].shape == (2, 3, 12, 16) and batch["focal_px"].shape == (2,)
