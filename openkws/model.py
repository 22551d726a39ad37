"""The inference model: acoustic encoder + P2V text encoder + matcher heads, in one file.

File format (``torch.load(weights_only=True)``):
    {"format": "openkws/1", "config": {"acoustic": ..., "heads": {name: cfg}, "default_head": name,
     "thresholds": {name: float}, "info": {...}}, "frontend": FbankConfig dict,
     "phonemes": [...], "p2v": P2V state, "state_dict": {"acoustic.*", "heads.<name>.*"}}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from openkws.checkpoint import MODEL_FORMAT, atomic_torch_save, load_model_file
from openkws.config import from_dict
from openkws.features import FbankConfig
from openkws.models.acoustic import AcousticConfig, AcousticModel
from openkws.models.heads import HEADS, PairBatch, build_head
from openkws.models.p2v import P2V
from openkws.text import PHONEMES, encode, parse_phonemes, to_phonemes

# CLAD's keyword window: phonemes x mean phoneme duration + margin (ALGORITHMS.md §C.3).
PHONEME_SECONDS = 0.09
WINDOW_MARGIN_SECONDS = 0.3
MIN_WINDOW_SECONDS = 0.5


@dataclass(frozen=True)
class Keyword:
    text: str
    phonemes: tuple[str, ...]
    vectors: torch.Tensor  # F (m, d)

    @property
    def window_seconds(self) -> float:
        """Length of the sliding window used to find this keyword in long audio."""
        return max(MIN_WINDOW_SECONDS, len(self.phonemes) * PHONEME_SECONDS + WINDOW_MARGIN_SECONDS)


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
        phonemes = tuple(pronunciation or to_phonemes(text))
        return Keyword(text, phonemes, self.p2v.encode(phonemes))

    def head(self, name: str | None = None) -> nn.Module:
        name = name or self.default_head
        if name not in self.heads:
            raise ValueError(f"model has no head {name!r}; available: {sorted(self.heads)}")
        return self.heads[name]

    # -- scoring -----------------------------------------------------------------------------
    @torch.no_grad()
    def score_segments(self, segments: Sequence[np.ndarray], keywords: Sequence[Keyword],
                       head: str | None = None) -> np.ndarray:
        """Scores in [0, 1] of every keyword against every segment: (len(segments), len(keywords))."""
        if not segments or not keywords:
            return np.zeros((len(segments), len(keywords)), dtype=np.float32)
        waves = torch.zeros(len(segments), max(len(s) for s in segments))
        lengths = torch.tensor([len(s) for s in segments])
        for i, s in enumerate(segments):
            waves[i, : len(s)] = torch.from_numpy(s)
        feats, feat_lengths = self.acoustic.features(waves, lengths)
        enc, enc_lengths = self.acoustic.encoder(feats, feat_lengths)
        enc_lengths, feat_lengths = enc_lengths.clamp(min=1), feat_lengths.clamp(min=1)
        S, K = len(segments), len(keywords)
        text = nn.utils.rnn.pad_sequence([k.vectors for k in keywords], batch_first=True)
        ids = nn.utils.rnn.pad_sequence([torch.tensor(encode(k.phonemes)) for k in keywords], batch_first=True)
        text_lengths = torch.tensor([len(k.phonemes) for k in keywords])
        seg = torch.arange(S).repeat_interleave(K)
        kw = torch.arange(K).repeat(S)
        batch = PairBatch(audio=enc[seg], audio_lengths=enc_lengths[seg], text=text[kw],
                          text_lengths=text_lengths[kw], phoneme_ids=ids[kw],
                          feats=feats[seg], feat_lengths=feat_lengths[seg])
        return self.head(head).score(batch).reshape(S, K).float().numpy()
