import torch

from openkws.config import load_config
from openkws.models.acoustic import load_acoustic
from openkws.train.ctc import CTCTrainConfig, train_ctc

from conftest import TINY_ENCODER as TINY_MODEL


def _cfg(corpus, exp, epochs, extra=()):
    return load_config(CTCTrainConfig, None, [
        f"exp_dir={exp}", f"data.train=[{corpus['train']}]", f"data.dev=[{corpus['dev']}]",
        "data.max_batch_seconds=6", f"optim.epochs={epochs}", "optim.warmup_steps=5", "optim.peak_lr=3e-3",
        "optim.checkpoint_every_steps=3", "device=cpu", *TINY_MODEL, *extra])


def _train_csv(exp):
    return (exp / "log" / "train.csv").read_text().splitlines()


def test_ctc_training_learns_and_resumes_exactly(toy_corpus, tmp_path):
    full = tmp_path / "full"
    train_ctc(_cfg(toy_corpus, full, epochs=4))
    losses = [float(r.split(",")[-1]) for r in _train_csv(full) if ",train,loss," in r]
    assert losses[-1] < losses[0]  # it learns

    # The same run, stopped after 2 epochs and resumed, ends with identical weights.
    part = tmp_path / "part"
    train_ctc(_cfg(toy_corpus, part, epochs=2))
    train_ctc(_cfg(toy_corpus, part, epochs=4))
    a = torch.load(full / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(part / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)

    # best_model.pt rebuilds a working model on its own
    model = load_acoustic(full / "best_model.pt")
    enc, lengths = model(torch.zeros(1, 16000), torch.tensor([16000]))
    assert enc.shape[-1] == 32 and (full / "config.yaml").exists()
