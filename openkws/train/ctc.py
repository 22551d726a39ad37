"""Stage 2: train the Conformer acoustic model with CTC on phonemes.

    openkws train --config recipes/libriphrase/conf/ctc.yaml [key.path=value ...]
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from openkws.config import save_config
from openkws.data.augment import AugmentConfig, augment
from openkws.data.dataset import WaveformStore, duration_batches, pad_waves
from openkws.data.manifest import read_manifest
from openkws.features import SpecAugmentConfig, spec_augment
from openkws.metrics import error_rate
from openkws.models.acoustic import PRETRAINED, AcousticConfig, AcousticModel, acoustic_state, load_acoustic
from openkws.models.ctc import greedy_decode
from openkws.text import encode
from openkws.train.loop import Distributed, OptimConfig, ParamGroup, Trainer


@dataclass
class CTCDataConfig:
    train: list[str] = field(default_factory=list)  # manifests (JSONL)
    dev: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # keep only these utterance kinds; empty = all
    max_batch_seconds: float = 96.0  # padded audio per batch
    max_batch_items: int = 64
    max_duration: float = 20.0
    cache_audio: bool = True


@dataclass
class CTCTrainConfig:
    task: str = "ctc"
    exp_dir: str = "exp/ctc"
    seed: int = 0
    device: str = "auto"
    model: AcousticConfig = field(default_factory=AcousticConfig)
    data: CTCDataConfig = field(default_factory=CTCDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    specaug: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    specaug_enabled: bool = True
    # Start from trained weights instead of `model`: "hama" (the pretrained real-speech Conformer of
    # the hama wheel, its output layer mapped onto our phonemes) or an acoustic checkpoint path.
    init: str = ""
    init_lr_scale: float = 0.3  # learning rate of the initialised front end + encoder, x optim.peak_lr
    freeze_steps: int = 0  # first steps in which only the CTC output layer of an initialised model trains
    # init=hama only: new Conformer blocks stacked on the pretrained ones, trained at the full rate
    # like the output layer (with init_lr_scale 0: a model trained on top of the frozen pretrained one)
    init_extra_layers: int = 0
    # init=hama with new blocks on the frozen pretrained ones: keep the pretrained output layer on
    # the last pretrained block, its posteriors mixed with this weight into the new layer's at
    # inference (AcousticConfig.ctc_mix_layer; 0: dropped). Training fits the new layer alone.
    init_ctc_mix: float = 0.0


def _load(manifests: list[str], kinds: list[str], max_duration: float):
    utts = [u for m in manifests for u in read_manifest(m)]
    return [u for u in utts if (not kinds or u.kind in kinds) and u.duration <= max_duration]


class CTCTask:
    def __init__(self, cfg: CTCTrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        d = cfg.data
        self.train_utts = _load(d.train, d.kinds, d.max_duration)
        self.dev_utts = _load(d.dev, d.kinds, d.max_duration)
        if not self.train_utts:
            raise ValueError(f"no training utterances in {d.train} (kinds={d.kinds or 'all'})")
        self.train_audio = WaveformStore(self.train_utts, d.cache_audio, "loading train audio")
        self.dev_audio = WaveformStore(self.dev_utts, d.cache_audio, "loading dev audio")
        self.targets = [encode(u.phonemes) for u in self.train_utts]
        self.dev_targets = [encode(u.phonemes) for u in self.dev_utts]
        self._epoch_batches: dict[int, list[list[int]]] = {}

    def _batches(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epoch_batches:
            self._epoch_batches = {epoch: duration_batches([u.duration for u in self.train_utts],
                                                           self.cfg.data.max_batch_seconds,
                                                           self.cfg.data.max_batch_items,
                                                           seed=self.cfg.seed * 100003 + epoch)}
        return self._epoch_batches[epoch]

    def num_batches(self, epoch: int) -> int:
        return len(self._batches(epoch))

    def batch_ids(self, epoch: int, index: int) -> list[str]:
        """The utterance ids of a batch (the trainer logs them per rank)."""
        return [self.train_utts[i].id for i in self._batches(epoch)[index]]

    def _babble(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        for _ in range(3):
            w = self.train_audio[int(rng.integers(len(self.train_audio)))]
            w = np.resize(w, n) if len(w) else w
            out += w[:n]
        return out

    def batch(self, epoch: int, index: int):
        rng = np.random.default_rng([self.cfg.seed, epoch, index])
        ids = self._batches(epoch)[index]
        waves = [augment(self.train_audio[i], rng, self.cfg.augment, self._babble) for i in ids]
        wave, lengths = pad_waves(waves)
        return {"wave": wave, "lengths": lengths, "targets": [self.targets[i] for i in ids],
                "seed": int(rng.integers(2**31))}

    def loss(self, model, batch):
        wave, lengths = batch["wave"].to(self.device), batch["lengths"].to(self.device)
        transform = None
        if self.cfg.specaug_enabled:
            gen = torch.Generator().manual_seed(batch["seed"])
            transform = lambda feats, feat_lengths: spec_augment(feats, feat_lengths, self.cfg.specaug, gen)  # noqa: E731
        # a model with a ctc_mix layer trains its own last layer; the mixture is for inference
        log_probs, enc_lengths = model(wave, lengths, feature_transform=transform, log_probs=True, mixed=False)
        ctc = model.module.ctc if hasattr(model, "module") else model.ctc
        return ctc.loss(log_probs, enc_lengths, batch["targets"]), {}

    @torch.no_grad()
    def validate(self, model) -> dict:
        if not self.dev_utts:
            return {}
        refs, hyps, total_loss = [], [], 0.0
        batches = duration_batches([u.duration for u in self.dev_utts], self.cfg.data.max_batch_seconds,
                                   self.cfg.data.max_batch_items, seed=0, shuffle=False)
        for ids in batches:
            wave, lengths = pad_waves([self.dev_audio[i] for i in ids])
            log_probs, enc_lengths = model(wave.to(self.device), lengths.to(self.device), log_probs=True)
            targets = [self.dev_targets[i] for i in ids]
            total_loss += float(model.ctc.loss(log_probs, enc_lengths, targets)) * len(ids)
            hyps += greedy_decode(log_probs, enc_lengths)
            refs += targets
        return {"per": error_rate(refs, hyps), "loss": total_loss / len(self.dev_utts)}


def feature_sample(model: AcousticModel, audio: WaveformStore, n: int, seed: int) -> torch.Tensor:
    """Log-mel frames of up to ``n`` random utterances, for global CMVN."""
    rng = random.Random(seed)
    ids = rng.sample(range(len(audio)), min(n, len(audio)))
    frames = []
    for i in ids:
        feats, _ = model.fbank(torch.from_numpy(audio[i])[None])
        frames.append(feats[0])
    return torch.cat(frames)


def initial_acoustic(init: str, extra_layers: int = 0, ctc_mix: float = 0.0) -> AcousticModel:
    """The model a fine-tuning run starts from: ``"hama"`` (with ``extra_layers`` new blocks on
    top, and hama's output layer mixed in with weight ``ctc_mix``) or an acoustic checkpoint path."""
    if init == PRETRAINED:
        from openkws.models.pretrained import pretrained_acoustic

        return pretrained_acoustic(extra_layers=extra_layers, ctc_mix_weight=ctc_mix).train()
    if extra_layers or ctc_mix:
        raise ValueError(f"init_extra_layers and init_ctc_mix need init={PRETRAINED!r}, got init={init!r}")
    if not Path(init).exists():
        raise FileNotFoundError(f"init={init!r}: neither {PRETRAINED!r} nor an existing acoustic checkpoint")
    return load_acoustic(init).train()


def train_ctc(cfg: CTCTrainConfig) -> dict:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    dist = Distributed(cfg.device)
    exp = Path(cfg.exp_dir)
    if dist.main:
        save_config(cfg, exp / "config.yaml")
    task = CTCTask(cfg, dist.device)
    groups = None
    if cfg.init_ctc_mix and cfg.init_lr_scale != 0:
        raise ValueError("init_ctc_mix mixes in the pretrained output layer on the pretrained blocks, "
                         f"which must stay frozen: it needs init_lr_scale 0, got {cfg.init_lr_scale}")
    if cfg.init:
        model = initial_acoustic(cfg.init, cfg.init_extra_layers, cfg.init_ctc_mix)
        blocks = model.encoder.blocks
        output = set(model.ctc.parameters()) | {p for b in blocks[len(blocks) - cfg.init_extra_layers:] for p in b.parameters()}
        if cfg.init_lr_scale == 0:  # frozen: no gradients through it at all
            for p in set(model.parameters()) - output:
                p.requires_grad_(False)
        groups = [ParamGroup([p for p in model.parameters() if p not in output], cfg.init_lr_scale, cfg.freeze_steps),
                  ParamGroup(list(output))]
    else:
        model = AcousticModel(cfg.model)
        model.set_normalisation(feature_sample(model, task.train_audio, 300, cfg.seed))
    model.to(dist.device)
    n_params = sum(p.numel() for p in model.parameters())
    if dist.main:
        print(f"acoustic model: {n_params / 1e6:.2f}M parameters; {len(task.train_utts)} train / "
              f"{len(task.dev_utts)} dev utterances on {dist.device}")
    trainer = Trainer(model, task, cfg.optim, exp, dist, extra_state=acoustic_state(model),
                      best_metric="per", lower_is_better=True, param_groups=groups)
    return trainer.fit()
