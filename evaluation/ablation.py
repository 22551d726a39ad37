"""One table from several experiments: real speech (dev keyword-in-sentence trials, easy and
hard), synthetic easy/hard splits, the held-out extra voices (Kokoro) and FSDD zero-shot, per head.

    python -m evaluation.ablation "baseline=exp/synth_default" "+augmentation=exp/abl_aug" ... \
        [--heads ced,clad,phonmatch] [--out exp/ablation.md]

Each row is LABEL=EXP_DIR. From EXP_DIR it reads ``results.json`` (evaluation.report: easy and
hard AUC/EER on the synthetic test pairs, and under "realspeech" the real-speech evaluation of
evaluation.realspeech: dev sentence trials and FSDD), ``heldout/results.json`` (the same on the
test split of the extra voices, hard pairs) and ``eval/fsdd.json`` (evaluation.fsdd: pooled
AUC/EER on the real FSDD digits, used when the real-speech evaluation has no FSDD); a missing
file or head leaves its cells as "-". Rows keep their order.
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
    """Table rows: label, head, real easy, real hard, synthetic easy, synthetic hard, held-out
    voices hard, FSDD pooled (AUC % / EER %)."""
    table = []
    for label, exp in rows:
        results = _read(exp / "results.json")
        synth = results.get("heads", {})
        real = results.get("realspeech", {}).get("heads", {})
        heldout = _read(exp / "heldout" / "results.json").get("heads", {})
        fsdd = _read(exp / "eval" / "fsdd.json").get("heads", {})
        for head in heads:
            if not any(head in part for part in (synth, real, heldout, fsdd)):
                continue
            s, r = synth.get(head, {}), real.get(head, {})
            table.append([label, head, _cell(r.get("easy")), _cell(r.get("hard")), _cell(s.get("easy")),
                          _cell(s.get("hard")), _cell(heldout.get(head, {}).get("hard")),
                          _cell(r.get("fsdd") or fsdd.get(head, {}).get("pooled"))])
    return table


def markdown(table: list[list[str]]) -> str:
    header = ["change", "head", "real easy AUC / EER %", "real hard AUC / EER %",
              "synth easy AUC / EER %", "synth hard AUC / EER %",
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
    parser.add_argument("--heads", default="ctc,ced,clad,phonmatch")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    text = markdown(ablation_rows(args.rows, args.heads.split(",")))
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
