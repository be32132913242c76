"""CLIPSelf (Wu et al., ICLR 2024): refine a CLIP image tower's dense features without labels.

    python -m training.clipself --model ViT-B-16-depthclip --backbone-weights openai \
        --images robot_bag/ --image-topic /camera/color/image_raw --out refined.safetensors
    python -m training.train --set backbone_weights=refined.safetensors ...

A trainable student copy of the open_clip image tower reads its dense map exactly as DepthCLIP
does (last-block patch tokens through ln_post and proj).  ROIAlign pools that map over the
cells of a random m x n grid, and each pooled vector is pulled towards a frozen teacher's image
embedding of the same cell, cropped and resized to the tower's input size (loss 1 - cos).
The result is saved as a full open_clip state dict (refined visual weights, untouched text
tower), so every depth method can start from it as ``backbone_weights``.

Images come from a folder (png/jpg) or one image topic of a bag (rosbag2 or ROS 1), read and
decoded by the runtime's own bag reader (``clip_depth_ros.bag_reader``, no ROS install needed).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clip_depth_ros.preprocessing import check_image, resize_to_input
from clip_depth_ros.bag_reader import bag_topic_count, iter_bag_images
from clip_depth_ros.config import ModelConfig, get_model_config
from clip_depth_ros.model.backbone import ImageEncoder
from clip_depth_ros.model.conv_backbone import build_image_encoder
from clip_depth_ros.weights import WeightsError, atomic_write

from .cli_errors import command_main

log = logging.getLogger("training")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
BAG_SUFFIXES = (".db3", ".mcap", ".bag")


# ---------------------------------------------------------------------------- image sources
def folder_images(folder: Union[str, Path], max_images: int = 0) -> Iterator[np.ndarray]:
    """RGB uint8 images of a folder's png/jpg files (sorted; evenly thinned to max_images)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_EXTENSIONS)} images in {folder}")
    for i in spread_indices(len(files), max_images):
        bgr = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
        if bgr is None:
            log.warning("skipping unreadable image %s", files[i])
            continue
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def spread_indices(n: int, limit: int) -> list[int]:
    """Indices of at most ``limit`` items spread evenly over n (all of them when limit <= 0)."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, limit)})


def bag_images(bag: Union[str, Path], topic: str, max_images: int = 0) -> Iterator[np.ndarray]:
    """RGB uint8 images of one image topic of a bag (evenly thinned to max_images), decoded
    as the node decodes them."""
    keep = set(spread_indices(bag_topic_count(bag, topic), max_images))
    for _, rgb, _ in iter_bag_images(bag, topic, keep):
        yield rgb


def load_images(source: Union[str, Path], config: ModelConfig, image_topic: Optional[str] = None,
                max_images: int = 0) -> torch.Tensor:
    """uint8 (N, H, W, 3) images resized to the model input, from a folder or a bag's topic."""
    path = Path(source)
    is_bag = path.suffix in BAG_SUFFIXES or (path / "metadata.yaml").is_file()
    if path.is_file() and not is_bag:
        raise ValueError(f"{path}: expected a folder of images or a bag "
                         f"({', '.join(BAG_SUFFIXES)} or a rosbag2 folder)")
    if is_bag and not image_topic:
        raise ValueError(f"{path} is a bag: pass the image topic (--image-topic)")
    images = bag_images(path, image_topic, max_images) if is_bag else folder_images(
        path, max_images)
    resized = []
    for rgb in images:
        check_image(rgb)
        resized.append(resize_to_input(rgb, config))
    if not resized:
        raise ValueError(f"no readable images in {path}")
    return torch.from_numpy(np.stack(resized))


def normalise(images_u8: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the model's normalised float input (N, 3, H, W), with the
    model's own preprocessing (``ModelConfig.uint8_normalization``)."""
    scale, offset = (torch.from_numpy(v).view(1, 3, 1, 1) for v in config.uint8_normalization())
    # contiguous NCHW: the permuted (channels-last) layout crashes some CPU conv backward passes
    return (images_u8.permute(0, 3, 1, 2).float() * scale + offset).contiguous()


# ---------------------------------------------------------------------------- the objective
def grid_boxes(rows: int, cols: int, height: float, width: float) -> torch.Tensor:
    """(rows * cols, 4) boxes x0, y0, x1, y1 tiling a height x width map."""
    ys = torch.linspace(0, height, rows + 1)
    xs = torch.linspace(0, width, cols + 1)
    y0, x0 = torch.meshgrid(ys[:-1], xs[:-1], indexing="ij")
    y1, x1 = torch.meshgrid(ys[1:], xs[1:], indexing="ij")
    return torch.stack([x0, y0, x1, y1], dim=-1).reshape(-1, 4)


def batch_grid_boxes(grids: Sequence[tuple[int, int]], height: int, width: int) -> torch.Tensor:
    """(K, 5) ROIAlign boxes (image index, x0, y0, x1, y1): one grid per image, in feature-map
    coordinates (one unit = one patch)."""
    boxes = []
    for index, (rows, cols) in enumerate(grids):
        cells = grid_boxes(rows, cols, height, width)
        boxes.append(torch.cat([torch.full((len(cells), 1), float(index)), cells], dim=1))
    return torch.cat(boxes)


def image_tower(model: nn.Module) -> nn.Module:
    """The open_clip vision tower inside a DepthModel, ImageEncoder or CLIP model."""
    for attr in ("image_encoder", "visual"):
        if hasattr(model, attr) and isinstance(getattr(model, attr), nn.Module):
            return image_tower(getattr(model, attr))
    return model


def dense_features(encoder: ImageEncoder, images: torch.Tensor) -> torch.Tensor:
    """The dense map DepthCLIP reads: last-block tokens, ln_post, proj -> (B, D, h, w)."""
    return encoder.project(encoder.feature_maps(images, normalize=True)[-1])


def pooled_box_features(encoder: ImageEncoder, images: torch.Tensor,
                        boxes: torch.Tensor) -> torch.Tensor:
    """(K, D) dense features averaged over each box by ROIAlign (boxes in patch units)."""
    from torchvision.ops import roi_align
    dense = dense_features(encoder, images)
    pooled = roi_align(dense, boxes.to(dense), output_size=(1, 1), spatial_scale=1.0,
                       sampling_ratio=-1, aligned=True)
    return pooled[:, :, 0, 0]


def crop_embeddings(visual: nn.Module, images: torch.Tensor, boxes: torch.Tensor,
                    patch_size: int, chunk: int = 64) -> torch.Tensor:
    """(K, D) image embeddings of each box's crop, bilinearly resized to the input size."""
    from torchvision.ops import roi_align
    # one bilinear sample per output pixel: a crop-and-resize (boxes never exceed the image)
    crops = roi_align(images, boxes.to(images), output_size=tuple(images.shape[-2:]),
                      spatial_scale=float(patch_size), sampling_ratio=1, aligned=True)
    return torch.cat([visual(part) for part in crops.split(chunk)])


def clipself_loss(student: ImageEncoder, teacher: nn.Module, images: torch.Tensor,
                  boxes: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos(pooled student patch features, frozen teacher crop embeddings))."""
    with torch.no_grad():
        target = F.normalize(crop_embeddings(teacher, images, boxes, student.patch_size), dim=-1)
    pooled = F.normalize(pooled_box_features(student, images, boxes), dim=-1)
    return (1.0 - (pooled * target).sum(dim=-1)).mean()


@torch.no_grad()
def patch_crop_cosine(model_or_encoder: nn.Module, images: Union[torch.Tensor, np.ndarray],
                      grid: Union[int, tuple[int, int]] = 3, teacher: Optional[nn.Module] = None,
                      config: Optional[ModelConfig] = None, batch: int = 8) -> float:
    """Mean cosine between ROIAlign-pooled patch features and crop embeddings on a fixed grid.

    model_or_encoder: a DepthModel, ImageEncoder, open_clip model or vision tower; its last
    block is read as DepthCLIP reads it.  images: a normalised float batch (N, 3, H, W) at the
    tower's input size, or uint8 (N, H, W, 3) at that size with ``config`` for the
    normalisation.  teacher: the tower embedding the crops (the frozen CLIPSelf teacher);
    None uses the model's own tower (self-consistency).
    """
    visual = image_tower(model_or_encoder)
    crop_tower = visual if teacher is None else image_tower(teacher)
    if isinstance(images, np.ndarray) or images.dtype == torch.uint8:
        config = config or getattr(model_or_encoder, "config", None)
        if config is None:
            raise ValueError("uint8 images need the model config for their normalisation")
        images = normalise(torch.as_tensor(images), config)
    rows, cols = (grid, grid) if isinstance(grid, int) else grid
    encoder = build_image_encoder(visual, [-1])
    modes = [(m, m.training) for m in (visual, crop_tower)]
    for module, _ in modes:
        module.eval()
    device = next(visual.parameters()).device
    total, count = 0.0, 0
    try:
        for part in images.split(batch):
            part = part.to(device)
            h, w = part.shape[-2] // encoder.patch_size, part.shape[-1] // encoder.patch_size
            boxes = batch_grid_boxes([(rows, cols)] * len(part), h, w).to(device)
            pooled = F.normalize(pooled_box_features(encoder, part, boxes), dim=-1)
            target = F.normalize(crop_embeddings(crop_tower, part, boxes, encoder.patch_size),
                                 dim=-1)
            total += float((pooled * target).sum())
            count += len(boxes)
    finally:
        for module, mode in modes:
            module.train(mode)
    return total / max(count, 1)


# ---------------------------------------------------------------------------- training
def build_clip(config: ModelConfig, backbone_weights: Optional[str]) -> nn.Module:
    """The full open_clip model the depth models would get (tag, weights file or random)."""
    from clip_depth_ros.model.factory import _build_clip, backbone_source  # the one loader
    return _build_clip(config, backbone_source(config, {}, backbone_weights))


def frozen_teacher(visual: nn.Module) -> nn.Module:
    """A frozen copy of a vision tower, in eval mode."""
    teacher = copy.deepcopy(visual).eval()
    teacher.requires_grad_(False)
    return teacher


def train_clipself(clip: nn.Module, teacher: nn.Module, images_u8: torch.Tensor,
                   config: ModelConfig, steps: int = 1000, batch: int = 8, lr: float = 1e-5,
                   weight_decay: float = 0.1, grid: tuple[int, int] = (2, 4), seed: int = 0,
                   flip: bool = True, progress: bool = True) -> list[float]:
    """Refine ``clip.visual`` in place with the CLIPSelf loss; returns the loss of every step.

    Each step draws ``batch`` images (and a horizontal flip), one m x n grid per image with
    m, n uniform in [grid[0], grid[1]], and takes one AdamW step on the student tower.
    """
    if not 1 <= grid[0] <= grid[1]:
        raise ValueError(f"grid range must be 1 <= min <= max, got {grid}")
    gen = torch.Generator().manual_seed(seed)
    student = build_image_encoder(clip.visual, [-1])
    clip.requires_grad_(False)
    clip.visual.requires_grad_(True)
    student.train()  # through the encoder: a conv tower keeps its BatchNorm statistics frozen
    params = [p for p in clip.visual.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    device = next(clip.visual.parameters()).device
    h, w = (s // student.patch_size for s in config.input_hw)
    from tqdm import tqdm
    losses = []
    bar = tqdm(range(steps), desc="clipself", unit="step", disable=not progress,
               dynamic_ncols=True)
    for _ in bar:
        index = torch.randint(len(images_u8), (batch,), generator=gen)
        x = normalise(images_u8[index], config)
        if flip:
            flipped = torch.rand(batch, generator=gen) < 0.5
            x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(-1), x)
        sizes = torch.randint(grid[0], grid[1] + 1, (batch, 2), generator=gen).tolist()
        boxes = batch_grid_boxes([tuple(s) for s in sizes], h, w)
        loss = clipself_loss(student, teacher, x.to(device), boxes.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    clip.visual.eval()
    return losses


def save_backbone(clip: nn.Module, path: Union[str, Path],
                  metadata: Optional[dict[str, Any]] = None) -> Path:
    """Write the full open_clip state dict as safetensors (atomically), loadable as
    ``create_model(..., backbone_weights=path)``."""
    from safetensors.torch import save_file
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: CLIPSelf writes .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in clip.state_dict().items()}
    # not the "clip_depth_ros" key: this is a backbone file, not trained parts with a config
    header = {"clipself": json.dumps(metadata or {})}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=header))
    return path


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model name or config JSON (backbone, input)")
    ap.add_argument("--backbone-weights", default=None,
                    help="open_clip tag, CLIP weights file or 'random' (default: the config's)")
    ap.add_argument("--images", required=True, help="folder of png/jpg, or a rosbag2")
    ap.add_argument("--image-topic", default=None, help="image topic when --images is a bag")
    ap.add_argument("--out", required=True, help="refined backbone .safetensors")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grid", type=int, nargs=2, default=[2, 4], metavar=("MIN", "MAX"),
                    help="rows and columns of the random box grid, each in [MIN, MAX]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-images", type=int, default=2000, help="0 = all")
    ap.add_argument("--eval-images", type=int, default=8,
                    help="images held out (from the end) to measure the cosine before/after")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    return ap.parse_args(argv)


@command_main("python -m training.clipself")
def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    config = get_model_config(args.model)
    images = load_images(args.images, config, args.image_topic, args.max_images)
    n_eval = min(args.eval_images, len(images) // 5)
    train_images, held_out = images[:len(images) - n_eval], images[len(images) - n_eval:]
    torch.manual_seed(args.seed)  # a random backbone is reproducible too
    clip = build_clip(config, args.backbone_weights).to(device)
    teacher = frozen_teacher(clip.visual)
    eval_grid = args.grid[1]
    before = patch_crop_cosine(clip, held_out, eval_grid, teacher, config) if n_eval else math.nan
    losses = train_clipself(clip, teacher, train_images, config, args.steps, args.batch, args.lr,
                            args.weight_decay, tuple(args.grid), args.seed)
    after = patch_crop_cosine(clip, held_out, eval_grid, teacher, config) if n_eval else math.nan
    summary = {"model": config.name, "backbone": config.backbone.name,
               "backbone_weights": args.backbone_weights, "images": str(args.images),
               "image_topic": args.image_topic, "train_images": len(train_images),
               "held_out_images": n_eval, "steps": args.steps, "batch": args.batch,
               "lr": args.lr, "grid": args.grid, "seed": args.seed,
               "held_out_cosine_before": before, "held_out_cosine_after": after,
               "final_loss": losses[-1] if losses else None,
               "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])}
    save_backbone(clip.cpu(), args.out, summary)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}: use it as backbone_weights (e.g. --set backbone_weights={args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
