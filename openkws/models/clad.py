"""CLAD-style contrastive head (ALGORITHMS.md §C): pooled audio and text embeddings in one space.

audio E (B, n, d) -> BiGRU/BiLSTM -> attention pooling (α_t = softmax_t(wᵀh_t)) -> projection ->
L2 norm = g; text F (B, m, d) through an encoder of the same kind = h. The logit is a scaled
cosine w·cos(g, h) + b with learnable w > 0, so ``score`` is a calibrated probability.

loss = InfoNCE_at(τ_at) + α · InfoNCE_aa(τ_aa) + bce_weight · BCE(logit) [+ ge2e_weight · GE2E-KWS]
- audio–text: each distinct clip is an anchor; its positives are the distinct texts some
  positive pair joins to the clip's keyword, its negatives every other distinct text in the batch
  (confusable texts included); clips with no positive text in the batch are skipped.
- audio–audio: positives are the other clips of the same keyword, negatives clips of others.
Clips repeated across pairs (CED batching pairs each clip with several texts) and texts repeated
across pairs are embedded once and count once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_packed_sequence

from openkws.models.heads import (
    Head,
    PairBatch,
    binary_stats,
    group_rows,
    length_mask,
    pack,
    register_head,
)
from openkws.models.losses import GE2EKWSLoss, info_nce


@dataclass
class CLADConfig:
    rnn: str = "gru"  # "gru" | "lstm", bidirectional
    hidden: int = 64  # per direction
    num_layers: int = 1
    proj_dim: int = 64
    dropout: float = 0.1
    tau_at: float = 0.12
    tau_aa: float = 0.2
    aa_weight: float = 0.15  # α
    bce_weight: float = 0.1  # calibrates w, b (and adds the pairwise decision as a signal)
    ge2e_weight: float = 0.0  # > 0 adds GE2E-KWS over the clips (audio enrolment objective)
    init_scale: float = 10.0  # w
    init_bias: float = -5.0  # b


class SequenceEncoder(nn.Module):
    """(B, L, d) + lengths -> L2-normalised (B, proj_dim): BiRNN, attention pooling, projection."""

    def __init__(self, d_in: int, cfg: CLADConfig):
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cfg.rnn]
        self.rnn = rnn(d_in, cfg.hidden, cfg.num_layers, batch_first=True, bidirectional=True,
                       dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.attention = nn.Linear(2 * cfg.hidden, 1, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(2 * cfg.hidden, cfg.proj_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        # Packing keeps the backward direction from reading padding.
        h, _ = pad_packed_sequence(self.rnn(pack(x, lengths))[0], batch_first=True,
                                   total_length=x.shape[1])
        logits = self.attention(h).squeeze(-1).masked_fill(~length_mask(lengths, x.shape[1]), float("-inf"))
        pooled = (logits.softmax(-1).unsqueeze(-1) * h).sum(1)
        return F.normalize(self.proj(self.dropout(pooled)), dim=-1)


@register_head
class CLAD(Head):
    name = "clad"
    config_class = CLADConfig

    def __init__(self, cfg: CLADConfig, d_model: int):
        super().__init__()
        if cfg.rnn not in ("gru", "lstm"):
            raise ValueError(f"clad.rnn must be 'gru' or 'lstm', got {cfg.rnn!r}")
        self.cfg = cfg
        self.audio_encoder = SequenceEncoder(d_model, cfg)
        self.text_encoder = SequenceEncoder(d_model, cfg)
        self.log_scale = nn.Parameter(torch.tensor(math.log(cfg.init_scale)))
        self.bias = nn.Parameter(torch.tensor(cfg.init_bias))
        self.ge2e = GE2EKWSLoss() if cfg.ge2e_weight > 0 else None

    def embed_audio(self, audio: Tensor, lengths: Tensor) -> Tensor:
        """g (B, proj_dim), unit norm: for sliding windows and enrolment by example."""
        return self.audio_encoder(audio, lengths)

    def embed_text(self, text: Tensor, lengths: Tensor) -> Tensor:
        """h (B, proj_dim), unit norm: computed once per enrolled keyword."""
        return self.text_encoder(text, lengths)

    def similarity_logits(self, cos: Tensor) -> Tensor:
        return self.log_scale.exp() * cos + self.bias

    def _embed_distinct(self, batch: PairBatch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Embeddings of the distinct clips and texts, each row's group, and each group's first row."""
        clip, clip_first = batch.clip_groups()
        txt, txt_first = group_rows(batch.phoneme_ids)
        g = self.embed_audio(batch.audio[clip_first], batch.audio_lengths[clip_first])
        h = self.embed_text(batch.text[txt_first], batch.text_lengths[txt_first])
        return g, h, clip, txt, clip_first, txt_first

    def forward(self, batch: PairBatch) -> Tensor:
        g, h, clip, txt, _, _ = self._embed_distinct(batch)
        return self.similarity_logits((g[clip] * h[txt]).sum(-1))

    def loss(self, batch: PairBatch) -> tuple[Tensor, dict[str, float]]:
        batch.require("labels", "keyword_ids")
        g, h, clip, txt, clip_first, _ = self._embed_distinct(batch)
        logits = self.similarity_logits((g[clip] * h[txt]).sum(-1))
        clip_kw = batch.keyword_ids[clip_first]  # the keyword each distinct clip contains
        # Text u is positive for keyword k iff some positive pair joins them.
        pos = batch.labels > 0.5
        kw_pairs = (clip_kw[:, None] == batch.keyword_ids[pos][None, :]).float()  # (clips, P)
        text_pairs = F.one_hot(txt[pos], len(h)).float()  # (P, texts)
        at = info_nce(g, h, (kw_pairs @ text_pairs) > 0, self.cfg.tau_at)
        same = clip_kw[:, None] == clip_kw[None, :]
        eye = torch.eye(len(g), dtype=torch.bool, device=g.device)
        aa = info_nce(g, g, same & ~eye, self.cfg.tau_aa, negative_mask=~same)
        bce = F.binary_cross_entropy_with_logits(logits, batch.labels)
        loss = at + self.cfg.aa_weight * aa + self.cfg.bce_weight * bce
        stats = {"at": at.item(), "aa": aa.item(), "bce": bce.item()}
        if self.ge2e is not None:
            ge2e = self.ge2e(g, clip_kw)
            loss = loss + self.cfg.ge2e_weight * ge2e
            stats["ge2e"] = ge2e.item()
        return loss, {"loss": loss.item(), **stats, **binary_stats(logits.detach(), batch.labels)}

