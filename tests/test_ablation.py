"""evaluation.ablation: one table from several experiment folders."""

import json

import pytest

from evaluation import ablation


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_table_reads_synthetic_and_fsdd_results_and_marks_what_is_missing(tmp_path, capsys):
    before, after = tmp_path / "before", tmp_path / "after"
    _write(before / "results.json", {"heads": {"ced": {"easy": {"auc": 0.98, "eer": 0.074},
                                                       "hard": {"auc": 0.9783, "eer": 0.0799}}}})
    _write(before / "eval" / "fsdd.json", {"heads": {"ced": {"pooled": {"auc": 0.7606, "eer": 0.313}}}})
    _write(after / "heldout" / "results.json", {"heads": {"ced": {"hard": {"auc": 0.95, "eer": 0.1}}}})
    _write(after / "eval" / "fsdd.json", {"heads": {"ced": {"pooled": {"auc": 0.9, "eer": 0.15}},
                                                    "clad": {"pooled": {"auc": 0.8, "eer": 0.2}}}})
    out = tmp_path / "table.md"
    ablation.main(["baseline=" + str(before), "+aug=" + str(after), "--heads", "ced,clad,phonmatch",
                   "--out", str(out)])
    lines = out.read_text().splitlines()
    assert lines[2] == "| baseline | ced | - / - | - / - | 98.00 / 7.40 | 97.83 / 7.99 | - / - | 76.06 / 31.30 |"
    assert lines[3] == "| +aug | ced | - / - | - / - | - / - | - / - | 95.00 / 10.00 | 90.00 / 15.00 |"
    assert lines[4] == "| +aug | clad | - / - | - / - | - / - | - / - | - / - | 80.00 / 20.00 |"
    assert len(lines) == 5  # no row for a head neither file knows
    assert capsys.readouterr().out.splitlines() == lines


def test_bad_row_spec_is_named(tmp_path):
    with pytest.raises(SystemExit):
        ablation.main(["no-equals-sign"])
    with pytest.raises(SystemExit):
        ablation.main([f"x={tmp_path / 'missing'}"])


def test_real_speech_columns_come_from_the_recipe_results(tmp_path):
    exp = tmp_path / "real"
    _write(exp / "results.json", {"heads": {"ctc": {"easy": {"auc": 0.99, "eer": 0.01}}},
                                  "realspeech": {"heads": {"ctc": {"easy": {"auc": 0.989, "eer": 0.036},
                                                                   "hard": {"auc": 0.885, "eer": 0.182},
                                                                   "fsdd": {"auc": 0.942, "eer": 0.133}}}}})
    _write(exp / "eval" / "fsdd.json", {"heads": {"ctc": {"pooled": {"auc": 0.5, "eer": 0.5}}}})
    row = ablation.ablation_rows([("shipped", exp)], ["ctc", "ced"])
    assert row == [["shipped", "ctc", "98.90 / 3.60", "88.50 / 18.20", "99.00 / 1.00", "- / -", "- / -", "94.20 / 13.30"]]
