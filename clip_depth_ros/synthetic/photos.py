"""Real photographs as surface textures: scikit-image's bundled sample images.

The images are read from the ``skimage/data`` folder of an installed scikit-image wheel (the
package itself is never imported).  Licences, from each image's docstring in
``skimage/data/_fetchers.py`` (scikit-image 0.26):

- ``brick`` (CC0Textures "Bricks25"), ``gravel`` (CC0Textures "Gravel04"), ``grass``
  (DeviantArt "Grass-01" by linolafett): Creative Commons CC0;
- ``camera`` (Lav Varshney), ``chelsea`` (Stefan van der Walt), ``coffee`` (Rachel
  Michetti): CC0 by the photographer;
- ``astronaut`` (NASA): public domain; ``rocket`` (SpaceX): released into the public domain.

``TRAIN_PHOTOS`` texture the training worlds; ``HELDOUT_PHOTOS`` are used only by the held-out
world family (``worlds.HELDOUT_FAMILY``), so that family's surfaces are pictures the model has
never seen.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import cv2
import numpy as np

from clip_depth_ros.errors import MissingDependencyError

TRAIN_PHOTOS = ("brick", "gravel", "grass", "camera", "astronaut")
HELDOUT_PHOTOS = ("coffee", "chelsea", "rocket")
PHOTOS = TRAIN_PHOTOS + HELDOUT_PHOTOS
_SIDE = 256  # textures are resampled to 256 x 256 (tiles; periodic sampling wraps)


def photo_folder() -> str:
    """The folder of scikit-image's bundled sample images, or MissingDependencyError."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "photo textures need scikit-image's bundled sample images: "
            "pip install scikit-image==0.26.0")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


@functools.lru_cache(maxsize=len(PHOTOS))
def photo_texture(name: str) -> np.ndarray:
    """(3, 256 * 256) float32 texture of a bundled photograph, values in [0, 1] with mean 0.5
    (so a material's colour and contrast act on it as on the procedural patterns)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; photos: {', '.join(PHOTOS)}")
    path = os.path.join(photo_folder(), f"{name}.{'jpg' if name == 'rocket' else 'png'}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)  # greyscale files come back as 3 equal channels
    if image is None:
        raise MissingDependencyError(f"could not read {path}: reinstall scikit-image==0.26.0")
    side = min(image.shape[:2])
    image = image[:side, :side]  # square, then a tile: the pattern repeats every period
    rgb = cv2.resize(image, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA)[..., ::-1]
    rgb = rgb.astype(np.float32) / 255.0
    rgb = 0.5 + (rgb - rgb.mean()) * (0.5 / max(float(np.abs(rgb - rgb.mean()).max()), 1e-6))
    return np.ascontiguousarray(rgb.reshape(-1, 3).T)


def photo_pattern(name: str, u: np.ndarray, w: np.ndarray, seed: int) -> np.ndarray:
    """(3, n) texture values of a photograph at pattern coordinates (u, w) (one period = one
    image side), nearest texel, repeating; ``seed`` shifts where the tiling starts."""
    texture = photo_texture(name)
    offset = (seed * 7919) % _SIDE
    i = (np.floor(u * _SIDE).astype(np.int64) + offset) % _SIDE
    j = (np.floor(-w * _SIDE).astype(np.int64) + offset // 2) % _SIDE  # image rows run down
    return np.take(texture, j * _SIDE + i, axis=1)
