"""Contrastive objectives shared by the heads: InfoNCE, GE2E-KWS (ALGORITHMS.md §D.2) and the
centroid scoring of the enrolment-by-example evaluation mode."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def info_nce(anchors: Tensor, candidates: Tensor, positive_mask: Tensor, tau: float,
             negative_mask: Tensor | None = None) -> Tensor:
    """InfoNCE over cosine similarities s = cos(anchor, candidate) / tau.

    Each (anchor i, positive p) pair contributes -log(e^{s_ip} / (e^{s_ip} + sum_{n in neg_i}
    e^{s_in})): other positives are not in the denominator (CLAD's form, §C.2). The loss is the
    mean over an anchor's positives, then over the anchors that have at least one positive.
    ``negative_mask`` (N, M) defaults to ``~positive_mask``; cells in neither mask (e.g. an
    anchor against itself) are ignored. anchors (N, D), candidates (M, D), masks (N, M) bool.
    """
    if negative_mask is None:
        negative_mask = ~positive_mask
    sim = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T / tau
    neg_lse = _masked_logsumexp(sim, negative_mask).unsqueeze(-1)
    per_pair = torch.logaddexp(sim, neg_lse) - sim  # -log softmax of s_ip against the negatives
    n_pos = positive_mask.sum(-1)
    per_anchor = (per_pair * positive_mask).sum(-1) / n_pos.clamp(min=1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return sim.sum() * 0.0  # keeps the graph (and DDP) happy when nothing applies
    return per_anchor[has_pos].mean()


def _masked_logsumexp(x: Tensor, mask: Tensor) -> Tensor:
    """logsumexp over the True cells of each row; -inf for a row with none. Unlike a plain
    masked_fill(-inf) it has finite gradients for such rows (no 0 * NaN in backward)."""
    has_any = mask.any(-1, keepdim=True)
    out = x.masked_fill(has_any & ~mask, float("-inf")).logsumexp(-1)
    return out.masked_fill(~has_any.squeeze(-1), float("-inf"))


def alternate_enrolment(class_ids: Tensor) -> Tensor:
    """(N,) bool: within each class, the 1st, 3rd, 5th ... occurrence enrols, the rest test
    (GE2E-KWS's even/odd split of each phrase's utterances)."""
    _, cls = torch.unique(class_ids, return_inverse=True)
    one_hot = F.one_hot(cls).long()
    rank = (one_hot.cumsum(0) * one_hot).sum(-1) - 1  # occurrence index within its class
    return rank % 2 == 0


def ge2e_kws_loss(embeddings: Tensor, class_ids: Tensor, scale: Tensor | float = 1.0,
                  enrol_mask: Tensor | None = None) -> Tensor:
    """GE2E-KWS: each class's enrolment centroid against all test embeddings.

    L(c_k) = log sum_{n: other classes} e^{S(c_k, n)} - log sum_{p: class k} e^{S(c_k, p)}, with
    S = scale * cos; averaged over the classes that have an enrolment centroid, a positive and a
    negative test clip. (A bias b in S = w cos + b cancels exactly, so there is none.)
    embeddings (N, D), class_ids (N,); ``enrol_mask`` (N,) bool defaults to
    ``alternate_enrolment(class_ids)``.
    """
    if enrol_mask is None:
        enrol_mask = alternate_enrolment(class_ids)
    _, cls = torch.unique(class_ids, return_inverse=True)
    emb = F.normalize(embeddings, dim=-1)
    one_hot = F.one_hot(cls).to(emb.dtype)  # (N, K)
    enrol = one_hot * enrol_mask[:, None]
    centroids = F.normalize(enrol.T @ emb, dim=-1)  # (K, D): the mean's direction
    test = ~enrol_mask
    sim = scale * centroids @ emb[test].T  # (K, N_test)
    pos = one_hot[test].T.bool()
    neg = ~pos
    valid = (enrol.sum(0) > 0) & pos.any(-1) & neg.any(-1)
    if not bool(valid.any()):
        return embeddings.sum() * 0.0
    lse_neg = _masked_logsumexp(sim, neg)
    lse_pos = _masked_logsumexp(sim, pos)
    return (lse_neg - lse_pos)[valid].mean()


class GE2EKWSLoss(nn.Module):
    """GE2E-KWS with a learnable scale w > 0 (kept positive as exp of a parameter, init 10).

    Call with X phrases x Y utterances as (X, Y, D) (utterances 0, 2, 4, ... of each phrase
    enrol, 1, 3, 5, ... test), or with (N, D) embeddings and their class ids (N,).
    """

    def __init__(self, init_scale: float = 10.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def forward(self, embeddings: Tensor, class_ids: Tensor | None = None) -> Tensor:
        if embeddings.dim() == 3:
            x, y, _ = embeddings.shape
            class_ids = torch.arange(x, device=embeddings.device).repeat_interleave(y)
            embeddings = embeddings.flatten(0, 1)
        elif class_ids is None:
            raise ValueError("GE2EKWSLoss: (N, D) embeddings need class_ids")
        return ge2e_kws_loss(embeddings, class_ids, self.log_scale.exp())


def enrolment_scores(enrol_embs: Tensor, test_embs: Tensor) -> Tensor:
    """Cosine of the enrolment centroid (mean of the L2-normalised enrolment embeddings (N, d))
    with each test embedding (M, d) -> (M,)."""
    centroid = F.normalize(F.normalize(enrol_embs, dim=-1).mean(0), dim=-1)
    return F.normalize(test_embs, dim=-1) @ centroid
