"""P2V quality: how well the global vectors classify held-out local vectors.

    python -m evaluation.p2v_report --acoustic exp/ctc/best_model.pt --p2v exp/p2v.pt \
        --manifest data/synth/test.jsonl --out exp/p2v_report

Reports nearest-global-vector phoneme accuracy (cosine), how often the nearest vector is another
stress variant of the right vowel, and a 2-D PCA map of local vectors coloured by phoneme.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from openkws.align import AlignStats, align_corpus
from openkws.checkpoint import atomic_write_text
from openkws.data.manifest import read_manifest
from openkws.models.acoustic import load_acoustic
from openkws.models.p2v import P2V, LocalVectors, local_vectors
from openkws.text import PHONEMES, REAL_PHONEMES, strip_stress


def evaluate_p2v(p2v: P2V, local: LocalVectors) -> dict:
    # candidates: phonemes with vectors of their own (backed-off rows are copies, they would tie)
    real = torch.tensor([PHONEMES.index(p) for p in REAL_PHONEMES if p not in p2v.backoff])
    table = torch.nn.functional.normalize(p2v.table[real], dim=1)
    sims = torch.nn.functional.normalize(local.vectors, dim=1) @ table.T
    predicted = real[sims.argmax(1)]
    correct = predicted == local.ids
    stress_only = torch.tensor([not c and strip_stress(PHONEMES[int(t)]) == strip_stress(PHONEMES[int(p)])
                                for c, t, p in zip(correct.tolist(), local.ids, predicted)])
    base_correct = correct | stress_only
    confusions = Counter((PHONEMES[int(t)], PHONEMES[int(p)]) for t, p, c in zip(local.ids, predicted, correct) if not c)
    return {"n_local_vectors": int(len(correct)), "accuracy": float(correct.float().mean()),
            "accuracy_ignoring_stress": float(base_correct.float().mean()),
            "stress_confusion_rate": float(stress_only.float().mean()),
            "top_confusions": [[t, p, n] for (t, p), n in confusions.most_common(15)]}


def plot_local_vectors(local: LocalVectors, path: Path, max_points: int = 4000, top_phonemes: int = 12) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    common = [p for p, _ in Counter(local.ids.tolist()).most_common(top_phonemes)]
    keep = torch.isin(local.ids, torch.tensor(common)).nonzero().flatten()[:max_points]
    x = local.vectors[keep]
    x = x - x.mean(0)
    _, _, v = torch.pca_lowrank(x, q=2, center=False)
    xy = (x @ v[:, :2]).numpy()
    fig, ax = plt.subplots(figsize=(8, 7))
    for i, pid in enumerate(common):
        sel = (local.ids[keep] == pid).numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.5, label=PHONEMES[pid], color=plt.cm.tab20(i % 20))
    ax.legend(markerscale=4, fontsize=8, ncol=2)
    ax.set_title(f"P2V local vectors (PCA), {len(common)} most frequent phonemes")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--acoustic", required=True)
    ap.add_argument("--p2v", required=True)
    ap.add_argument("--manifest", required=True, help="held-out utterances (not used to build the table)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-utts", type=int, default=1000)
    ap.add_argument("--max-per", type=float, default=0.5, help="skip utterances above this greedy PER")
    args = ap.parse_args(argv)
    model = load_acoustic(args.acoustic)
    p2v = P2V.load(args.p2v)
    utts = read_manifest(args.manifest)[: args.max_utts]
    stats = AlignStats()
    local = local_vectors(align_corpus(model, utts, max_per=args.max_per, stats=stats))
    report = {**evaluate_p2v(p2v, local), "alignment": vars(stats), "coverage": p2v.coverage()}
    out = Path(args.out)
    atomic_write_text(out / "p2v_report.json", json.dumps(report, indent=2))
    plot_local_vectors(local, out / "p2v_pca.png")
    print(json.dumps({k: v for k, v in report.items() if k not in ("coverage", "top_confusions")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
