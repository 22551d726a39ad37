"""Stage 1: check a corpus's manifests together and print what they hold.

    python -m data_prep.check_manifests data/synth/train.jsonl data/synth/dev.jsonl data/synth/test.jsonl

Fails (exit 1, every problem listed) on missing audio files, bad durations, phonemes outside the
inventory, duplicate ids, or a speaker/voice in more than one split.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from openkws.data.manifest import check_manifest, read_manifest


def summary(utts) -> str:
    hours, speakers, kinds = defaultdict(float), defaultdict(set), defaultdict(lambda: defaultdict(int))
    for u in utts:
        hours[u.split] += u.duration / 3600
        speakers[u.split].add(u.speaker)
        kinds[u.split][u.kind] += 1
    return "\n".join(f"  {split}: {hours[split]:.2f} h, {len(speakers[split])} speakers/voices, "
                     + ", ".join(f"{n} {k}" for k, n in sorted(kinds[split].items()))
                     for split in sorted(hours))


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__)
        return 2
    utts = [u for p in paths for u in read_manifest(p)]
    try:
        check_manifest(utts, name=" + ".join(paths))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{len(utts)} utterances OK\n{summary(utts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
