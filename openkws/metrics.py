"""Evaluation metrics: token edit distance / PER, ROC AUC, EER and operating thresholds.

Detection scores follow one convention: higher means "keyword present", and a trial is
accepted when score >= threshold. Labels are 1 for positive (keyword present), 0 for negative.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Token-level Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def error_rate(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> float:
    """Corpus error rate (e.g. PER): total edits / total reference tokens."""
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("references hold no tokens; the error rate is undefined")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / total


def _check_trials(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to 1-D int labels in {0, 1} and float64 scores."""
    labels, scores = (
        np.asarray(x.detach().cpu() if hasattr(x, "detach") else x) for x in (labels, scores)
    )
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D, got shapes {labels.shape} and {scores.shape}"
        )
    if len(labels) != len(scores):
        raise ValueError(f"got {len(labels)} labels but {len(scores)} scores")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, got values {np.unique(labels)[:10].tolist()}")
    labels = labels.astype(np.int64)
    if labels.min(initial=1) != 0 or labels.max(initial=0) != 1:
        raise ValueError("need both positive (1) and negative (0) trials")
    scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"scores must be finite; {int((~np.isfinite(scores)).sum())} are not")
    return labels, scores


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (ties count half)."""
    labels, scores = _check_trials(labels, scores)
    return float(roc_auc_score(labels, scores))


def _roc(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR, TPR and thresholds at every distinct score (no collinear points dropped)."""
    labels, scores = _check_trials(labels, scores)
    return roc_curve(labels, scores, drop_intermediate=False)


def eer(labels, scores) -> tuple[float, float]:
    """Equal error rate and its threshold.

    FNR = 1 - TPR falls and FPR rises along the ROC; the EER is where the two meet, linearly
    interpolated between the last ROC point with FNR > FPR and the first with FNR <= FPR, and the
    threshold is interpolated between those two points' thresholds.
    """
    fpr, tpr, thr = _roc(labels, scores)
    gap = (1.0 - tpr) - fpr  # > 0 at the first point (nothing accepted), < 0 at the last
    i = int(np.argmax(gap <= 0))
    frac = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = fpr[i - 1] + frac * (fpr[i] - fpr[i - 1])
    # sklearn's first threshold (+inf, "accept nothing") has no finite value to interpolate with;
    # the segment it starts is reached only at the next point's threshold.
    lo = thr[i] if i == 1 else thr[i - 1]
    return float(rate), float(lo + frac * (thr[i] - lo))


def threshold_at_far(labels, scores, far: float) -> float:
    """Lowest threshold (accept if score >= threshold) whose false-accept rate is <= far.

    Candidates are the observed scores; if even the highest one gives FAR > far, the smallest
    float above it is returned (nothing accepted, FAR = 0).
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    fpr, _, thr = _roc(labels, scores)
    i = int(np.nonzero(fpr <= far)[0][-1])  # fpr rises with the index, fpr[0] == 0
    return float(thr[i]) if i > 0 else float(np.nextafter(thr[1], np.inf))
