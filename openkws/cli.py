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
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # every rank leaves together: a rank that exits while gloo threads of the group are still
        # alive can abort ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()
    return 0


def _align(args) -> int:
    from openkws.align import AlignStats, align_corpus, word_segments
    from openkws.audio import SAMPLE_RATE
    from openkws.data.alignments import write_word_alignments
    from openkws.data.manifest import read_manifest
    from openkws.models.acoustic import load_acoustic
    from openkws.models.p2v import P2V, local_vectors

    model = load_acoustic(args.acoustic)
    utts = [u for m in args.manifest for u in read_manifest(m)]
    stats = AlignStats()
    aligned = list(align_corpus(model, utts, device=args.device, max_per=args.max_per, stats=stats))
    print(f"aligned {stats.aligned}/{stats.utterances} utterances "
          f"(skipped: {stats.skipped_per} above PER {args.max_per}, {stats.skipped_short} too short)")
    if args.word_alignments:
        frame_seconds = model.frame_samples / SAMPLE_RATE
        write_word_alignments(args.word_alignments, {utts[a.index].id: word_segments(utts[a.index], a.spans, frame_seconds)
                                                     for a in aligned})
    if args.p2v:
        p2v = P2V.from_local_vectors(local_vectors(aligned), model.ctc.proj.weight.detach())
        p2v.save(args.p2v)
        cov = p2v.coverage()
        print(f"P2V table -> {args.p2v}: {sum(c > 0 for c in cov['counts'].values())}/{len(cov['counts'])} "
              f"phonemes seen; backed off: {cov['backoff'] or 'none'}")
    return 0


def _export(args) -> int:
    from openkws.checkpoint import safe_torch_load
    from openkws.model import KWSModel
    from openkws.models.acoustic import load_acoustic
    from openkws.models.heads import build_head
    from openkws.models.p2v import P2V
    from openkws.train.loop import git_revision

    acoustic = load_acoustic(args.acoustic)
    p2v = P2V.load(args.p2v)
    heads, thresholds = {}, {}
    for item in args.head:
        name, _, path = item.partition("=")
        if name == "ctc" and not path:  # training-free: calibrated later (python -m evaluation.calibrate)
            heads[name], thresholds[name] = build_head(name, None, p2v.dim), 0.5
            continue
        if not path:
            raise SystemExit(f"openkws export: --head takes NAME=CHECKPOINT (or ctc), got {item!r}")
        state = safe_torch_load(path)
        if state.get("head") != name:
            raise SystemExit(f"openkws export: {path} holds head {state.get('head')!r}, not {name!r}")
        head = build_head(name, state["head_config"], p2v.dim)
        head.load_state_dict(state["state_dict"])
        heads[name] = head
        thresholds[name] = float(state.get("valid", {}).get("eer_threshold", 0.5))
    default = args.default_head or next(iter(heads))
    info = {"corpus": args.corpus, "git": git_revision(), "note": args.note}
    KWSModel(acoustic, p2v, heads, default, thresholds, info).save(args.out)
    size = Path(args.out).stat().st_size / 1e6
    print(f"wrote {args.out} ({size:.1f} MB): heads {sorted(heads)}, default {default}, thresholds {thresholds}")
    return 0


def _model(path):
    from openkws.api import load_model

    return load_model(path)


def _detect(args) -> int:
    import json
    from dataclasses import asdict

    from openkws.api import detect

    detections = detect(args.audio, args.keywords, model=_model(args.model), threshold=args.threshold,
                        head=args.head)
    if args.json:
        print(json.dumps([asdict(d) for d in detections], indent=2))
    else:
        for d in detections:
            print(f"{d.start:8.2f} {d.end:8.2f}  {d.score:.3f}  {d.keyword}")
        if not detections:
            print("no keyword detected")
    return 0


def _score(args) -> int:
    import json

    from openkws.api import score

    scores = score(args.audio, args.keywords, model=_model(args.model), head=args.head)
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        for k, v in scores.items():
            print(f"{v:.3f}  {k}")
    return 0


def _info(args) -> int:
    import json

    model = _model(args.model)
    n_acoustic = sum(p.numel() for p in model.acoustic.parameters())
    heads = {n: sum(p.numel() for p in h.parameters()) for n, h in model.heads.items()}
    print(json.dumps({"acoustic_parameters": n_acoustic, "head_parameters": heads,
                      "default_head": model.default_head, "thresholds": model.thresholds,
                      "p2v_backoff": model.p2v.backoff, "info": model.info}, indent=2))
    return 0


def _trainers() -> dict:
    from openkws.train.ctc import CTCTrainConfig, train_ctc
    from openkws.train.heads import HeadTrainConfig, train_head

    return {"ctc": (CTCTrainConfig, train_ctc), "head": (HeadTrainConfig, train_head)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openkws", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model from a YAML config (task: ctc | head)")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.epochs=5 data.max_batch_seconds=60")
    p.set_defaults(func=_train)

    p = sub.add_parser("align", help="CTC forced alignment: P2V table and word alignments (stage 3)")
    p.add_argument("--acoustic", required=True,
                   help="acoustic model checkpoint (exp/<tag>/ctc/best_model.pt), or hama (the pretrained one)")
    p.add_argument("--manifest", required=True, nargs="+", help="manifest(s) to align")
    p.add_argument("--p2v", help="write the P2V table built from these alignments here")
    p.add_argument("--word-alignments", help="write word alignments (JSONL) here")
    p.add_argument("--max-per", type=float, default=0.5,
                   help="skip utterances whose greedy phoneme error rate is above this (default 0.5)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_align)

    p = sub.add_parser("export", help="bundle acoustic model, P2V table and heads into one model file (stage 6)")
    p.add_argument("--acoustic", required=True, help="acoustic model checkpoint, or hama (the pretrained one)")
    p.add_argument("--p2v", required=True)
    p.add_argument("--head", required=True, action="append", help="NAME=exp/<tag>/<head>/best_model.pt, or ctc (the training-free CTC search; repeat)")
    p.add_argument("--default-head", help="head used when none is named (default: the first --head)")
    p.add_argument("--corpus", default="", help="recorded in the model's info")
    p.add_argument("--note", default="", help="free text recorded in the model's info")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_export)

    for name, func, text in (("detect", _detect, "find where keywords are spoken in an audio file"),
                             ("score", _score, "score an audio file against keywords (0..1 each)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("audio", help="audio file (WAV, FLAC, OGG, MP3; any rate, any channels)")
        p.add_argument("keywords", nargs="+", help="keyword text(s), e.g. \"turn on lights\"")
        p.add_argument("--model", help="model file (default: the shipped model)")
        p.add_argument("--head", help="matcher head (default: the model's default)")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "detect":
            p.add_argument("--threshold", type=float, help="0..1 (default: the model's calibrated one)")
        p.set_defaults(func=func)

    p = sub.add_parser("info", help="describe a model file")
    p.add_argument("model", nargs="?", help="model file (default: the shipped model)")
    p.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:  # user errors: a message, not a traceback
        print(f"openkws {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
