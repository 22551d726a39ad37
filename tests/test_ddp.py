"""The trainers' DDP path: ``openkws train`` under ``torchrun --nproc_per_node 2`` on CPU (gloo).

Each run is a real torchrun launch of the CLI. What is checked, for the CTC trainer and a CED head:
the ranks train on different batches that together cover the epoch (read from the per-rank batch
logs ``log/batches.rank<R>.tsv``), even when the epoch's batch count is odd (which used to hang);
their weights stay identical (``ddp_param_spread`` = 0); only rank 0 writes, atomically; a run
killed right after a mid-epoch checkpoint resumes from it with its step counter and batch order
continuing; and the loss falls.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import TINY_ENCODER, make_toy_corpus, make_toy_phrases

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available")

WORLD = 2

# The CLI, plus a way to stop a run the way a crash would: right after the checkpoint of a given
# step, every rank exits (rank 0 once its checkpoint is on disk).
LAUNCHER = textwrap.dedent("""
    import os, sys
    from openkws.train.loop import Trainer

    stop = int(os.environ.get("STOP_AFTER_CHECKPOINT_AT_STEP", "0"))
    if stop:
        save = Trainer.save

        def save_then_stop(self):
            save(self)
            if self.step == stop:
                sys.stdout.flush(); sys.stderr.flush()
                os._exit(0)

        Trainer.save = save_then_stop

    from openkws.cli import main
    sys.exit(main(["train", *sys.argv[1:]]))
""")


def torchrun(root: Path, task: str, overrides: list[str], stop_at: int = 0, timeout: float = 150) -> None:
    launcher = root / "launch.py"
    launcher.write_text(LAUNCHER)
    config = root / f"{task}.yaml"
    config.write_text(f"task: {task}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STOP_AFTER_CHECKPOINT_AT_STEP": str(stop_at)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           str(launcher), "--config", str(config), "device=cpu", *overrides]
    # its own process group, so that a hang (ranks out of step) kills torchrun and its workers
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun timed out after {timeout} s (ranks out of step?):\n{out[-4000:]}")
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{out[-4000:]}"


def batch_log(exp: Path, rank: int) -> list[dict]:
    with open(exp / "log" / f"batches.rank{rank}.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [{"epoch": int(r["epoch"]), "step": int(r["step"]), "batch": int(r["batch"]), "loss": r["loss"],
             "ids": r["ids"].split()} for r in rows]


def train_csv(exp: Path) -> list[dict]:
    with open(exp / "log" / "train.csv", newline="") as f:
        return list(csv.DictReader(f))


def metric(exp: Path, kind: str, name: str) -> list[float]:
    return [float(r["value"]) for r in train_csv(exp) if r["kind"] == kind and r["name"] == name]


def check_ranks(exp: Path, n_batches: int, epochs: int, disjoint: bool = True) -> list[list[dict]]:
    """Both ranks logged every step; at each step they trained on different batches (with no
    utterance in common when batches partition the corpus, as CTC's do); each epoch's batches were
    all taken (padded to a multiple of the world size by wrapping round); the weights stayed in
    sync; rank 0 alone wrote train.csv; no temp files were left."""
    logs = [batch_log(exp, r) for r in range(WORLD)]
    steps_per_epoch = -(-n_batches // WORLD)
    for rows in logs:
        assert [r["step"] for r in rows] == list(range(1, epochs * steps_per_epoch + 1))
    for a, b in zip(*logs):
        assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
        assert a["batch"] != b["batch"] and a["ids"] != b["ids"], (a, b)
        assert not (disjoint and set(a["ids"]) & set(b["ids"])), (a, b)
    for epoch in range(1, epochs + 1):
        taken = [r["batch"] for rows in logs for r in rows if r["epoch"] == epoch]
        assert sorted(set(taken)) == list(range(n_batches)) and len(taken) == WORLD * steps_per_epoch
    assert metric(exp, "train", "ddp_param_spread") == [0.0] * epochs
    keys = [(r["epoch"], r["kind"], r["name"]) for r in train_csv(exp)]
    assert len(keys) == len(set(keys))  # one writer
    assert not [p.name for p in exp.rglob("*") if p.name.endswith(".tmp")]
    return logs


@pytest.fixture(scope="module")
def ddp_ctc(tmp_path_factory):
    """A tiny corpus and an uninterrupted 2-rank CTC run on it (also the heads' acoustic model)."""
    from openkws.data.dataset import duration_batches
    from openkws.data.manifest import read_manifest

    root = tmp_path_factory.mktemp("ddp")
    corpus = make_toy_corpus(root, n_train=24, n_dev=4)
    # 4 s batches of these 24 clips: 5 per epoch, an odd number that two ranks cannot split evenly
    durations = [u.duration for u in read_manifest(corpus["train"])]
    n_batches = {len(duration_batches(durations, 4.0, 64, seed=e)) for e in range(4)}
    assert n_batches == {5}

    def run(exp: Path, stop_at: int = 0) -> None:
        torchrun(root, "ctc", [
            f"exp_dir={exp}", f"data.train=[{corpus['train']}]", f"data.dev=[{corpus['dev']}]",
            "data.max_batch_seconds=4", "optim.epochs=4", "optim.warmup_steps=5", "optim.peak_lr=3e-3",
            "optim.checkpoint_every_steps=4", *TINY_ENCODER, "model.encoder.dropout=0.1",
            "augment.enabled=false"], stop_at)  # (its room simulation costs seconds per worker)

    run(root / "ctc_full")
    return {"root": root, "corpus": corpus, "run": run, "full": root / "ctc_full", "n_batches": 5}


def test_ctc_ddp_trains_on_disjoint_batches_and_resumes_exactly(ddp_ctc):
    from openkws.models.acoustic import load_acoustic

    full, n_batches = ddp_ctc["full"], ddp_ctc["n_batches"]
    full_logs = check_ranks(full, n_batches, epochs=4)
    losses = metric(full, "train", "loss")
    assert losses[-1] < 0.8 * losses[0], losses

    # Killed right after the checkpoint of step 4 (mid-epoch 2: 3 steps per epoch), then resumed.
    part = ddp_ctc["root"] / "ctc_part"
    ddp_ctc["run"](part, stop_at=4)
    state = torch.load(part / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"], state["world_size"]) == (4, 1, 2, WORLD)
    assert len(state["rng_ranks"]) == WORLD
    assert [r["step"] for r in batch_log(part, 1)] == [1, 2, 3, 4]
    ddp_ctc["run"](part)
    # The step counter and the batch order continue, and with each rank's RNG (dropout) restored
    # every step's loss and the final weights equal those of the uninterrupted run.
    part_logs = check_ranks(part, n_batches, epochs=4)
    assert part_logs == full_logs  # (epoch, step, batch, loss, ids) of every step on both ranks
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)

    model = load_acoustic(full / "best_model.pt")  # written by rank 0, loads on its own
    assert model(torch.zeros(1, 8000), torch.tensor([8000]))[0].shape[-1] == 32


def test_ced_head_ddp_trains_and_resumes(ddp_ctc):
    from openkws.align import align_corpus
    from openkws.data.manifest import read_manifest
    from openkws.models.acoustic import load_acoustic
    from openkws.models.p2v import P2V, local_vectors

    root = ddp_ctc["root"]
    acoustic = ddp_ctc["full"] / "best_model.pt"
    model = load_acoustic(acoustic)
    local = local_vectors(align_corpus(model, read_manifest(ddp_ctc["corpus"]["train"]), max_per=None))
    P2V.from_local_vectors(local, model.ctc.proj.weight.detach()).save(root / "p2v.pt")
    phrases = make_toy_phrases(root)
    exp = root / "ced"

    def run(stop_at: int = 0) -> None:
        torchrun(root, "head", [
            f"exp_dir={exp}", "head=ced", f"acoustic={acoustic}", f"p2v={root / 'p2v.pt'}",
            f"train=[{phrases['train']}]", f"dev=[{phrases['dev']}]", "views=1",
            "sampler.keywords_per_batch=3", "sampler.clips_per_keyword=4", "batches_per_epoch=5",
            # no "substitute" confusables: they need G2P, whose loading would double each launch's time
            "sampler.confusable_mix={mutate: 0.7, concatenate: 0.15, nearest: 0.15}",
            "dev_batches=2", "optim.epochs=4", "optim.warmup_steps=5", "optim.peak_lr=5e-3",
            "optim.checkpoint_every_steps=5"], stop_at)

    run(stop_at=5)  # killed mid-epoch 2, right after the checkpoint of step 5
    state = torch.load(exp / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (5, 1, 4)
    run()
    logs = check_ranks(exp, n_batches=5, epochs=4, disjoint=False)  # pairs draw clips with replacement
    assert torch.load(exp / "checkpoint.pt", weights_only=True)["step"] == 12
    # epoch 2 went on after the restart where it had stopped: rank 0 took batches 0, 2 and rank 1
    # batches 1, 3 before it (steps 4, 5), then batch 4 and batch 0 (slot 5, wrapped round) after it
    assert [(r["step"], r["batch"]) for r in logs[0] + logs[1] if r["epoch"] == 2] == \
        [(4, 0), (5, 2), (6, 4), (4, 1), (5, 3), (6, 0)]
    losses = metric(exp, "train", "loss")
    assert losses[-1] < losses[0], losses
    best = torch.load(exp / "best_model.pt", weights_only=True)
    assert best["head"] == "ced" and 0 <= best["valid"]["eer_threshold"] <= 1
