"""One training loop for every trainer: Adam + Noam schedule, gradient clipping, AMP on GPU,
DDP under torchrun, CSV logging, tqdm, and atomic checkpoints that resume exactly.

A *task* supplies the data and the loss:
    task.num_batches(epoch) -> int                   batches this epoch (same on every rank)
    task.batch(epoch, index) -> batch                 deterministic in (epoch, index): exact resume
    task.loss(model, batch) -> (loss, {name: float})  forward pass
    task.validate(model) -> {name: float}             run on rank 0 after each epoch
    task.batch_ids(epoch, index) -> list[str]         optional: what the batch holds (utterance ids),
                                                      written to the per-rank batch log

Under torchrun (WORLD_SIZE > 1) every rank builds the same task and model; rank r takes batches
r, r + world, ... of each epoch (the epoch is padded by wrapping round to a multiple of the world
size, so every rank takes the same number of steps), ``task.loss`` runs inside DDP's forward (so
gradients are averaged whatever the task calls on the model), train metrics in ``train.csv`` are
averaged over all ranks, and only rank 0 writes checkpoints, ``train.csv`` and ``best_model.pt``.
Every rank appends one row per step (epoch, step, batch index, loss, utterance ids) to
``log/batches.rank<R>.tsv`` (steps past the last checkpoint of a killed run appear again once it
resumes), and at each epoch's end the ranks compare a checksum of their weights
(``ddp_param_spread`` in ``train.csv``, 0 when they are in sync).
"""

from __future__ import annotations

import csv
import math
import os
import random
import subprocess
import sys
import time
from functools import partial
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from openkws.checkpoint import atomic_torch_save, safe_torch_load


@dataclass
class OptimConfig:
    epochs: int = 30
    peak_lr: float = 1e-3
    warmup_steps: int = 1000
    grad_clip: float = 5.0
    weight_decay: float = 0.0
    amp: bool = True  # bf16 autocast, used only on CUDA
    checkpoint_every_steps: int = 500  # besides the end of every epoch


def noam_factor(step: int, warmup: int) -> float:
    """Noam schedule normalised to peak 1 at ``warmup``: linear up, then ~1/sqrt(step)."""
    step = max(step, 1)
    return min(step / warmup, math.sqrt(warmup / step)) if warmup > 0 else 1.0


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Distributed:
    """torchrun environment (WORLD_SIZE/RANK/LOCAL_RANK), or a single process."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and self.world > 1:
            device = f"cuda:{local}"
            torch.cuda.set_device(local)
        self.device = torch.device(device)
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0


def _rng_state() -> dict:
    # Plain types and tensors only, so checkpoints load with weights_only=True.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                    has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(x):
    # weights_only loading turns tuples into lists; the RNG setters want the original tuples.
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


@dataclass
class ParamGroup:
    """Parameters trained at ``lr_scale`` x the schedule's rate, frozen for the first ``freeze_steps``."""

    params: list
    lr_scale: float = 1.0
    freeze_steps: int = 0


def _group_factor(step: int, warmup: int, frozen: int) -> float:
    """The Noam factor of a group, 0 while it is frozen; its warm-up starts when it thaws."""
    return 0.0 if step < frozen else noam_factor(step - frozen + 1, warmup)


class _TaskForward(nn.Module):
    """``task.loss(model, batch)`` as a module's forward, for DDP to wrap: DDP averages gradients
    only in a backward that follows its own forward, and tasks call methods (``head.loss``) or
    submodules that a plain DDP(model) would bypass."""

    def __init__(self, model: nn.Module, task):
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch):
        return self.task.loss(self.model, batch)


def _param_checksum(params) -> float:
    with torch.no_grad():
        return float(sum(p.detach().double().sum().cpu() for p in params)) if params else 0.0


class Trainer:
    def __init__(self, model: nn.Module, task, cfg: OptimConfig, exp_dir: str | Path, dist: Distributed,
                 extra_state: dict | None = None, best_metric: str | None = None, lower_is_better: bool = True,
                 param_groups: list[ParamGroup] | None = None):
        """``param_groups`` (default: every trainable parameter at the full rate) give parts of
        the model their own learning-rate scale and a number of frozen first steps, e.g. a
        pretrained encoder that must not be overwritten while a new output layer settles."""
        self.model, self.task, self.cfg, self.dist = model, task, cfg, dist
        self.exp_dir = Path(exp_dir)
        self.extra_state = extra_state or {}
        self.best_metric, self.lower_is_better = best_metric, lower_is_better
        groups = param_groups or [ParamGroup(list(model.parameters()))]
        groups = [ParamGroup([p for p in g.params if p.requires_grad], g.lr_scale, g.freeze_steps) for g in groups]
        groups = [g for g in groups if g.params]  # a wholly frozen part (requires_grad False) trains nothing
        self.params = [p for g in groups for p in g.params]
        self.optimizer = torch.optim.Adam([{"params": g.params, "lr": cfg.peak_lr * g.lr_scale} for g in groups],
                                          lr=cfg.peak_lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [partial(_group_factor, warmup=cfg.warmup_steps, frozen=g.freeze_steps) for g in groups])
        self.step, self.epoch, self.batch_in_epoch, self.best = 0, 0, 0, None
        self.wrapped = None
        if dist.world > 1:
            self.wrapped = nn.parallel.DistributedDataParallel(
                _TaskForward(model, task), device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        self.ckpt_path = self.exp_dir / "checkpoint.pt"
        self.log_path = self.exp_dir / "log" / "train.csv"
        self.batch_log_path = self.exp_dir / "log" / f"batches.rank{dist.rank}.tsv"

    # -- checkpoints ------------------------------------------------------------------------
    def save(self) -> None:
        """Called on every rank at the same step; rank 0 writes (atomically), holding every
        rank's RNG state so that dropout resumes exactly on each of them."""
        rng = _rng_state()
        rng_ranks = [rng]
        if self.dist.world > 1:
            rng_ranks = [None] * self.dist.world
            torch.distributed.all_gather_object(rng_ranks, rng)
        if not self.dist.main:
            return
        atomic_torch_save({
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "step": self.step, "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch, "best": self.best, "rng": rng, "rng_ranks": rng_ranks,
            "world_size": self.dist.world, "git": git_revision(), "argv": list(sys.argv), **self.extra_state,
        }, self.ckpt_path)

    def maybe_resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        state = safe_torch_load(self.ckpt_path, map_location=self.dist.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.best = state["batch_in_epoch"], state["best"]
        # each rank its own RNG state when the world size is unchanged, else rank 0's
        rng_ranks = state.get("rng_ranks") or []
        _set_rng_state(rng_ranks[self.dist.rank] if len(rng_ranks) == self.dist.world else state["rng"])
        self._print(f"resumed from {self.ckpt_path} at epoch {self.epoch}, batch {self.batch_in_epoch}")
        return True

    # -- logging ----------------------------------------------------------------------------
    def _print(self, msg: str) -> None:
        if self.dist.main:
            tqdm.write(msg)

    def _log(self, row: dict) -> None:
        if not self.dist.main:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.log_path.exists()
        with open(self.log_path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["time", "epoch", "step", "kind", "name", "value"])
            for name, value in row["values"].items():
                writer.writerow([f"{time.time():.0f}", row["epoch"], self.step, row["kind"], name, f"{value:.6g}"])

    def _log_batch(self, f, index: int, loss: float) -> None:
        ids = getattr(self.task, "batch_ids", None)
        ids = " ".join(ids(self.epoch, index)) if ids else ""
        f.write(f"{time.time():.3f}\t{self.epoch + 1}\t{self.step}\t{index}\t{loss:.6g}\t{ids}\n")

    def _gather_totals(self, totals: dict[str, float], done: int) -> tuple[dict[str, float], int]:
        """Sum the per-rank epoch totals over all ranks (every rank gets the sums)."""
        if self.dist.world == 1:
            return totals, done
        gathered = [None] * self.dist.world
        torch.distributed.all_gather_object(gathered, (totals, done))
        out: dict[str, float] = {}
        for rank_totals, _ in gathered:
            for k, v in rank_totals.items():
                out[k] = out.get(k, 0.0) + v
        return out, sum(d for _, d in gathered)

    def _param_spread(self) -> float:
        """max - min over ranks of a checksum of the trainable weights: 0 while DDP keeps them in sync."""
        sums = [None] * self.dist.world
        torch.distributed.all_gather_object(sums, _param_checksum(self.params))
        return max(sums) - min(sums)

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        self.maybe_resume()
        self.batch_log_path.parent.mkdir(parents=True, exist_ok=True)
        new_log = not self.batch_log_path.exists()
        with open(self.batch_log_path, "a", buffering=1) as batch_log:
            if new_log:
                batch_log.write("time\tepoch\tstep\tbatch\tloss\tids\n")
            return self._fit(batch_log)

    def _fit(self, batch_log) -> dict:
        dev = self.dist.device
        use_amp = self.cfg.amp and dev.type == "cuda"
        world, rank = self.dist.world, self.dist.rank
        while self.epoch < self.cfg.epochs:
            n = self.task.num_batches(self.epoch)
            # Every rank must take the same number of steps (each one all-reduces gradients):
            # pad the epoch to a multiple of the world size by wrapping round to its first batches.
            padded = n if world == 1 or n == 0 else -(-n // world) * world
            mine = range(self.batch_in_epoch + rank, padded, world)
            self.model.train()
            bar = tqdm(mine, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", disable=not self.dist.main,
                       dynamic_ncols=True, leave=False)
            totals: dict[str, float] = {}
            t0, done = time.time(), 0
            for slot in bar:
                index = slot % n
                batch = self.task.batch(self.epoch, index)
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
                    if self.wrapped is not None:
                        loss, metrics = self.wrapped(batch)
                    else:
                        loss, metrics = self.task.loss(self.model, batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                self.batch_in_epoch = slot + world - rank  # the next unseen slot of the epoch
                done += 1
                metrics = {"loss": float(loss.detach()), **metrics}
                self._log_batch(batch_log, index, metrics["loss"])
                for k, v in metrics.items():
                    totals[k] = totals.get(k, 0.0) + v
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                if self.step % self.cfg.checkpoint_every_steps == 0:
                    self.save()
            elapsed = time.time() - t0
            totals, done = self._gather_totals(totals, done)
            train_avg = {k: v / max(done, 1) for k, v in totals.items()}
            train_avg["seconds"] = elapsed
            if world > 1:
                train_avg["ddp_param_spread"] = spread = self._param_spread()
                if spread != 0:
                    self._print(f"WARNING: the {world} ranks' weights differ (checksum spread {spread:.3g}): "
                                "gradients are not being synchronised")
            self._log({"epoch": self.epoch + 1, "kind": "train", "values": train_avg})
            self.epoch += 1
            self.batch_in_epoch = 0
            summary = f"epoch {self.epoch}: " + " ".join(f"{k}={v:.4g}" for k, v in train_avg.items())
            if self.dist.main:
                self.model.eval()
                with torch.no_grad():
                    val = self.task.validate(self.model)
                self._log({"epoch": self.epoch, "kind": "valid", "values": val})
                summary += " | valid " + " ".join(f"{k}={v:.4g}" for k, v in val.items())
                if self.best_metric in val:
                    score = val[self.best_metric]
                    better = self.best is None or (score < self.best if self.lower_is_better else score > self.best)
                    if better:
                        self.best = score
                        atomic_torch_save({"state_dict": self.model.state_dict(), "epoch": self.epoch,
                                           "valid": val, **self.extra_state},
                                          self.exp_dir / "best_model.pt")
            self._print(summary)
            if world > 1:  # every rank learns the best score (and waits here for rank 0's validation)
                best = [self.best]
                torch.distributed.broadcast_object_list(best, src=0)
                self.best = best[0]
            self.save()
            if world > 1:
                torch.distributed.barrier()
        return {"step": self.step, "epoch": self.epoch, "best": self.best}
