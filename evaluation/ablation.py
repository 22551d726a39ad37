"""One table from several experiments: synthetic easy/hard splits, the held-out extra voices
(Kokoro) and FSDD zero-shot, per head.

    python -m evaluation.ablation "baseline=exp/synth_default" "+augmentation=exp/abl_aug" ... \
        [--heads ced,clad,phonmatch] [--out exp/ablation.md]

Each row is LABEL=EXP_DIR. From EXP_DIR it reads ``results.json`` (evaluation.report: easy and
hard AUC/EER on the synthetic test pairs), ``heldout/results.json`` (the same on the test split
of the extra voices, hard pairs) and ``eval/fsdd.json`` (evaluation.fsdd: pooled AUC/EER on the
real FSDD digits); a missing file or head leaves its cells as "-". Rows keep their order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openkws.checkpoint import atomic_write_text


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _cell(entry: dict | None) -> str:
    if not entry:
        return "- / -"
    return f"{100 * entry['auc']:.2f} / {100 * entry['eer']:.2f}"


def ablation_rows(rows: list[tuple[str, Path]], heads: list[str]) -> list[list[str]]:
    """Table rows: label, head, synthetic easy, synthetic hard, held-out voices hard, FSDD pooled
    (AUC % / EER %)."""
    table = []
    for label, exp in rows:
        synth = _read(exp / "results.json").get("heads", {})
        heldout = _read(exp / "heldout" / "results.json").get("heads", {})
        fsdd = _read(exp / "eval" / "fsdd.json").get("heads", {})
        for head in heads:
            if head not in synth and head not in heldout and head not in fsdd:
                continue
            s = synth.get(head, {})
            table.append([label, head, _cell(s.get("easy")), _cell(s.get("hard")),
                          _cell(heldout.get(head, {}).get("hard")), _cell(fsdd.get(head, {}).get("pooled"))])
    return table


def markdown(table: list[list[str]]) -> str:
    header = ["change", "head", "synth easy AUC / EER %", "synth hard AUC / EER %",
              "held-out voices hard AUC / EER %", "FSDD AUC / EER %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines) + "\n"


def _row(spec: str) -> tuple[str, Path]:
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=EXP_DIR, got {spec!r}")
    if not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"{path}: no such experiment folder")
    return label, Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", type=_row, help="LABEL=EXP_DIR, in table order")
    parser.add_argument("--heads", default="ced,clad,phonmatch")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    text = markdown(ablation_rows(args.rows, args.heads.split(",")))
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
