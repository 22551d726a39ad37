"""Command-line interface: ``openkws <command>`` (also ``python -m openkws``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def _train(args) -> int:
    from openkws.config import load_config

    data = yaml.safe_load(Path(args.config).read_text()) if Path(args.config).exists() else None
    if data is None:
        raise SystemExit(f"openkws train: config file not found or empty: {args.config}")
    task = dict(data).get("task", "ctc")
    for item in args.overrides:
        if item.startswith("task="):
            task = item.split("=", 1)[1]
    trainers = _trainers()
    if task not in trainers:
        raise SystemExit(f"openkws train: unknown task {task!r} in {args.config}; valid: {sorted(trainers)}")
    cfg_cls, train_fn = trainers[task]
    cfg = load_config(cfg_cls, args.config, args.overrides)
    train_fn(cfg)
    return 0


def _trainers() -> dict:
    from openkws.train.ctc import CTCTrainConfig, train_ctc

    return {"ctc": (CTCTrainConfig, train_ctc)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openkws", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model from a YAML config (task: ctc | head)")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.epochs=5 data.max_batch_seconds=60")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
