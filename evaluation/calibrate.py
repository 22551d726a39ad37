"""Calibrate a model file on real dev trials: the CTC search head's logistic mapping and every
head's default threshold (the equal-error point), so the defaults users get are chosen on real
speech, not on synthetic dev pairs.

    python -m evaluation.calibrate --model exp/<tag>/model.pt [--trials ../shared/data/realspeech/dev_trials.csv] \
        [--heads ctc,ced] [--default-head ctc] --out exp/<tag>/model.pt

Every dev trial (positives vs easy and hard negatives, pooled) is scored the way
``openkws.score`` scores it. The ``ctc`` head is first scored with the identity calibration
(its raw search score), a logistic regression of the labels on that score gives its
``scale``/``bias``, and it is scored again. Each head's threshold becomes its EER threshold on
these trials. The model is written to ``--out`` (atomically; it may be the input file).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.special import logit

from openkws.metrics import eer, roc_auc
from openkws.model import KWSModel
from openkws.models.ctc_head import fit_calibration

from evaluation.realspeech import DEFAULT_PACK, AudioCache, read_trials, score_trials


def calibrate(model: KWSModel, trials, heads: list[str], audio=None) -> dict:
    """Fit the ``ctc`` calibration and set ``model.thresholds`` of ``heads`` on ``trials``;
    returns what was measured (dev EER and threshold per head, the ctc scale and bias)."""
    audio = audio or AudioCache()
    labels = np.array([t.label for t in trials])
    report = {}
    for name in heads:
        head = model.head(name)
        if name == "ctc":
            head.cfg.scale, head.cfg.bias = 1.0, 0.0
            raw = logit(np.clip(score_trials(model, trials, name, audio), 1e-30, 1 - 1e-7))
            head.cfg.scale, head.cfg.bias = fit_calibration(raw, labels)
            report["ctc_calibration"] = {"scale": head.cfg.scale, "bias": head.cfg.bias}
        scores = score_trials(model, trials, name, audio)
        rate, threshold = eer(labels, scores)
        model.thresholds[name] = float(threshold)
        report[name] = {"dev_auc": roc_auc(labels, scores), "dev_eer": float(rate), "threshold": float(threshold),
                        "n_trials": len(trials)}
    return report


def best_head(report: dict) -> str:
    """The head with the highest pooled dev AUC (then the lowest dev EER)."""
    heads = [h for h in report if h != "ctc_calibration"]
    return max(heads, key=lambda h: (report[h]["dev_auc"], -report[h]["dev_eer"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--trials", default=str(DEFAULT_PACK / "dev_trials.csv"), help="dev trials (default: %(default)s)")
    ap.add_argument("--heads", default="", help="comma-separated heads (default: every head of the model)")
    ap.add_argument("--default-head", help="make this head the model's default; best: the calibrated head with "
                                           "the highest pooled dev AUC")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    model = KWSModel.load(args.model)
    heads = [h for h in args.heads.split(",") if h] or list(model.heads)
    report = calibrate(model, read_trials(args.trials), heads)
    if args.default_head:
        model.default_head = best_head(report) if args.default_head == "best" else args.default_head
        model.head(model.default_head)
    model.info["calibration"] = {**model.info.get("calibration", {}), "trials": args.trials, **report}  # heads not named keep theirs
    model.save(args.out)
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out} (default head {model.default_head})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
