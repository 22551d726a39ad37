"""The matcher-head contract: the padded pair batch every head consumes, the ``Head`` interface,
the registry (``HEADS``, ``build_head``) and the masking helpers the heads share.

A head never sees the acoustic encoder's weights: it gets the frozen encoder output E, the P2V
text vectors F, the phoneme ids, (for PhonMatchNet's conv stream) the normalised fbank and (for a
head with a frozen external audio stream, ``Head.stream``, e.g. Google's speech embedding) that
stream's features, all padded with lengths. ``forward`` gives one logit per pair, ``score`` its
sigmoid and ``loss`` the head's training objective plus a dict of float statistics for logging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from openkws.config import from_dict
from openkws.streams import AudioStream


@dataclasses.dataclass(kw_only=True)
class PairBatch:
    """B (audio, text) pairs, padded. Lengths count valid steps; padded steps may hold anything.

    audio (B, n, d) frozen encoder output (40 ms frames) + audio_lengths (B,);
    text (B, m, d) P2V vectors + text_lengths (B,); phoneme_ids (B, m) long, 0 = padding;
    feats (B, T, 80) normalised log-mel (10 ms) + feat_lengths (B,), needed by PhonMatchNet only;
    stream (B, S, D) the features of the head's frozen external audio stream (``Head.stream``;
    ``stream.frame_seconds`` per frame, t = 0 at the clip's first sample) + stream_lengths (B,),
    needed only by heads that have one (``openkws.streams.stream_kwargs`` computes both);
    log_probs (B, n, V) the acoustic model's CTC log-posteriors on the frames of ``audio`` (same
    lengths), needed only by heads that search them (``Head.needs_log_probs``: the CTC search),
    with variant_ids (B, R, m') long, every pronunciation of the text (phoneme ids, 0 = padding;
    an all-zero row is no variant), for the same heads (absent: phoneme_ids is the only one);
    labels (B,) float 1/0; phone_labels (B, m) float, 1 iff text phoneme k equals phoneme k of
    the audio's true transcription (all 1 for positives); keyword_ids (B,) long, the keyword the
    AUDIO contains (contrastive losses use it to know which pairs share content).
    Training needs the labels; inference only the inputs.
    """

    audio: Tensor
    audio_lengths: Tensor
    text: Tensor
    text_lengths: Tensor
    phoneme_ids: Tensor
    feats: Tensor | None = None
    feat_lengths: Tensor | None = None
    stream: Tensor | None = None
    stream_lengths: Tensor | None = None
    log_probs: Tensor | None = None
    variant_ids: Tensor | None = None
    labels: Tensor | None = None
    phone_labels: Tensor | None = None
    keyword_ids: Tensor | None = None

    def __post_init__(self) -> None:
        b = self.audio.shape[0] if self.audio.dim() == 3 else -1
        expect = {"audio": 3, "audio_lengths": 1, "text": 3, "text_lengths": 1, "phoneme_ids": 2,
                  "feats": 3, "feat_lengths": 1, "stream": 3, "stream_lengths": 1, "log_probs": 3, "variant_ids": 3, "labels": 1,
                  "phone_labels": 2, "keyword_ids": 1}
        for name, rank in expect.items():
            value = getattr(self, name)
            if value is None:
                continue
            if value.dim() != rank or value.shape[0] != b:
                raise ValueError(f"PairBatch.{name}: expected rank {rank} with batch size {b}, "
                                 f"got shape {tuple(value.shape)}")
        if self.phoneme_ids.shape[1] != self.text.shape[1]:
            raise ValueError(f"PairBatch: phoneme_ids {tuple(self.phoneme_ids.shape)} and text "
                             f"{tuple(self.text.shape)} disagree on m")
        for seq, lengths in (("feats", "feat_lengths"), ("stream", "stream_lengths")):
            if (getattr(self, seq) is None) != (getattr(self, lengths) is None):
                raise ValueError(f"PairBatch: {seq} and {lengths} come together")
        if self.log_probs is not None and self.log_probs.shape[1] != self.audio.shape[1]:
            raise ValueError(f"PairBatch: log_probs {tuple(self.log_probs.shape)} and audio "
                             f"{tuple(self.audio.shape)} disagree on n")
        for seq, lengths in (("audio", "audio_lengths"), ("text", "text_lengths"),
                             ("feats", "feat_lengths"), ("stream", "stream_lengths")):
            x, n = getattr(self, seq), getattr(self, lengths)
            if x is not None and b and (int(n.min()) < 1 or int(n.max()) > x.shape[1]):
                raise ValueError(f"PairBatch.{lengths} must lie in [1, {x.shape[1]}], "
                                 f"got {n.tolist()}")

    def __len__(self) -> int:
        return self.audio.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PairBatch:
        """A copy with every tensor on ``device``."""
        moved = {f.name: None if (v := getattr(self, f.name)) is None
                 else v.to(device, non_blocking=non_blocking) for f in dataclasses.fields(self)}
        return PairBatch(**moved)

    def select(self, index: Tensor) -> PairBatch:
        """The pairs at ``index`` (B',), e.g. one representative per distinct clip."""
        return PairBatch(**{f.name: None if (v := getattr(self, f.name)) is None else v[index]
                            for f in dataclasses.fields(self)})

    def clip_groups(self) -> tuple[Tensor, Tensor]:
        """Pairs that share an audio clip (CED-style batches pair each clip with several texts;
        inference pairs one clip with every keyword): each pair's clip index (B,) and each
        clip's first pair (C,). A clip is identified by its lengths and its first and last valid
        encoder frames (and fbank frames, when present), bit for bit: the encoder's global
        attention makes every frame depend on the whole clip, so distinct clips never share
        them, and this is far cheaper than comparing whole rows. The external stream's frames
        count too, when present (a head may read nothing else of the audio), and so do the CTC
        log-posteriors (all that the CTC search reads)."""
        rows = torch.arange(len(self), device=self.audio.device)
        parts = [self.audio_lengths[:, None], self.audio[:, 0], self.audio[rows, self.audio_lengths - 1]]
        if self.feats is not None:
            parts += [self.feat_lengths[:, None], self.feats[:, 0], self.feats[rows, self.feat_lengths - 1]]
        if self.stream is not None:
            parts += [self.stream_lengths[:, None], self.stream[:, 0], self.stream[rows, self.stream_lengths - 1]]
        if self.log_probs is not None:  # the CTC search reads nothing else
            parts += [self.log_probs[:, 0], self.log_probs[rows, self.audio_lengths - 1]]
        return group_rows(torch.cat([p.double() for p in parts], 1))  # float64 holds all exactly

    def require(self, *names: str) -> None:
        """Raise a clear error when a head needs a field the batch lacks (e.g. labels)."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"PairBatch lacks {', '.join(missing)}, which this head needs")


class Head(nn.Module):
    """Base class of the matcher heads. Subclasses set ``name`` and ``config_class`` and take
    ``(cfg, d_model)`` in their constructor.

    ``stream`` is the head's frozen external audio stream (an ``openkws.streams.AudioStream``, or
    None): a head that has one reads its features from ``PairBatch.stream``, which whoever builds
    the batch computes with it (ClipBank in training, ``stream_kwargs`` at inference). It is a
    plain attribute, not a submodule: no parameters, not in the state_dict, rebuilt from the
    head's config, and ``.to(device)`` leaves it alone."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    needs_feats: ClassVar[bool] = False  # reads PairBatch.feats (the fbank), not only E and F
    needs_log_probs: ClassVar[bool] = False  # reads PairBatch.log_probs (the CTC posteriors)
    locates: ClassVar[bool] = False  # has search(batch): finds where in the clip the keyword is
    trainable: ClassVar[bool] = True  # False: no loss, nothing to train (the CTC search)
    stream: AudioStream | None = None

    def forward(self, batch: PairBatch) -> Tensor:
        """Logits (B,), a score before the sigmoid."""
        raise NotImplementedError

    def loss(self, batch: PairBatch) -> tuple[Tensor, dict[str, float]]:
        """Training objective and float statistics for logging."""
        raise NotImplementedError

    @torch.no_grad()
    def score(self, batch: PairBatch) -> Tensor:
        """Probabilities in [0, 1] (B,). The caller picks train/eval mode."""
        return torch.sigmoid(self(batch))


HEADS: dict[str, type[Head]] = {}


def register_head(cls: type[Head]) -> type[Head]:
    HEADS[cls.name] = cls
    return cls


def build_head(name: str, cfg: Any = None, d_model: int = 144) -> Head:
    """Build head ``name`` from its config dataclass, a plain dict (unknown keys are errors) or
    None (defaults)."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; available: {sorted(HEADS)}")
    cls = HEADS[name]
    if not isinstance(cfg, cls.config_class):
        cfg = from_dict(cls.config_class, cfg, where=f"heads.{name}")
    return cls(cfg, d_model)


def num_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------- shared helpers

def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B, max_len) bool, True at valid steps."""
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def pad_sequences(seqs: Sequence[Tensor], value: float = 0.0) -> tuple[Tensor, Tensor]:
    """List of (L_i, ...) tensors -> padded (B, max L, ...) and lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    padded = nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=value)
    return padded, lengths


def pack(x: Tensor, lengths: Tensor) -> nn.utils.rnn.PackedSequence:
    """Pack a batch-first padded sequence so RNNs never read (or run over) padding."""
    return pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)


def last_state(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> Tensor:
    """Output (B, H) of a unidirectional RNN's top layer at each item's last valid step.

    Runs on the padded batch and gathers: a causal RNN's output at step len-1 never sees the
    padding after it, and packing (whose backward slices the whole batch once per time step) is
    an order of magnitude slower on CPU for long sequences.
    """
    out, _ = rnn(x)
    return out[torch.arange(len(x), device=x.device), lengths.to(x.device) - 1]


def group_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Group identical rows of (B, K): each row's group index (B,) and each group's first row."""
    _, inverse = torch.unique(rows, dim=0, return_inverse=True)
    index = torch.arange(len(rows), device=rows.device)
    first = torch.full((int(inverse.max()) + 1,), len(rows), device=rows.device)
    return inverse, first.scatter_reduce(0, inverse, index, reduce="amin")


def masked_bce(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Mean BCE-with-logits over the True cells of ``mask``."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def binary_stats(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy at probability 0.5 (logit 0)."""
    return {"acc": float(((logits > 0).float() == labels).float().mean())}


# Importing the head modules fills HEADS (each registers itself; they import the names above,
# which already exist when this line runs, whichever module is imported first).
from openkws.models import ced, clad, ctc_head, phonmatch  # noqa: F401
