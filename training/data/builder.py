"""Datasets for a training run, built from its DataConfig, with index-seeded augmentation.

Augmentation draws from a Generator seeded by (seed, epoch, sample index) -- never from a
worker's or a process's RNG -- so a sample is augmented identically whichever process or
DataLoader worker loads it.  That is what lets one process and N DDP processes see the same
global batches and follow the same loss curve, and a resumed run repeat the same epoch.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from clip_depth_ros.config import ModelConfig
from clip_depth_ros.errors import ConfigError

from ..config import DATA_KINDS, DataConfig
from .transforms import (ColorJitter, Compose, RandomCrop, RandomHorizontalFlip, RandomRotate,
                         Resize, to_tensors, transform_with_twin)


class AugmentedDataset(Dataset):
    """A depth dataset + transforms + tensor conversion, seeded per (epoch, index)."""

    def __init__(self, base: Dataset, transform: Any, model_config: ModelConfig, seed: int):
        self.base = base
        self.transform = transform
        self.mean, self.std = list(model_config.mean), list(model_config.std)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call before each epoch, like the sampler's)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.base[index]
        if self.transform is not None:
            sample = transform_with_twin(self.transform, sample,
                                         (self.seed, self.epoch, int(index)))
        twin = sample.pop("twin", None)  # a zoomed twin of the same view, same augmentation
        out = to_tensors(sample, self.mean, self.std)
        out["index"] = torch.tensor(int(index))
        if twin is not None:
            out.update({f"twin_{k}": v for k, v in to_tensors(twin, self.mean, self.std).items()
                        if k != "name"})
        return out


class AspectCrop:
    """Random crop to the model's aspect ratio, keeping 80-100% of the limiting side."""

    def __init__(self, height: int, width: int):
        self.aspect = width / height

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        h, w = sample["depth"].shape
        scale = rng.uniform(0.8, 1.0)
        ch = int(min(h, w / self.aspect) * scale)
        cw = int(min(w, math.floor(ch * self.aspect)))
        return RandomCrop(ch, cw)(sample, rng)


def train_transform(data: DataConfig, model_config: ModelConfig) -> Compose:
    """Crop to aspect, resize to the model input, flip, rotate, colour jitter."""
    height, width = model_config.input_hw
    steps: list[Any] = []
    if data.random_crop:
        steps.append(AspectCrop(height, width))
    steps.append(Resize(height, width))
    if data.flip:
        steps.append(RandomHorizontalFlip(0.5))
    if data.rotate_deg > 0:
        steps.append(RandomRotate(data.rotate_deg))
    if data.color_jitter > 0:
        j = data.color_jitter
        steps.append(ColorJitter(brightness=j, contrast=j, saturation=j))
    return Compose(steps)


def eval_transform(model_config: ModelConfig) -> Compose:
    """Resize to the model input only (evaluate.py compares at ground-truth resolution)."""
    height, width = model_config.input_hw
    return Compose([Resize(height, width)])


def base_dataset(data: DataConfig, split: str) -> Dataset:
    """The raw (un-augmented) dataset of one split."""
    train = split == "train"
    if data.kind == "synthetic-worlds":
        from .worlds import SyntheticWorldDataset, focal_at_640
        if data.texture_scale_m is not None or data.zoom_pairs:
            raise ConfigError("data.texture_scale_m and data.zoom_pairs are for "
                              "synthetic-indoor; worlds draw their own materials")
        size = tuple(data.render_size)
        return SyntheticWorldDataset(
            data.train_samples if train else data.val_samples, size,
            seed=data.seed if train else data.seed + 7919,
            families=tuple(data.families) if data.families else None,
            focal_at_640=focal_at_640(data.focal_range, size[1]))
    if data.kind.startswith("synthetic-"):
        from .synthetic import SyntheticDepthDataset
        n = data.train_samples if train else data.val_samples
        # validation scenes never overlap training scenes: a different seed stream
        seed = data.seed if train else data.seed + 7919
        focal = tuple(data.focal_range) if data.focal_range else None
        # zoomed twins for zoom-consistency training (training split only)
        zoom = tuple(data.zoom_pairs) if data.zoom_pairs and train else None
        return SyntheticDepthDataset(kind=data.kind.split("-", 1)[1], n_samples=n,
                                     size=tuple(data.render_size), seed=seed, focal_range=focal,
                                     texture_scale_m=data.texture_scale_m, zoom_range=zoom)
    if data.zoom_pairs:
        raise ConfigError("data.zoom_pairs needs a synthetic data kind: the zoomed twin is "
                          f"re-rendered, which '{data.kind}' data cannot be")
    from .datasets import (FolderPairsDataset, KITTIEigenDataset, NYUFolderDataset,
                           NYULabeledMatDataset)
    list_file = data.train_list if train else data.val_list
    if data.kind == "nyu":
        return NYUFolderDataset(data.root, list_file)
    if data.kind == "nyu-mat":
        return NYULabeledMatDataset(data.mat_path, split=split if split != "val" else "test",
                                    splits_mat=data.splits_mat or None)
    if data.kind == "kitti":
        return KITTIEigenDataset(data.root, list_file, depth_root=data.depth_root or None)
    if data.kind == "folder":
        return FolderPairsDataset(data.root)
    raise ConfigError(f"unknown data kind '{data.kind}'; kinds: {', '.join(DATA_KINDS)}")


def build_datasets(data: DataConfig, model_config: ModelConfig) -> tuple[Dataset, Dataset]:
    """(train, val) datasets yielding tensors at the model's input size."""
    train = AugmentedDataset(base_dataset(data, "train"), train_transform(data, model_config),
                             model_config, data.seed)
    val = AugmentedDataset(base_dataset(data, "val"), eval_transform(model_config),
                           model_config, data.seed)
    return train, val
