"""The inference model: acoustic encoder + P2V text encoder + matcher heads, in one file.

File format (``torch.load(weights_only=True)``):
    {"format": "openkws/1", "config": {"acoustic": ..., "heads": {name: cfg}, "default_head": name,
     "thresholds": {name: float}, "info": {...}}, "frontend": FbankConfig dict,
     "phonemes": [...], "p2v": P2V state, "state_dict": {"acoustic.*", "heads.<name>.*"}}

Scoring runs in three steps: ``encode`` (one batched pass of fbank + Conformer over whole clips:
an ``Encoding``), ``cut`` (windows of those clips, sliced frame for frame out of their encoding:
the spotter's sliding windows share one pass per block of audio) and ``score_pairs`` (the head
on chosen (clip or window, keyword) pairs; the one place that builds the heads' PairBatch).
``score_segments`` chains ``encode`` and ``score_pairs`` for every segment against every keyword.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from openkws.checkpoint import MODEL_FORMAT, atomic_torch_save, load_model_file
from openkws.config import from_dict
from openkws.features import FbankConfig, num_frames
from openkws.models.acoustic import AcousticConfig, AcousticModel
from openkws.models.heads import HEADS, PairBatch, build_head
from openkws.models.p2v import P2V
from openkws.streams import stream_kwargs
from openkws.text import PHONEMES, encode, parse_phonemes, pronunciation_variants

# CLAD's keyword window: phonemes x mean phoneme duration + margin (ALGORITHMS.md §C.3).
PHONEME_SECONDS = 0.09
WINDOW_MARGIN_SECONDS = 0.3
MIN_WINDOW_SECONDS = 0.5


@dataclass(frozen=True)
class Keyword:
    text: str
    phonemes: tuple[str, ...]
    vectors: torch.Tensor  # F (m, d)
    variants: tuple[tuple[str, ...], ...] = ()  # every pronunciation (``phonemes`` first), for the CTC search

    @property
    def window_seconds(self) -> float:
        """Length of the sliding window used to find this keyword in long audio."""
        return max(MIN_WINDOW_SECONDS, len(self.phonemes) * PHONEME_SECONDS + WINDOW_MARGIN_SECONDS)


@dataclass(frozen=True)
class Encoding:
    """The audio side of a batch of clips, as the heads read it: encoder frames E (B, n, d), their
    CTC log-posteriors (B, n, V) and the normalised fbank (B, T, 80), zero-padded, with their
    lengths (B,)."""

    audio: Tensor
    audio_lengths: Tensor
    feats: Tensor
    feat_lengths: Tensor
    log_probs: Tensor
    stream: Tensor | None = None  # a head's frozen external audio stream (see ``with_stream``)
    stream_lengths: Tensor | None = None


class KWSModel(nn.Module):
    def __init__(self, acoustic: AcousticModel, p2v: P2V, heads: dict[str, nn.Module], default_head: str,
                 thresholds: dict[str, float] | None = None, info: dict | None = None):
        super().__init__()
        if default_head not in heads:
            raise ValueError(f"default head {default_head!r} is not among the model's heads {sorted(heads)}")
        self.acoustic, self.p2v = acoustic.eval(), p2v
        self.heads = nn.ModuleDict(heads).eval()
        self.default_head = default_head
        self.thresholds = {name: 0.5 for name in heads} | dict(thresholds or {})
        self.info = dict(info or {})
        self._keyword = lru_cache(maxsize=4096)(self._enroll)

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        atomic_torch_save({
            "format": MODEL_FORMAT,
            "config": {"acoustic": asdict(self.acoustic.cfg),
                       "heads": {n: asdict(h.cfg) for n, h in self.heads.items()},
                       "default_head": self.default_head, "thresholds": dict(self.thresholds),
                       "info": self.info},
            "frontend": self.acoustic.fbank.cfg.to_dict(),
            "phonemes": list(PHONEMES),
            "p2v": self.p2v.state_dict(),
            "state_dict": self.state_dict(),
        }, path)

    @classmethod
    def load(cls, path: str | Path) -> "KWSModel":
        obj = load_model_file(path)
        cfg = obj["config"]
        if list(obj["phonemes"]) != list(PHONEMES):
            raise ValueError(f"{path}: model was trained with a different phoneme inventory")
        unknown = sorted(set(cfg["heads"]) - set(HEADS))
        if unknown:
            raise ValueError(f"{path}: model has heads {unknown} that this openkws version lacks")
        acoustic = AcousticModel(from_dict(AcousticConfig, cfg["acoustic"]), from_dict(FbankConfig, obj["frontend"]))
        p2v = P2V.from_state_dict(obj["p2v"])
        heads = {n: build_head(n, c, p2v.dim) for n, c in cfg["heads"].items()}
        model = cls(acoustic, p2v, heads, cfg["default_head"], cfg["thresholds"], cfg.get("info"))
        try:
            model.load_state_dict(obj["state_dict"])
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not match the model's config: {e}") from e
        return model.eval()

    # -- keywords ----------------------------------------------------------------------------
    def keyword(self, text: str, pronunciation: str | Sequence[str] | None = None) -> Keyword:
        """Enrol a keyword (cached): G2P (or the given pronunciation) then P2V."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"keyword must be a non-empty string, got {text!r}")
        pron = None if pronunciation is None else tuple(parse_phonemes(pronunciation))
        return self._keyword(text, pron)

    def _enroll(self, text: str, pronunciation: tuple[str, ...] | None) -> Keyword:
        variants = (pronunciation,) if pronunciation else tuple(map(tuple, pronunciation_variants(text)))
        return Keyword(text, variants[0], self.p2v.encode(variants[0]), variants)

    def head(self, name: str | None = None) -> nn.Module:
        name = name or self.default_head
        if name not in self.heads:
            raise ValueError(f"model has no head {name!r}; available: {sorted(self.heads)}")
        return self.heads[name]

    # -- scoring -----------------------------------------------------------------------------
    @property
    def frame_samples(self) -> int:
        """Samples per encoder frame (40 ms for the Kaldi-fbank Conformer, 20 ms for the pretrained
        front end): windows cut from an encoding start on this grid."""
        return self.acoustic.frame_samples

    @torch.inference_mode()
    def encode(self, clips: Sequence[np.ndarray]) -> Encoding:
        """One batched pass of the acoustic model over 16 kHz float32 clips."""
        device = self.acoustic.feat_mean.device
        waves, lengths = (x.to(device) for x in _pad(clips))
        feats, feat_lengths = self.acoustic.features(waves, lengths)
        enc, enc_lengths, log_probs = self.acoustic.encode(feats, feat_lengths)
        return Encoding(enc, enc_lengths.clamp(min=1), feats, feat_lengths.clamp(min=1), log_probs)

    @torch.inference_mode()
    def with_stream(self, encoding: Encoding, clips: Sequence[np.ndarray], head: str | None = None) -> Encoding:
        """``encoding`` plus the frozen external audio stream of ``head`` (PhonMatchNet with
        ``pretrained_stream: gse`` or ``hf:...``) computed on ``clips``, the audio of the encoding's
        rows in order; unchanged for a head without one. A stream has its own frame grid and
        context, so windows get theirs from their own audio rather than from a slice."""
        module = self.head(head)
        if module.stream is None:
            return encoding
        return replace(encoding, **stream_kwargs(module, *_pad(clips)))

    @torch.inference_mode()
    def cut(self, encoding: Encoding, clips: Tensor, starts: Tensor, lengths: Tensor) -> Encoding:
        """Windows of encoded clips: window i is samples [starts[i], starts[i] + lengths[i]) of
        clip ``clips[i]``, with ``starts`` on the encoder frame grid (multiples of
        ``frame_samples``). It gets the frames and fbank frames that encoding the window alone
        would give, in number and position; the fbank is frame-local, so it is the same (but for
        the pretrained front end's centred edge frames, which see the real neighbouring audio
        instead of a reflection), while the encoder's global attention lets the frames see the
        whole clip around the window."""
        if bool((starts % self.frame_samples != 0).any()):
            raise ValueError(f"window starts must be multiples of {self.frame_samples} samples")
        feat_lengths = num_frames(lengths, self.acoustic.frontend_config).clamp(min=1)
        enc_lengths = self.acoustic.encoder.output_lengths(feat_lengths).clamp(min=1)
        stride = self.acoustic.encoder.subsampling_factor  # fbank frames per encoder frame
        first = starts // self.frame_samples
        if bool((first + enc_lengths > encoding.audio_lengths[clips]).any()):
            raise ValueError("a window reaches past the end of its clip")
        return Encoding(_take(encoding.audio, clips, first, enc_lengths), enc_lengths,
                        _take(encoding.feats, clips, first * stride, feat_lengths), feat_lengths,
                        _take(encoding.log_probs, clips, first, enc_lengths))

    def _pair_batch(self, encoding: Encoding, keywords: Sequence[Keyword], clip_index: Tensor,
                    keyword_index: Tensor, head: str | None) -> PairBatch:
        """The one place that builds the heads' PairBatch: (encoded clip ``clip_index[p]``,
        keyword ``keywords[keyword_index[p]]``) for every pair p, with what the head reads."""
        head_module = self.head(head)
        text = nn.utils.rnn.pad_sequence([k.vectors for k in keywords], batch_first=True)
        ids = nn.utils.rnn.pad_sequence([torch.tensor(encode(k.phonemes)) for k in keywords], batch_first=True)
        text_lengths = torch.tensor([len(k.phonemes) for k in keywords])
        extra = {"feats": encoding.feats[clip_index], "feat_lengths": encoding.feat_lengths[clip_index]} \
            if head_module.needs_feats else {}
        if head_module.needs_log_probs:
            extra["log_probs"] = encoding.log_probs[clip_index]
            extra["variant_ids"] = _variant_ids(keywords)[keyword_index]
        if head_module.stream is not None:
            if encoding.stream is None:
                raise ValueError(f"head {head or self.default_head!r} reads an audio stream: add it with with_stream()")
            extra |= {"stream": encoding.stream[clip_index], "stream_lengths": encoding.stream_lengths[clip_index]}
        return PairBatch(audio=encoding.audio[clip_index], audio_lengths=encoding.audio_lengths[clip_index],
                         text=text[keyword_index], text_lengths=text_lengths[keyword_index],
                         phoneme_ids=ids[keyword_index], **extra).to(encoding.audio.device)

    @torch.inference_mode()
    def score_pairs(self, encoding: Encoding, keywords: Sequence[Keyword], clip_index: Tensor,
                    keyword_index: Tensor, head: str | None = None) -> np.ndarray:
        """Scores in [0, 1] (P,) of the pairs (encoded clip ``clip_index[p]``, keyword
        ``keywords[keyword_index[p]]``)."""
        batch = self._pair_batch(encoding, keywords, clip_index, keyword_index, head)
        return self.head(head).score(batch).float().cpu().numpy()

    @torch.inference_mode()
    def locate_pairs(self, encoding: Encoding, keywords: Sequence[Keyword], clip_index: Tensor,
                     keyword_index: Tensor, head: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a head that locates keywords (``Head.locates``: the CTC search): the pairs' scores
        in [0, 1] and the first and last encoder frame of each keyword's best path (-1 where no
        path fits), (P,) each."""
        module = self.head(head)
        if not module.locates:
            raise ValueError(f"head {head or self.default_head!r} scores windows; it does not locate keywords")
        found = module.search(self._pair_batch(encoding, keywords, clip_index, keyword_index, head))
        scores = torch.sigmoid(module.calibrate(found.score))
        return scores.float().cpu().numpy(), found.start.cpu().numpy(), found.end.cpu().numpy()

    def score_segments(self, segments: Sequence[np.ndarray], keywords: Sequence[Keyword],
                       head: str | None = None) -> np.ndarray:
        """Scores in [0, 1] of every keyword against every segment, each scored whole:
        (len(segments), len(keywords))."""
        S, K = len(segments), len(keywords)
        if not S or not K:
            return np.zeros((S, K), dtype=np.float32)
        encoding = self.with_stream(self.encode(segments), segments, head)
        scores = self.score_pairs(encoding, keywords, torch.arange(S).repeat_interleave(K), torch.arange(K).repeat(S), head)
        return scores.reshape(S, K)


def _variant_ids(keywords: Sequence[Keyword]) -> Tensor:
    """(K, R, m') phoneme ids of every pronunciation of each keyword, zero-padded."""
    rows = max(len(k.variants or (k.phonemes,)) for k in keywords)
    width = max(len(v) for k in keywords for v in (k.variants or (k.phonemes,)))
    out = torch.zeros(len(keywords), rows, width, dtype=torch.long)
    for i, k in enumerate(keywords):
        for j, v in enumerate(k.variants or (k.phonemes,)):
            out[i, j, : len(v)] = torch.tensor(encode(v))
    return out


def _pad(clips: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Zero-padded waveforms (B, N) and their lengths (B,)."""
    waves = torch.zeros(len(clips), max(len(c) for c in clips))
    for i, c in enumerate(clips):
        waves[i, : len(c)] = torch.from_numpy(c)
    return waves, torch.tensor([len(c) for c in clips])


def _take(x: Tensor, rows: Tensor, first: Tensor, lengths: Tensor) -> Tensor:
    """Frames [first[i], first[i] + lengths[i]) of x[rows[i]], zero-padded: (len(rows), max length, ...)."""
    steps = torch.arange(int(lengths.max()))
    index = (first[:, None] + steps).clamp(max=x.shape[1] - 1)
    valid = (steps < lengths[:, None]).to(x.dtype)
    return x[rows[:, None], index] * valid.reshape(*valid.shape, *[1] * (x.dim() - 2))
