"""Audio-text pairs for the matcher heads: precomputed clip embeddings, keyword-balanced batches
with random and confusable negatives (CED §A.7 + AdaKWS §E.1), and collation into a PairBatch.

The acoustic encoder is frozen while heads train, so each clip's encoder output E (and the
normalised fbank PhonMatchNet's conv stream reads, and the features of any frozen external audio
stream a head reads) is computed once per augmented view and kept in memory as float16; a head
epoch then costs only the head itself.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from openkws.data.augment import AugmentConfig, augment
from openkws.data.dataset import WaveformStore, duration_batches, pad_waves
from openkws.data.manifest import Utterance
from openkws.models.heads import PairBatch, pad_sequences
from openkws.models.p2v import P2V
from openkws.streams import AudioStream
from openkws.text import (concatenate_keyword, encode, is_homophone, mutate_phonemes, nearest_keywords,
                          substitute_characters)


class ClipBank:
    """Encoder outputs (and, with ``keep_feats``, the normalised fbank, 4x larger, which only
    PhonMatchNet reads) of clips: ``views`` copies, view 0 clean and the others augmented (seeded).

    ``stream``: frozen external audio stream(s) (``Head.stream``) whose features are computed from
    the same (augmented) waveforms and kept per view in ``streams[spec][view][clip]``."""

    def __init__(self, model, utts: Sequence[Utterance], device="cpu", views: int = 1,
                 augment_cfg: AugmentConfig | None = None, seed: int = 0, batch_seconds: float = 120.0,
                 store: WaveformStore | None = None, keep_feats: bool = True,
                 stream: AudioStream | Sequence[AudioStream] | None = None):
        self.utts = list(utts)
        store = store or WaveformStore(self.utts, cache=False)
        self.enc: list[list[torch.Tensor]] = []
        self.feats: list[list[torch.Tensor]] = []
        streams = [] if stream is None else [stream] if isinstance(stream, AudioStream) else list(stream)
        self.streams: dict[str, list[list[torch.Tensor]]] = {s.spec: [] for s in streams}
        model.eval().to(device)
        batches = duration_batches([u.duration for u in self.utts], batch_seconds, 128, seed=0, shuffle=False)
        for view in range(views):
            enc_v: list[torch.Tensor | None] = [None] * len(self.utts)
            feats_v: list[torch.Tensor | None] = [None] * len(self.utts)
            streams_v: dict[str, list[torch.Tensor | None]] = {s.spec: [None] * len(self.utts) for s in streams}
            for b, ids in enumerate(batches):
                rng = np.random.default_rng([seed, view, b])
                waves = [store[i] if view == 0 else augment(store[i], rng, augment_cfg or AugmentConfig())
                         for i in ids]
                wave, lengths = pad_waves(waves)
                with torch.no_grad():
                    feats, feat_lengths = model.features(wave.to(device), lengths.to(device))
                    enc, enc_lengths = model.encoder(feats, feat_lengths)
                    for s in streams:
                        out, out_lengths = s(wave.to(device), lengths.to(device))
                        for row, i in enumerate(ids):
                            streams_v[s.spec][i] = out[row, : int(out_lengths[row])].half().cpu()
                for row, i in enumerate(ids):
                    enc_v[i] = enc[row, : max(1, int(enc_lengths[row]))].half().cpu()
                    if keep_feats:
                        feats_v[i] = feats[row, : max(1, int(feat_lengths[row]))].half().cpu()
            self.enc.append(enc_v)
            self.feats.append(feats_v)
            for spec, rows in streams_v.items():
                self.streams[spec].append(rows)

    @property
    def views(self) -> int:
        return len(self.enc)

    def __len__(self) -> int:
        return len(self.utts)


@dataclass
class Pair:
    clip: int  # index into the ClipBank
    view: int
    phonemes: tuple[str, ...]  # the enrolled (text) side
    label: int
    keyword: int  # id of the keyword the AUDIO contains
    kind: str = "positive"  # "positive" | "random" | "confusable"


def phone_labels(text: Sequence[str], audio: Sequence[str]) -> list[float]:
    """PhonMatchNet's position-wise label: 1 where text phoneme k equals audio phoneme k."""
    return [float(k < len(audio) and p == audio[k]) for k, p in enumerate(text)]


def collate(pairs: Sequence[Pair], bank: ClipBank, p2v: P2V, with_feats: bool = True,
            stream: str | None = None) -> PairBatch:
    """The pairs as a PairBatch; ``stream`` (a stream spec, e.g. ``head.stream.spec``) adds that
    stream's features, which the bank must hold."""
    audio, audio_lengths = pad_sequences([bank.enc[p.view][p.clip].float() for p in pairs])
    texts = [list(p.phonemes) for p in pairs]
    text, text_lengths = pad_sequences([p2v.encode(t) for t in texts])
    ids, _ = pad_sequences([torch.tensor(encode(t)) for t in texts])
    plabels, _ = pad_sequences([torch.tensor(phone_labels(t, bank.utts[p.clip].phonemes)) for t, p in zip(texts, pairs)])
    feats = feat_lengths = None
    if with_feats:
        feats, feat_lengths = pad_sequences([bank.feats[p.view][p.clip].float() for p in pairs])
    stream_feats = stream_lengths = None
    if stream is not None:
        if stream not in bank.streams:
            raise ValueError(f"the ClipBank holds no features of audio stream {stream!r} (it has "
                             f"{sorted(bank.streams) or 'none'}); build it with stream=head.stream")
        stream_feats, stream_lengths = pad_sequences([bank.streams[stream][p.view][p.clip].float() for p in pairs])
    return PairBatch(audio=audio, audio_lengths=audio_lengths, text=text, text_lengths=text_lengths,
                     phoneme_ids=ids, feats=feats, feat_lengths=feat_lengths,
                     stream=stream_feats, stream_lengths=stream_lengths,
                     labels=torch.tensor([float(p.label) for p in pairs]), phone_labels=plabels,
                     keyword_ids=torch.tensor([p.keyword for p in pairs]))


@dataclass
class SamplerConfig:
    keywords_per_batch: int = 32
    clips_per_keyword: int = 11  # size of each of the three mini-batches per keyword
    random_negatives: bool = True
    confusable_negatives: bool = True
    # how the confusable text of a positive clip is made (AdaKWS kinds besides CED's mutation)
    confusable_mix: dict = field(default_factory=lambda: {"mutate": 0.6, "substitute": 0.15,
                                                          "concatenate": 0.1, "nearest": 0.15})
    max_edits: int = 3


class KeywordPairSampler:
    """CED batches: K keywords x (positives, random negatives, confusable negatives that reuse the
    positives' audio). Batches are a pure function of (seed, epoch, index), so training resumes
    exactly."""

    def __init__(self, bank: ClipBank, p2v: P2V, cfg: SamplerConfig, seed: int = 0):
        self.bank, self.cfg, self.seed = bank, cfg, seed
        by_text: dict[str, list[int]] = defaultdict(list)
        for i, u in enumerate(bank.utts):
            by_text[u.text].append(i)
        self.keywords = sorted(by_text)
        if len(self.keywords) < 2:
            raise ValueError("pair sampling needs at least two distinct phrases")
        self.clips = [by_text[k] for k in self.keywords]
        self.phonemes = [tuple(bank.utts[c[0]].phonemes) for c in self.clips]
        self.keyword_of_clip = {c: k for k, clips in enumerate(self.clips) for c in clips}
        self._nearest = self._nearest_table(p2v)

    def _nearest_table(self, p2v: P2V, k: int = 5) -> torch.Tensor:
        """The k keywords closest to each keyword in P2V space (mean of its phoneme vectors)."""
        vecs = torch.stack([p2v.encode(p).mean(0) for p in self.phonemes])
        return nearest_keywords(vecs, vecs, min(k, len(self.keywords) - 1))

    def batches_per_epoch(self) -> int:
        return max(1, len(self.keywords) // self.cfg.keywords_per_batch)

    def _confusable(self, k: int, rng: random.Random) -> tuple[str, ...]:
        kinds, weights = zip(*self.cfg.confusable_mix.items())
        positive = self.phonemes[k]
        for _ in range(10):
            kind = rng.choices(kinds, weights)[0]
            if kind == "mutate":
                out = mutate_phonemes(positive, rng, self.cfg.max_edits)
            elif kind == "substitute":
                try:
                    out = substitute_characters(self.keywords[k], rng)[1]
                except ValueError:
                    continue
            elif kind == "concatenate":
                out = concatenate_keyword(positive, self.phonemes[rng.randrange(len(self.phonemes))], rng)
            elif kind == "nearest":
                out = self.phonemes[int(self._nearest[k][rng.randrange(self._nearest.shape[1])])]
            else:
                raise ValueError(f"unknown confusable kind {kind!r}; valid: mutate, substitute, concatenate, nearest")
            if not is_homophone(out, positive):
                return tuple(out)
        return tuple(mutate_phonemes(positive, rng, self.cfg.max_edits))

    def batch(self, epoch: int, index: int) -> list[Pair]:
        rng = random.Random(f"{self.seed}-{epoch}-{index}")
        cfg, views = self.cfg, self.bank.views
        chosen = rng.sample(range(len(self.keywords)), min(cfg.keywords_per_batch, len(self.keywords)))
        pairs: list[Pair] = []
        for k in chosen:
            text = self.phonemes[k]
            positives = [rng.choice(self.clips[k]) for _ in range(cfg.clips_per_keyword)]
            for c in positives:
                pairs.append(Pair(c, rng.randrange(views), text, 1, k))
            if cfg.random_negatives:
                for _ in range(cfg.clips_per_keyword):
                    other = rng.randrange(len(self.keywords) - 1)
                    other += other >= k
                    if is_homophone(self.phonemes[other], text):
                        continue
                    pairs.append(Pair(rng.choice(self.clips[other]), rng.randrange(views), text, 0, other, "random"))
            if cfg.confusable_negatives:
                for c in positives:
                    pairs.append(Pair(c, rng.randrange(views), self._confusable(k, rng), 0, k, "confusable"))
        return pairs
