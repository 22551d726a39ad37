"""Word alignments of LibriSpeech: import the published MFA ones, read and write our own JSONL.

In memory an alignment set is ``{utt_id: [(word, start_s, end_s), ...]}``, words in time order,
lowercase; ``""`` marks silence and ``"<unk>"`` an out-of-vocabulary / unknown word (both break
a LibriPhrase phrase). Two published sources are imported:

* the Montreal-Forced-Aligner TextGrids of Lugosch et al. (Zenodo record 2619474, used by
  LibriPhrase): one ``<utt_id>.TextGrid`` per utterance with a "words" tier, e.g.
  ``text/train-other-500/20/205/20-205-0000.TextGrid``;
* the LibriPhrase authors' per-subset CSVs (``librispeech_other_train_500h_all_utt.csv`` ...):
  columns ``audio_filename,start,end,text``, one row per word interval, silences included with
  an empty text; the utterance id is the file name's stem.

Our own format (also written by the CTC forced aligner) is JSON lines, one utterance a line:

    {"id": "20-205-0000", "words": [["", 0.0, 0.42], ["chapter", 0.42, 0.81], ...]}
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
from pathlib import Path

from openkws.data.alignments import Alignments, Word, read_word_alignments, write_word_alignments

__all__ = ["Alignments", "Word", "import_libriphrase_csv", "import_textgrids", "read_textgrid",
           "read_word_alignments", "write_word_alignments"]

SILENCE = ""
UNKNOWN = "<unk>"
# Marks aligners use for silence and for unknown / spoken-noise intervals.
_SILENCE_MARKS = frozenset({"", "sil", "sp", "<eps>", "<sil>", "sil_s"})
_UNKNOWN_MARKS = frozenset({"<unk>", "spn", "<spn>", "<oov>", "[unk]"})

# One TextGrid token: a quoted string ("" escapes a quote), an item index such as "[3]" (skipped),
# a number, or a flag such as <exists> (skipped). Labels like "xmin =" are not tokens, which is
# why the long and the short TextGrid formats parse alike.
_TG_TOKEN = re.compile(r'"((?:[^"]|"")*)"|\[\s*\d*\s*\]|(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|<\w+>')

log = logging.getLogger(__name__)


def normalize_word(mark: str) -> str:
    """Lowercase a word; map silence marks to "" and unknown / noise marks to "<unk>"."""
    w = mark.strip().lower()
    if w in _SILENCE_MARKS:
        return SILENCE
    if w in _UNKNOWN_MARKS:
        return UNKNOWN
    return w


def is_word(w: str) -> bool:
    """True for a real word (not silence, not unknown)."""
    return w not in (SILENCE, UNKNOWN)


# --------------------------------------------------------------------------- TextGrid (MFA)

def read_textgrid(path: str | os.PathLike, tier: str = "words") -> list[Word]:
    """The intervals of one tier of a Praat TextGrid (long or short text format, UTF-8 or UTF-16)."""
    path = Path(path)
    raw = path.read_bytes()
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    tokens: list[str | float] = []
    for m in _TG_TOKEN.finditer(text):
        if m.group(1) is not None:
            tokens.append(m.group(1).replace('""', '"'))
        elif m.group(2) is not None:
            tokens.append(float(m.group(2)))
    pos = 0

    def take(kind: type):
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"{path}: TextGrid ends early (truncated?)")
        tok = tokens[pos]
        pos += 1
        if not isinstance(tok, kind):
            raise ValueError(f"{path}: malformed TextGrid at token {pos}: expected a "
                             f"{'string' if kind is str else 'number'}, got {tok!r}")
        return tok

    if take(str) != "ooTextFile" or take(str) != "TextGrid":
        raise ValueError(f"{path}: not a Praat TextGrid (header is not 'ooTextFile' / 'TextGrid')")
    take(float)  # the grid's xmin
    take(float)  # and xmax
    names = []
    for _ in range(int(take(float))):
        kind, name = take(str), take(str)
        take(float)  # the tier's xmin
        take(float)  # and xmax
        count = int(take(float))
        names.append(name)
        if kind == "IntervalTier":
            intervals = [(take(float), take(float), take(str)) for _ in range(count)]
            if name == tier:
                return [(normalize_word(w), s, e) for s, e, w in intervals]
        else:  # TextTier: points of (time, mark)
            for _ in range(count):
                take(float)
                take(str)
    raise ValueError(f"{path}: no interval tier named {tier!r} (tiers: {', '.join(names) or 'none'})")


def import_textgrids(root: str | os.PathLike, tier: str = "words") -> Alignments:
    """Read every ``*.TextGrid`` under ``root`` (recursively); the utterance id is the file stem."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"TextGrid folder not found: {root}")
    out: Alignments = {}
    for path in sorted(root.rglob("*.TextGrid")):
        if path.stem in out:
            raise ValueError(f"{path}: utterance {path.stem!r} has two TextGrids under {root}")
        out[path.stem] = read_textgrid(path, tier)
    if not out:
        raise ValueError(f"{root}: no *.TextGrid files found")
    return out


# --------------------------------------------------------------------------- LibriPhrase CSV

def import_libriphrase_csv(path: str | os.PathLike) -> Alignments:
    """Read a LibriPhrase alignment CSV (``audio_filename,start,end,text``, one row per interval)."""
    path = Path(path)
    out: Alignments = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"audio_filename", "start", "end", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                             f"(found: {', '.join(reader.fieldnames or ()) or 'no header'})")
        for lineno, row in enumerate(reader, 2):
            try:
                start, end = float(row["start"]), float(row["end"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{lineno}: start/end are not numbers: "
                                 f"{row['start']!r}, {row['end']!r}") from None
            utt = Path(row["audio_filename"].replace("\\", "/")).stem
            out.setdefault(utt, []).append((normalize_word(row["text"] or ""), start, end))
    for words in out.values():
        words.sort(key=lambda w: (w[1], w[2]))  # rows are usually in order; make sure
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Import MFA word alignments (TextGrids or LibriPhrase CSVs) "
                                            "into openkws JSONL.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--textgrids", help="folder holding <utt_id>.TextGrid files (searched recursively)")
    src.add_argument("--csv", nargs="+", help="LibriPhrase alignment CSV(s): audio_filename,start,end,text")
    p.add_argument("--tier", default="words", help="TextGrid tier holding the words")
    p.add_argument("--out", required=True, help="output JSONL")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.textgrids:
        ali = import_textgrids(args.textgrids, args.tier)
    else:
        ali = {}
        for path in args.csv:
            for utt, words in import_libriphrase_csv(path).items():
                if utt in ali:
                    raise ValueError(f"{path}: utterance {utt!r} also appears in an earlier CSV")
                ali[utt] = words
    write_word_alignments(args.out, ali)
    log.info("wrote %d utterance alignments to %s", len(ali), args.out)


if __name__ == "__main__":
    main()
