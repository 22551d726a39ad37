"""The ``ctc`` head: training-free keyword search over the acoustic model's CTC posteriors.

Each (clip, keyword) pair is scored by :class:`openkws.models.ctc_search.CTCKeywordSearch`: the
best CTC path of the keyword (any of its pronunciations) with a free start and end inside the
clip, against the unconstrained best path over the same frames. The raw score (<= 0; 0 = the
keyword is the model's best reading of its span) becomes a logit by a logistic calibration,
``logit = scale * raw + bias``, fitted on dev pairs (:func:`fit_calibration`) and stored in the
head's config, so the model file carries it like the other heads' weights.

The head has no trainable parameters; it reads ``PairBatch.log_probs`` and
``PairBatch.variant_ids`` and never the encoder frames or the P2V vectors. Pairs that share a
clip or a keyword are searched once (the search is batched clips x keywords).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from openkws.models.ctc_search import CTCKeywordSearch, SearchResult
from openkws.models.heads import Head, PairBatch, group_rows, register_head


@dataclass
class CTCHeadConfig:
    normalisation: str = "token"  # "token" | "frame" | "posterior" (openkws.models.ctc_search)
    stress_insensitive: bool = True
    scale: float = 4.0  # logistic calibration of the raw score: logit = scale * raw + bias
    bias: float = 2.0


@register_head
class CTCSearchHead(Head):
    name = "ctc"
    config_class = CTCHeadConfig
    needs_log_probs = True
    locates = True  # the spotter searches its whole encoder passes rather than sliding windows
    trainable = False

    def __init__(self, cfg: CTCHeadConfig, d_model: int = 144):
        super().__init__()
        self.cfg = cfg
        self.searcher = CTCKeywordSearch(cfg.normalisation, cfg.stress_insensitive)

    def search(self, batch: PairBatch) -> SearchResult:
        """The search result of every pair (fields (B,)): raw score, span (encoder frames), variant."""
        batch.require("log_probs")
        variants = batch.variant_ids if batch.variant_ids is not None else batch.phoneme_ids[:, None]
        clip_of, clip_first = batch.clip_groups()
        keyword_of, keyword_first = group_rows(variants.flatten(1))
        keywords = [[row[row > 0].tolist() for row in variants[i] if bool((row > 0).any())]
                    for i in keyword_first.tolist()]
        result = self.searcher(batch.log_probs[clip_first], batch.audio_lengths[clip_first], keywords)
        return SearchResult(*(getattr(result, f)[clip_of, keyword_of]
                              for f in ("score", "loglik", "start", "end", "variant")))

    def calibrate(self, raw: Tensor) -> Tensor:
        """Logits of raw search scores."""
        return self.cfg.scale * raw + self.cfg.bias

    def forward(self, batch: PairBatch) -> Tensor:
        return self.calibrate(self.search(batch).score)

    def loss(self, batch: PairBatch):
        raise ValueError("the ctc head is training-free: calibrate it with fit_calibration() instead")


def fit_calibration(raw: np.ndarray, labels: np.ndarray, l2: float = 1e-3) -> tuple[float, float]:
    """(scale, bias) of the logistic regression of ``labels`` on raw search scores (Newton steps,
    a little L2 so that separable dev data gives finite values)."""
    x = np.clip(np.asarray(raw, dtype=np.float64), -50.0, 0.0)
    y = np.asarray(labels, dtype=np.float64)
    if len(np.unique(y)) != 2:
        raise ValueError("calibration needs both positive and negative pairs")
    X = np.stack([x, np.ones_like(x)], 1)
    w = np.array([1.0, 0.0])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + l2 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])
