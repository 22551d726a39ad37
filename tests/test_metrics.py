"""Edit distance / PER, AUC, EER and threshold-at-FAR."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from openkws.metrics import edit_distance, eer, error_rate, roc_auc, threshold_at_far


def test_edit_distance():
    assert edit_distance([], []) == 0
    assert edit_distance(["AH"], []) == 1
    assert edit_distance([], ["AH", "B"]) == 2
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance(["T", "ER1", "N"], ["T", "ER1", "N"]) == 0
    assert edit_distance(["T", "ER1", "N"], ["T", "N", "AA1"]) == 2  # delete ER1, insert AA1
    assert edit_distance([1, 2, 3, 4], [4, 3, 2, 1]) == 4


def test_error_rate():
    refs = [["T", "ER1", "N"], ["AA1", "N"]]
    hyps = [["T", "ER0", "N"], ["AA1", "N", "N"]]
    assert error_rate(refs, hyps) == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="hypotheses"):
        error_rate(refs, hyps[:1])
    with pytest.raises(ValueError, match="no tokens"):
        error_rate([[]], [["A"]])


def test_eer_extremes():
    labels = [0, 0, 0, 1, 1, 1]
    rate, thr = eer(labels, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert rate == 0.0 and 0.3 < thr <= 0.7
    rate, _ = eer(labels, [0.7, 0.8, 0.9, 0.1, 0.2, 0.3])
    assert rate == 1.0


def test_eer_hand_computed_crossing():
    # Negatives 0.1 0.2 0.4 0.6, positives 0.5 0.8 0.9 0.3 (accept if score >= thr).
    # thr 0.6: FPR 1/4, FNR 2/4; thr 0.5: FPR 1/4, FNR 1/4 -> the curves meet on a ROC point.
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.4, 0.6, 0.2, 0.5, 0.9, 0.3, 0.8]
    assert eer(labels, scores) == pytest.approx((0.25, 0.5))
    # Without positive 0.5: thr 0.6: FPR 1/4, FNR 1/3 (gap 1/12); thr 0.4: FPR 1/2, FNR 1/3
    # (gap -1/6). The crossing is 1/3 of the way: EER 1/4 + 1/3 * 1/4 = 1/3, thr 0.6 - 0.2/3.
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.4, 0.6, 0.2, 0.9, 0.3, 0.8]
    assert eer(labels, scores) == pytest.approx((1 / 3, 0.6 - 0.2 / 3))


def test_eer_ties_and_first_segment():
    labels = [1, 1, 0, 0]
    scores = [0.9, 0.6, 0.6, 0.1]  # a tie: the point at thr 0.6 moves FPR and FNR together
    # thr 0.9: FPR 0, FNR 1/2 (gap 1/2); thr 0.6: FPR 1/2, FNR 0 (gap -1/2): halfway, EER 1/4.
    assert eer(labels, scores) == pytest.approx((0.25, 0.75))
    labels = [1, 0, 1, 1]
    scores = [0.5, 0.5, 0.4, 0.3]
    # The first ROC step, from "accept nothing" (FPR 0, FNR 1, gap 1) to thr 0.5 (FPR 1, FNR 2/3,
    # gap -1/3), already crosses, 3/4 of the way: EER 3/4; that segment's only threshold is 0.5.
    assert eer(labels, scores) == pytest.approx((0.75, 0.5))


def test_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = rng.normal(size=500) + labels
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert roc_auc(torch.tensor(labels), torch.tensor(scores)) == pytest.approx(
        roc_auc_score(labels, scores)
    )
    assert roc_auc([0, 1], [0.2, 0.8]) == 1.0
    assert roc_auc([0, 1], [0.8, 0.2]) == 0.0


def test_threshold_at_far():
    labels = [0, 0, 0, 0, 1, 1]
    scores = [0.1, 0.3, 0.5, 0.7, 0.6, 0.9]
    assert threshold_at_far(labels, scores, 0.25) == pytest.approx(0.6)  # accepts only neg 0.7
    assert threshold_at_far(labels, scores, 0.5) == pytest.approx(0.5)
    assert threshold_at_far(labels, scores, 1.0) == pytest.approx(0.1)
    top = threshold_at_far([0, 1], [0.9, 0.2], 0.0)  # the top score is a negative
    assert top > 0.9 and top == np.nextafter(0.9, 1.0)
    assert threshold_at_far(labels, scores, 0.0) == pytest.approx(0.9)


def test_validation_errors():
    with pytest.raises(ValueError, match="both"):
        eer([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        eer([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="1-D"):
        roc_auc([[0, 1]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="far"):
        threshold_at_far([0, 1], [0.1, 0.2], 1.5)
