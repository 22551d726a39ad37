"""Scoring protocols, metrics report, results.json schema and plots."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from evaluation import report as report_mod
from evaluation.protocols import Trial, trials
from evaluation.report import PUBLISHED, batch_eer, compute_metrics, read_scores, report
from openkws.metrics import eer, roc_auc

PUBLISHED_CSV = Path("/work/shared/research/published_results.csv")


def _row(anchor, comp, kind, at="cat", ct="cat", cls=1):
    return {"anchor": anchor, "anchor_spk": "1", "anchor_text": at, "anchor_dur": 0.6, "comparison": comp,
            "comparison_spk": "2", "comparison_text": ct, "comparison_dur": 0.6, "type": kind,
            "target": int(kind == "diffspk_positive"), "class": cls}


# P = 2 positive, E = 3 easy-negative, H = 1 hard-negative rows
ROWS = [_row("a1", "c1", "diffspk_positive"), _row("a2", "c2", "diffspk_positive"),
        _row("a1", "e1", "diffspk_easyneg", ct="dog"), _row("a1", "e2", "diffspk_easyneg", ct="sun"),
        _row("a2", "e3", "diffspk_easyneg", ct="red", cls=1),
        _row("a1", "h1", "diffspk_hardneg", ct="bat")]


def _count(ts, split, label=None):
    return sum(t.split == split and (label is None or t.label == label) for t in ts)


def test_pooled_protocol():
    ts = trials(ROWS)
    assert _count(ts, "easy") == 2 * (2 + 3) and _count(ts, "hard") == 2 * (2 + 1)
    assert _count(ts, "easy", 1) == _count(ts, "hard", 1) == 2 * 2  # positives shared, both directions
    assert Trial("c1", "cat", 1, "easy", 1) in ts and Trial("a1", "cat", 1, "easy", 1) in ts
    assert Trial("e1", "cat", 0, "easy", 1) in ts and Trial("a1", "dog", 0, "easy", 1) in ts
    assert Trial("h1", "cat", 0, "hard", 1) in ts and Trial("a1", "bat", 0, "hard", 1) in ts
    assert not any(t.text == "bat" for t in ts if t.split == "easy")


def test_phonmatchnet_protocol():
    ts = trials(ROWS, "phonmatchnet")
    assert _count(ts, "easy") == 4 * 3 and _count(ts, "hard") == 4 * 1
    assert _count(ts, "easy", 1) == 2 * 3 and _count(ts, "hard", 1) == 2
    assert not {"c1", "c2"} & {t.audio for t in ts}  # positive rows are dropped
    assert set(ts[-4:]) == {Trial("a1", "cat", 1, "hard", 1), Trial("a1", "bat", 0, "hard", 1),
                            Trial("h1", "bat", 1, "hard", 1), Trial("h1", "cat", 0, "hard", 1)}


def test_clap_protocol_and_errors():
    ts = trials(ROWS, "clap")
    assert _count(ts, "easy") == 2 + 3 and _count(ts, "hard") == 2 + 1
    assert all(t.text == "cat" for t in ts)  # anchor text against the comparison clip
    with pytest.raises(ValueError, match="unknown protocol 'pmn'.*pooled, phonmatchnet, clap"):
        trials(ROWS, "pmn")
    with pytest.raises(ValueError, match="unknown type 'samespk_positive'"):
        trials([_row("a", "b", "samespk_positive")])


# --------------------------------------------------------------------------- report

def _records(seed=0, n=400):
    """Two heads: a good one and a chance-level one, easy/hard splits, classes 1 and 2."""
    rng = np.random.default_rng(seed)
    recs = []
    for head, sep in (("ced", 2.0), ("random", 0.0)):
        for split in ("easy", "hard"):
            for i in range(n):
                label = i % 2
                recs.append({"audio": f"u{i}", "text": "cat", "label": label, "split": split,
                             "class": 1 + i % 4 // 2, "score": float(rng.normal(sep * label, 1.0)),
                             "head": head})
    return recs


def test_known_auc_and_eer():
    # Negatives 0.1 0.2 0.4 0.6, positives 0.3 0.5 0.8 0.9: 2 + 3 + 4 + 4 = 13 of 16 (pos, neg)
    # pairs ordered -> AUC 13/16;
    # at threshold 0.5 FPR = FNR = 1/4 -> EER 0.25.
    scores = [0.1, 0.2, 0.4, 0.6, 0.3, 0.5, 0.8, 0.9]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    recs = [{"label": y, "score": s, "split": "easy", "head": "h", "class": 1} for y, s in zip(labels, scores)]
    m = compute_metrics(recs)["h"]["easy"]
    assert m["auc"] == pytest.approx(13 / 16) and m["eer"] == pytest.approx(0.25)
    assert m["n_trials"] == 8 and m["n_pos"] == 4 and m["by_class"]["1"]["auc"] == pytest.approx(13 / 16)


def test_batch_eer_matches_phonmatchnet_averaging():
    recs = _records()
    y = np.array([r["label"] for r in recs[:400]])
    x = np.array([r["score"] for r in recs[:400]])
    assert batch_eer(y, x, batch_size=10_000) == pytest.approx(eer(y, x)[0])  # one batch = pooled
    order = np.random.default_rng(7).permutation(400)
    want = np.mean([eer(y[i], x[i])[0] for i in np.array_split(order, [128, 256, 384])])
    assert batch_eer(y, x, batch_size=128, seed=7) == pytest.approx(want)  # last batch of 16 counts fully
    m = compute_metrics(recs, eer_mode="batch", batch_size=128)["ced"]["easy"]
    assert m["eer_mode"].startswith("mean of per-batch EERs (batch 128")


def test_report_writes_schema_tables_and_plots(tmp_path):
    recs = _records()
    results = report(recs, "synth", tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == results
    assert set(on_disk) == {"corpus", "protocol", "acoustic_init", "heads"} and on_disk["corpus"] == "synth"
    assert on_disk["acoustic_init"] == "scratch" and "pretrained" not in (tmp_path / "results.md").read_text()
    assert set(on_disk["heads"]) == {"ced", "random"}
    for head, by_split in on_disk["heads"].items():
        assert set(by_split) == {"easy", "hard"}
        for split, m in by_split.items():
            assert isinstance(m["auc"], float) and isinstance(m["eer"], float) and type(m["n_trials"]) is int
            assert 0 <= m["auc"] <= 1 and 0 <= m["eer"] <= 1 and m["n_trials"] == 400
            sel = [r for r in recs if r["head"] == head and r["split"] == split]
            assert m["auc"] == pytest.approx(roc_auc([r["label"] for r in sel], [r["score"] for r in sel]))
            assert set(m["by_class"]) == {"1", "2"} and m["by_class"]["1"]["n_trials"] == 200
    assert on_disk["heads"]["ced"]["easy"]["auc"] > 0.85 and on_disk["heads"]["random"]["hard"]["auc"] < 0.65
    md = (tmp_path / "results.md").read_text()
    assert "| ced |" in md and "paper, real LibriPhrase" in md and "protocol `pooled`" in md
    assert "| CED (Nishu et al., ICASSP 2024) (paper, real LibriPhrase) | 99.84 | 1.70 | 92.70 | 14.40 |" in md
    for kind in ("roc", "det", "hist"):
        for head in ("ced", "random"):
            png = tmp_path / f"{kind}_{head}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_score_files_csv_and_jsonl_agree(tmp_path):
    recs = _records(n=40)
    jsonl = tmp_path / "scores.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with open(tmp_path / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(recs[0]))
        w.writeheader()
        w.writerows(recs)
    assert read_scores(jsonl) == read_scores(tmp_path / "scores.csv")
    report_mod.main(["--scores", str(jsonl), "--corpus", "toy", "--out", str(tmp_path / "out"),
                     "--protocol", "clap"])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["protocol"] == "clap" and results["heads"]["ced"]["easy"]["n_trials"] == 40


def test_bad_score_files(tmp_path):
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"label": 1, "split": "easy", "score": 0.5}\n')
    with pytest.raises(ValueError, match="s.jsonl:1: missing head"):
        read_scores(bad)
    bad.write_text('{"label": 2, "split": "easy", "score": 0.5, "head": "h"}\n')
    with pytest.raises(ValueError, match="s.jsonl:1: label must be 0/1"):
        read_scores(bad)
    with pytest.raises(ValueError, match="unknown score file type '.txt'"):
        read_scores(tmp_path / "s.txt")
    with pytest.raises(ValueError, match="head 'h', split 'easy': all 2 trials have the same label"):
        compute_metrics([{"label": 1, "score": 0.1, "split": "easy", "head": "h"}] * 2)


@pytest.mark.skipif(not PUBLISHED_CSV.exists(), reason="research notes not available")
def test_published_rows_match_the_research_table():
    with open(PUBLISHED_CSV, newline="") as f:
        table = list(csv.DictReader(f))
    keys = {"CMCD": "CMCD (Shin", "PhonMatchNet": "PhonMatchNet (Lee", "CED": "CED = Nishu"}
    for name, a, b, c, d in PUBLISHED:
        key = next(v for k, v in keys.items() if name.startswith(k))
        row = next(r for r in table if r["method"].startswith(key))
        got = [float(row[k].split()[0]) for k in ("LE_AUC", "LE_EER", "LH_AUC", "LH_EER")]
        assert got == [a, b, c, d]


def test_report_marks_a_pretrained_acoustic_model_and_puts_real_speech_first(tmp_path):
    realspeech = {"heads": {"ctc": {"easy": {"auc": 0.99, "eer": 0.05, "n_trials": 10}}}}
    results = report(_records(), "synth", tmp_path, acoustic_init="hama", realspeech=realspeech,
                     realspeech_md="# Real-speech evaluation\n")
    assert results["acoustic_init"] == "hama" and results["realspeech"] == realspeech
    md = (tmp_path / "results.md").read_text()
    assert "not comparable with published LibriPhrase numbers" in md
    assert md.index("Real-speech evaluation") < md.index("easy")
