import pytest
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


def test_param_groups_scale_the_rate_and_stay_frozen_for_their_first_steps(tmp_path):
    from openkws.train.loop import Distributed, OptimConfig, ParamGroup, Trainer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    trainer = Trainer(model, None, OptimConfig(peak_lr=1e-2, warmup_steps=4), tmp_path, Distributed("cpu"),
                      param_groups=[ParamGroup(list(model[0].parameters()), lr_scale=0.1, freeze_steps=3),
                                    ParamGroup(list(model[1].parameters()))])
    before = [p.detach().clone() for p in model[0].parameters()]
    rates = []
    for step in range(6):
        rates.append([g["lr"] for g in trainer.optimizer.param_groups])
        trainer.optimizer.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        trainer.optimizer.step()
        trainer.scheduler.step()
        if step == 2:  # three frozen steps: the first layer has not moved
            for a, b in zip(before, model[0].parameters()):
                torch.testing.assert_close(a, b.detach())
    assert [r[0] for r in rates[:3]] == [0.0, 0.0, 0.0] and all(r[1] > 0 for r in rates)
    # once thawed, the first group warms up on its own clock, at a tenth of the second's rate
    assert abs(rates[3][0] - 0.1 * rates[0][1]) < 1e-12
    assert any((a != b.detach()).any() for a, b in zip(before, model[0].parameters()))


def test_fine_tuning_starts_from_a_checkpoint_and_keeps_a_frozen_encoder(toy_corpus, tmp_path):
    train_ctc(_cfg(toy_corpus, tmp_path / "base", epochs=1))
    start = load_acoustic(tmp_path / "base" / "best_model.pt").state_dict()
    train_ctc(_cfg(toy_corpus, tmp_path / "tuned", 1, [f"init={tmp_path / 'base' / 'best_model.pt'}", "freeze_steps=1000"]))
    tuned = torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=True)["model"]
    assert set(tuned) == set(start)
    for k in start:
        if k.startswith("ctc."):
            assert not torch.equal(start[k], tuned[k]), k  # the output layer trained
        else:
            torch.testing.assert_close(start[k], tuned[k], msg=k)  # the frozen rest did not move


def test_training_on_top_of_the_frozen_pretrained_model_keeps_its_output_layer(toy_corpus, tmp_path):
    # Model (c) with init_ctc_mix: only the new block and the new CTC layer train; hama's blocks
    # and its output layer, mixed in at inference, stay exactly as the wheel ships them.
    pytest.importorskip("hama")
    from openkws.models.pretrained import pretrained_acoustic

    exp = tmp_path / "c"
    train_ctc(load_config(CTCTrainConfig, None, [
        f"exp_dir={exp}", f"data.train=[{toy_corpus['train']}]", f"data.dev=[{toy_corpus['dev']}]",
        "data.max_batch_seconds=6", "optim.epochs=1", "optim.warmup_steps=2", "device=cpu", "init=hama",
        "init_extra_layers=1", "init_lr_scale=0", "init_ctc_mix=0.5"]))
    start = pretrained_acoustic(extra_layers=1, ctc_mix_weight=0.5).state_dict()
    model = load_acoustic(exp / "best_model.pt")
    assert model.cfg.ctc_mix_layer == 4 and model.cfg.ctc_mix_weight == 0.5
    state = model.state_dict()
    new = [k for k in state if k.startswith(("ctc.", "encoder.blocks.4."))]
    assert not torch.equal(state["ctc.proj.weight"], start["ctc.proj.weight"])
    assert sum(not torch.equal(state[k], start[k]) for k in new) > len(new) // 2  # the new parts learn
    for k in set(state) - set(new):
        assert torch.equal(state[k], start[k]), k  # front end, hama's blocks, hama's output layer
    with pytest.raises(ValueError, match="needs init_lr_scale 0"):
        train_ctc(load_config(CTCTrainConfig, None, [f"exp_dir={tmp_path / 'x'}", f"data.train=[{toy_corpus['train']}]",
                                                     "init=hama", "init_extra_layers=1", "init_ctc_mix=0.5"]))
