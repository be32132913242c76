"""Train the trained parts of a depth model: one process, or many through torchrun (DDP).

    python -m training.train --config training/configs/demo_tiny_mirror.yaml [--set k=v ...]
    torchrun --nproc_per_node 4 -m training.train --config ... --set batch_size=64

Rank 0 logs (tqdm, TensorBoard, loss_curve.json) and writes checkpoints; every rank resumes
from the latest complete checkpoint in out_dir/checkpoints automatically.  Each checkpoint
records its own evaluation (when it was evaluated) and the best result so far, so
best.safetensors / best.json stay the best of the whole run across any number of resumes.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from clip_depth_ros.config import resolve_weights
from clip_depth_ros.errors import ConfigError
from clip_depth_ros.model import create_model, load_weights
from clip_depth_ros.model.factory import NEW_PART_KEYS, RETRAINED_PART_KEYS

from .checkpoint import (VAL_SPLIT, best_record, export_best, exported_best_step,
                         latest_checkpoint, load_train_state, save_checkpoint)
from .cli_errors import OneLineParser, command_main
from .config import HIGHER_IS_BETTER, TrainConfig, config_keys_help, load_train_config
from .data.builder import build_datasets
from .objectives import DepthObjective, WithAux, trainable_groups
from .validate import validate

log = logging.getLogger("training")


def training_command() -> str:
    """The command line that reproduces this run (argv[0] is a file path under `-m`)."""
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    launcher = "torchrun -m" if "LOCAL_RANK" in os.environ else "python -m"
    return f"{launcher} training.train {args}".strip()


class SkipSampler(Sampler):
    """Yields a sampler's indices after skipping the first ``skip`` (mid-epoch resume)."""

    def __init__(self, sampler: DistributedSampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        for i, index in enumerate(self.sampler):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    return rank, world, device


def lr_lambda(cfg: TrainConfig, total_steps: int):
    """Linear warm-up, then cosine decay to 5% over the run."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


class Trainer:
    """Holds the model, optimizer, data and progress of one run."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.rank, self.world, self.device = setup_distributed(cfg)
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        torch.manual_seed(cfg.seed)  # identical random init (and frozen towers) on every rank
        # the run's own model config decides (e.g. fine-tuning into a camera-aware variant);
        # init_weights only provide starting values, checked key by key
        self.model = create_model(cfg.model, backbone_weights=cfg.backbone_weights,
                                  for_training=True)
        if cfg.init_weights:
            # parts the starting weights predate (a new focal conditioning) keep their
            # identity initialisation; an uncertainty head is left out (retrained after)
            load_weights(self.model, resolve_weights(cfg.init_weights),
                         may_lack=NEW_PART_KEYS, may_drop=RETRAINED_PART_KEYS)
        self.model.to(self.device)
        self.groups, self.parts = trainable_groups(self.model, cfg.train_backbone)
        self.objective = DepthObjective(self.model, cfg.loss, cfg.gradient_matching,
                                        cfg.silog_lambda)
        if cfg.zoom_consistency > 0 and not self.model.config.camera_aware_scale:
            raise ConfigError(f"zoom_consistency compares metric depth through two lenses: "
                              f"model '{cfg.model}' is not camera-aware (camera_aware_scale off)")
        self.train_set, self.val_set = build_datasets(cfg.data, self.model.config)
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.world, rank=self.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=True)
        self.local_batch = cfg.batch_size // self.world
        self.steps_per_epoch = len(self.sampler) // self.local_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"{len(self.train_set)} training samples make no batch of "
                              f"{cfg.batch_size}")
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        # stop_at ends the run early on the schedule of total_steps (a stage cut short)
        self.stop_step = min(cfg.stop_at, self.total_steps) if cfg.stop_at else self.total_steps
        self.optimizer = torch.optim.AdamW(
            [{"params": self.groups["backbone"], "lr": cfg.lr, "name": "backbone"},
             {"params": self.groups["head"], "lr": cfg.head_lr, "name": "head"}],
            weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_lambda(cfg, self.total_steps))
        self.net = WithAux(self.model)
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # best: the best evaluation so far (metric, step, value + all metrics); saved in every
        # checkpoint, so it survives resumes
        self.progress: dict[str, Any] = {"epoch": 0, "step": 0, "step_in_epoch": 0,
                                         "history": [], "best": None, "evals": []}
        self.writer = None

    # ------------------------------------------------------------------ state
    def resume(self) -> bool:
        """Continue from the latest complete checkpoint, if any."""
        folder = latest_checkpoint(self.ckpt_dir)
        if folder is None:
            return False
        load_weights(self.model, folder / "model.safetensors")
        state, progress = load_train_state(folder)
        self.progress = {"best": None, "evals": [], **progress}
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.rank == 0:
            best = self.progress["best"]
            log.info("resumed from %s (epoch %d, step %d; best so far: %s)", folder,
                     self.progress["epoch"], self.progress["step"],
                     f"{best['metric']} {best['value']:.4f} at step {best['step']}"
                     if best else "none yet")
            if self.progress["best"] is None:
                self._adopt_exported_best()
            else:
                self._restore_best_export(folder)
        return True

    def _adopt_exported_best(self) -> None:
        """A checkpoint from before checkpoints recorded the best: take best.json's, so a
        worse evaluation cannot replace it."""
        try:
            meta = json.loads((self.out / "best.json").read_text()).get("metadata", {})
        except (OSError, ValueError):
            return
        key, metrics = self.cfg.best_metric, meta.get("metrics") or {}
        step = next((e["step"] for e in reversed(self.progress["evals"])
                     if key in metrics and e.get(key) == metrics[key]), None)
        if step is not None:
            self.progress["best"] = best_record(key, step, metrics)

    def _restore_best_export(self, folder: Path) -> None:
        """A run killed between a checkpoint and its best export: export it now."""
        best = self.progress["best"]
        if best is None or exported_best_step(self.out) == best["step"]:
            return
        if best["step"] != self.progress["step"]:
            log.warning("best.safetensors does not hold the recorded best (step %d), and that "
                        "checkpoint is gone", best["step"])
            return
        export_best(folder, self.out)

    def checkpoint(self) -> Optional[Path]:
        """Rank 0 writes a checkpoint; all ranks wait for it."""
        folder = None
        if self.rank == 0:
            state = {"optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict()}
            # the backbone these trained parts sit on: create_model uses it by default
            meta = {"train_config": self.cfg.to_dict(), "command": training_command(),
                    "backbone_weights": self.cfg.backbone_weights}
            evals = self.progress["evals"]
            if evals and evals[-1]["step"] == self.progress["step"]:
                # this checkpoint's own evaluation (the training validation split)
                meta["metrics"] = {k: v for k, v in evals[-1].items() if k != "step"}
                meta["metrics_split"] = VAL_SPLIT
                meta["eval_step"] = self.progress["step"]
            meta["best"] = self.progress["best"]
            folder = save_checkpoint(self.ckpt_dir, self.model, self.parts, state,
                                     self.progress, meta)
        if self.world > 1:
            dist.barrier()
        return folder

    # ------------------------------------------------------------------ loop
    def loader(self, epoch: int, skip_batches: int) -> DataLoader:
        """This rank's loader for one epoch, skipping batches already trained on."""
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        sampler = SkipSampler(self.sampler, skip_batches * self.local_batch)
        return DataLoader(self.train_set, batch_size=self.local_batch, sampler=sampler,
                          num_workers=self.cfg.data.workers, drop_last=True,
                          persistent_workers=False)

    def step(self, batch: dict[str, Any]) -> float:
        """One optimizer step; returns the loss averaged over all ranks."""
        image = batch["image"].to(self.device, non_blocking=True)
        twins = "twin_image" in batch
        if twins:  # each sample and its zoomed twin in one forward pass
            image = torch.cat([image, batch["twin_image"].to(self.device, non_blocking=True)])
            batch = self.objective.with_twins(batch)
        amp = self.cfg.amp and self.device.type == "cuda"
        focal_scale = None
        if self.model.config.focal_conditioning:
            focal_scale = self.objective.focal_scale(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            depth, aux = self.net(image, focal_scale)
        loss = self.objective(depth.float(), batch, self.device, aux)
        if twins and self.cfg.zoom_consistency > 0:
            loss = loss + self.cfg.zoom_consistency * self.objective.zoom_consistency(
                depth.float(), batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.groups["backbone"] + self.groups["head"],
                                           self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        value = loss.detach()
        if self.world > 1:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world
        return float(value)

    def fit(self) -> dict[str, Any]:
        """Train until max_steps/epochs; returns the final progress record."""
        self.resume()
        if self.rank == 0:
            self._open_logs()
        from tqdm import tqdm
        bar = tqdm(total=self.total_steps, initial=self.progress["step"], disable=self.rank != 0,
                   desc="train", unit="step", dynamic_ncols=True)
        # same on every rank: all loaded the same checkpoint
        unevaluated_end = self.progress["step"] >= self.stop_step and not self._evaluated()
        if self.rank == 0 and self.progress["step"] >= self.stop_step:
            log.info("nothing left to train: step %d of %d", self.progress["step"],
                     self.stop_step)
        while self.progress["step"] < self.stop_step and self.progress["epoch"] < max(
                self.cfg.epochs, math.ceil(self.total_steps / self.steps_per_epoch)):
            epoch = self.progress["epoch"]
            self.net.train()
            for batch in self.loader(epoch, self.progress["step_in_epoch"]):
                loss = self.step(batch)
                self.progress["step"] += 1
                self.progress["step_in_epoch"] += 1
                self.progress["history"].append([self.progress["step"], loss])
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch)
                self._log_step(loss)
                if self.progress["step"] % self.cfg.ckpt_every == 0:
                    self.checkpoint()
                if self.progress["step"] >= self.stop_step:
                    break
            if self.progress["step"] < self.total_steps and self.progress["step"] >= \
                    self.stop_step:
                self._end_of_epoch()  # stopped early: evaluate, keep this step's weights
                break
            if self.progress["step_in_epoch"] >= self.steps_per_epoch:
                self.progress["epoch"] += 1
                self.progress["step_in_epoch"] = 0
            self._end_of_epoch()
        if unevaluated_end:  # killed after the final checkpoint, before its evaluation
            self._end_of_epoch()
        bar.close()
        self._close_logs()
        return self.progress

    def _evaluated(self) -> bool:
        """Whether the current step's weights have been evaluated."""
        evals = self.progress["evals"]
        return bool(evals and evals[-1]["step"] == self.progress["step"])

    def _end_of_epoch(self) -> None:
        """Evaluate when due, update the best, then checkpoint: the checkpoint records its own
        evaluation and the best so far; best.safetensors is exported from it."""
        metrics = None
        epoch_done = self.progress["step_in_epoch"] == 0
        last = self.progress["step"] >= self.stop_step  # stop_at's step is the last too
        if self.rank == 0 and ((epoch_done and self.progress["epoch"] % self.cfg.eval_every == 0)
                               or last):
            metrics = validate(self.model, self.val_set, self.device, self.cfg.data.workers)
            self.progress["evals"].append({"step": self.progress["step"], **metrics})
            log.info("step %d, %s split: %s", self.progress["step"], VAL_SPLIT,
                     ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "n_images"))
            if self.writer:
                for key, value in metrics.items():
                    self.writer.add_scalar(f"val/{key}", value, self.progress["step"])
        improved = metrics is not None and self._is_better(metrics)
        if improved:
            self.progress["best"] = best_record(self.cfg.best_metric, self.progress["step"],
                                                metrics)
        folder = self.checkpoint()
        if improved:
            export_best(folder, self.out)

    def _is_better(self, metrics: dict[str, float]) -> bool:
        key = self.cfg.best_metric
        best = self.progress["best"]
        if best is None or key not in best:
            return True
        higher = key in HIGHER_IS_BETTER
        return metrics[key] > best[key] if higher else metrics[key] < best[key]

    def _open_logs(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "train_config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out / "tb"))
        except ImportError:
            log.warning("tensorboard is not installed: no TensorBoard scalars")

    def _log_step(self, loss: float) -> None:
        step = self.progress["step"]
        if self.writer and step % self.cfg.log_every == 0:
            self.writer.add_scalar("train/loss", loss, step)
            for group in self.optimizer.param_groups:
                self.writer.add_scalar(f"lr/{group['name']}", group["lr"], step)

    def _close_logs(self) -> None:
        if self.rank == 0:
            curve = [{"step": s, "loss": v} for s, v in self.progress["history"]]
            (self.out / "loss_curve.json").write_text(json.dumps(curve))
            (self.out / "progress.json").write_text(json.dumps(
                {k: v for k, v in self.progress.items() if k != "history"}, indent=2))
        if self.writer:
            self.writer.close()


PROG = "python -m training.train"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line options; ``--help`` lists every config key."""
    parser = OneLineParser(
        prog=PROG, description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys (set in --config or with --set KEY=VALUE; lists as JSON, e.g. "
               "--set data.render_size=[48,64]):\n" + config_keys_help())
    parser.add_argument("--config", help="train config (JSON or YAML); lists only what differs "
                        "from the defaults below")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value (repeatable), "
                        "checked against the key's type")
    return parser.parse_args(argv)


@command_main(PROG)
def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point: a wrong option or config value is one line and status 2."""
    args = parse_args(argv)
    cfg = load_train_config(args.config, args.overrides)  # checked before anything is made
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    trainer = Trainer(cfg)
    progress = trainer.fit()
    if trainer.rank == 0:
        print(json.dumps({"best": progress.get("best")}, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
