"""CED verifier (ALGORITHMS.md §A.5): cosine matrix -> DSP mask -> agreement matrix -> GRU -> logit.

C = cos(F, E) (B, m, n); M = DSP partition of the audio frames into one segment per phoneme
(a constant: hard argmax, no gradient); A = (C ⊙ M) · E (B, m, d), row i a similarity-weighted
sum of the frames aligned to phoneme i; one GRU over the m rows, its last valid state -> a small
feed-forward net -> logit, trained with BCE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from openkws.models.dsp import partition_batch
from openkws.models.heads import Head, PairBatch, binary_stats, last_state, register_head


@dataclass
class CEDConfig:
    hidden: int = 128  # GRU size
    ff_hidden: int = 64  # feed-forward layer between the GRU state and the logit
    dropout: float = 0.1
    # "count": divide each row of A by its segment's frame count, so A is a similarity-weighted
    # *mean* and its scale does not grow with segment duration; "none": the paper's plain sum.
    row_norm: str = "count"


@register_head
class CED(Head):
    name = "ced"
    config_class = CEDConfig

    def __init__(self, cfg: CEDConfig, d_model: int):
        super().__init__()
        if cfg.row_norm not in ("count", "none"):
            raise ValueError(f"ced.row_norm must be 'count' or 'none', got {cfg.row_norm!r}")
        self.cfg = cfg
        self.gru = nn.GRU(d_model, cfg.hidden, batch_first=True)
        self.ff = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.ff_hidden),
                                nn.ReLU(), nn.Linear(cfg.ff_hidden, 1))

    def agreement(self, batch: PairBatch) -> Tensor:
        """A (B, m, d); rows past an item's text length are zero."""
        sim = F.normalize(batch.text, dim=-1) @ F.normalize(batch.audio, dim=-1).transpose(1, 2)
        mask = partition_batch(sim.detach(), batch.text_lengths, batch.audio_lengths)
        weights = sim * mask  # padded cells are False in the mask, so padding never leaks in
        if self.cfg.row_norm == "count":
            weights = weights / mask.sum(-1, keepdim=True).clamp(min=1)
        return weights @ batch.audio

    def forward(self, batch: PairBatch) -> Tensor:
        state = last_state(self.gru, self.agreement(batch), batch.text_lengths)
        return self.ff(state).squeeze(-1)

    def loss(self, batch: PairBatch) -> tuple[Tensor, dict[str, float]]:
        batch.require("labels")
        logits = self(batch)
        loss = F.binary_cross_entropy_with_logits(logits, batch.labels)
        return loss, {"loss": loss.item(), **binary_stats(logits.detach(), batch.labels)}
