"""Depth datasets (NYU v2, KITTI Eigen, plain folders) and intrinsics-consistent transforms."""
from .base import DepthDataset, SampleReadError, make_sample, read_depth_png, read_rgb
from .datasets import (NYU_INTRINSICS, FolderPairsDataset, KITTIEigenDataset, NYUFolderDataset,
                       NYULabeledMatDataset, read_kitti_calib)
from .transforms import (ColorJitter, Compose, RandomCrop, RandomHorizontalFlip, RandomRotate,
                         Resize, ToTensors, crop_sample, rotate_sample, to_tensors)

__all__ = [
    "DepthDataset", "SampleReadError", "make_sample", "read_depth_png", "read_rgb",
    "NYU_INTRINSICS", "FolderPairsDataset", "KITTIEigenDataset", "NYUFolderDataset",
    "NYULabeledMatDataset", "read_kitti_calib",
    "ColorJitter", "Compose", "RandomCrop", "RandomHorizontalFlip", "RandomRotate", "Resize",
    "ToTensors", "crop_sample", "rotate_sample", "to_tensors",
]
