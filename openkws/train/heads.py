"""Stage 5: train a matcher head (ced | phonmatch | clad) on audio-text pairs, encoder frozen.

    openkws train --config recipes/libriphrase/conf/default/ced.yaml [key.path=value ...]

Validation scores a fixed set of dev pairs (positives, random negatives, confusables) drawn by
the same sampler from dev-split voices/speakers, and keeps the best model by dev AUC.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from openkws.config import save_config
from openkws.data.augment import AugmentConfig
from openkws.data.manifest import read_manifest
from openkws.data.pairs import ClipBank, KeywordPairSampler, Pair, SamplerConfig, collate
from openkws.metrics import eer, roc_auc
from openkws.models.acoustic import load_acoustic
from openkws.models.heads import HEADS, Head, build_head, num_parameters
from openkws.models.p2v import P2V
from openkws.train.loop import Distributed, OptimConfig, Trainer


@dataclass
class HeadTrainConfig:
    task: str = "head"
    exp_dir: str = "exp/ced"
    seed: int = 0
    device: str = "auto"
    head: str = "ced"
    head_config: dict = field(default_factory=dict)
    acoustic: str = ""  # CTC model checkpoint (stage 2)
    p2v: str = ""  # P2V table (stage 3)
    train: list[str] = field(default_factory=list)  # phrase manifests
    dev: list[str] = field(default_factory=list)
    phrase_kinds: list[str] = field(default_factory=lambda: ["phrase"])
    views: int = 3  # 1 clean + (views - 1) augmented copies of every training clip
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    batches_per_epoch: int = 0  # 0: one pass over the keywords
    dev_batches: int = 8
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=20, peak_lr=2e-3, warmup_steps=200))


def _with_frame_rate(name: str, head_config: dict, acoustic) -> dict:
    """The head's config with the acoustic model's encoder frame shift filled in, for a head
    whose config has ``encoder_frame_seconds`` (PhonMatchNet) and unless the config sets it."""
    fields = {f.name for f in dataclasses.fields(HEADS[name].config_class)} if name in HEADS else set()
    if "encoder_frame_seconds" in fields:
        return {"encoder_frame_seconds": acoustic.frame_seconds, **head_config}
    return head_config


@torch.no_grad()
def score_pairs(head: Head, pairs: Sequence[Pair], bank: ClipBank, p2v: P2V, batch_size: int = 512,
                device="cpu") -> np.ndarray:
    head.eval()
    out = []
    for i in range(0, len(pairs), batch_size):
        batch = collate(pairs[i:i + batch_size], bank, p2v, with_feats=head.needs_feats,
                        stream=_stream_spec(head)).to(device)
        out.append(head.score(batch).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def _stream_spec(head: Head) -> str | None:
    """The spec of the head's frozen external audio stream (whose features collate adds), if any."""
    head = head.module if hasattr(head, "module") else head
    return None if head.stream is None else head.stream.spec


class HeadTask:
    """The data side of head training. It builds the head (``self.head``) too, before the clip
    banks, because a head's frozen external audio stream computes features for them (nothing in
    between draws from torch's RNG, so the initial weights are those of building it last)."""

    def __init__(self, cfg: HeadTrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        acoustic = load_acoustic(cfg.acoustic)
        self.p2v = P2V.load(cfg.p2v)

        def phrases(manifests):
            return [u for m in manifests for u in read_manifest(m) if u.kind in cfg.phrase_kinds]

        train, dev = phrases(cfg.train), phrases(cfg.dev)
        if not train:
            raise ValueError(f"no phrase clips (kinds {cfg.phrase_kinds}) in {cfg.train}")
        self.head = build_head(cfg.head, _with_frame_rate(cfg.head, cfg.head_config, acoustic), self.p2v.dim)
        if not self.head.trainable:
            raise ValueError(f"head {cfg.head!r} has nothing to train: add it with `openkws export --head "
                             f"{cfg.head}` and calibrate it with `python -m evaluation.calibrate`")
        self.bank = ClipBank(acoustic, train, device, cfg.views, cfg.augment, cfg.seed,
                             keep_feats=self.head.needs_feats, stream=self.head.stream)
        self.sampler = KeywordPairSampler(self.bank, self.p2v, cfg.sampler, cfg.seed)
        self.dev_pairs: list[Pair] = []
        if dev:
            self.dev_bank = ClipBank(acoustic, dev, device, 1, keep_feats=self.head.needs_feats,
                                     stream=self.head.stream)
            dev_sampler = KeywordPairSampler(self.dev_bank, self.p2v, cfg.sampler, seed=12345)
            self.dev_pairs = [p for b in range(cfg.dev_batches) for p in dev_sampler.batch(0, b)]

    def num_batches(self, epoch: int) -> int:
        return self.cfg.batches_per_epoch or self.sampler.batches_per_epoch()

    def batch(self, epoch: int, index: int):
        return collate(self.sampler.batch(epoch, index), self.bank, self.p2v, with_feats=self.head.needs_feats,
                       stream=_stream_spec(self.head))

    def batch_ids(self, epoch: int, index: int) -> list[str]:
        """The ids of the clips a batch pairs with text (the trainer logs them per rank)."""
        return list(dict.fromkeys(self.bank.utts[p.clip].id for p in self.sampler.batch(epoch, index)))

    def loss(self, model, batch):
        model = model.module if hasattr(model, "module") else model
        return model.loss(batch.to(self.device))

    def validate(self, model) -> dict:
        if not self.dev_pairs:
            return {}
        scores = score_pairs(model, self.dev_pairs, self.dev_bank, self.p2v, device=self.device)
        labels = np.array([p.label for p in self.dev_pairs])
        # positives against confusable negatives (same audio, near-miss text): the hard condition
        hard = np.array([p.kind != "random" for p in self.dev_pairs])
        eer_value, eer_threshold = eer(labels, scores)
        # the EER threshold on dev becomes the model's default detection threshold
        out = {"auc": roc_auc(labels, scores), "eer": eer_value, "eer_threshold": eer_threshold}
        if (labels[hard] == 0).any():
            out["auc_confusable"] = roc_auc(labels[hard], scores[hard])
        return out


def train_head(cfg: HeadTrainConfig) -> dict:
    torch.manual_seed(cfg.seed)
    dist = Distributed(cfg.device)
    exp = Path(cfg.exp_dir)
    if dist.main:
        save_config(cfg, exp / "config.yaml")
    task = HeadTask(cfg, dist.device)
    head = task.head.to(dist.device)
    if dist.main:
        print(f"head {cfg.head}: {num_parameters(head) / 1e6:.3f}M trainable parameters; "
              f"{len(task.sampler.keywords)} train keywords, {len(task.bank)} clips x {cfg.views} views; "
              f"{len(task.dev_pairs)} dev pairs")
    extra = {"head": cfg.head, "head_config": asdict(head.cfg) if hasattr(head, "cfg") else dict(cfg.head_config)}
    trainer = Trainer(head, task, cfg.optim, exp, dist, extra_state=extra, best_metric="auc",
                      lower_is_better=False)
    return trainer.fit()
