"""Matcher heads (CED, PhonMatchNet, CLAD), their losses and the g2p decoder embedding."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from openkws.models.heads import HEADS, PairBatch, build_head, num_parameters, pad_sequences
from openkws.models.losses import GE2EKWSLoss, enrolment_scores, ge2e_kws_loss, info_nce
from openkws.text import NUM_PHONEMES
from openkws.text.g2p_embed import G2pDecoderEmbedding, checkpoint_path

D = 32  # a small stand-in for the encoder width keeps the tests fast


# ------------------------------------------------------------------ toy data

def toy_batch(gen: torch.Generator, vocab: torch.Tensor, n_kw: int = 8, clips: int = 4,
              noise: float = 1.0, confusable: bool = False, reps: tuple[int, int] = (1, 3),
              n_phonemes: int = NUM_PHONEMES - 4) -> PairBatch:
    """Synthetic pairs: a keyword is 3-6 random phonemes (of the first n_phonemes), its text the
    phonemes' vocab vectors (a P2V stand-in); a clip of it repeats each vector reps[0]..reps[1]
    times plus noise (40 ms "frames"), with 0-2 noise frames either side. Each clip is paired
    with its own text (label 1) and with another keyword's text (label 0), or with a one-phoneme
    substitution of its own text when ``confusable``. Feats (10 ms) repeat a fixed projection of
    each frame 4 times."""
    def rand_ints(lo, hi, size=()):
        return torch.randint(lo, hi, size, generator=gen)

    keywords = [rand_ints(4, 4 + n_phonemes, (int(rand_ints(3, 7)),)) for _ in range(n_kw)]
    audio, texts, labels, kw_ids, phone_labels = [], [], [], [], []
    for k, ids in enumerate(keywords):
        for _ in range(clips):
            counts = rand_ints(reps[0], reps[1] + 1, (len(ids),)).tolist()
            frames = vocab[[int(i) for i, r in zip(ids, counts) for _ in range(r)]]
            frames = torch.cat([torch.zeros(int(rand_ints(0, 3)), vocab.shape[1]), frames,
                                torch.zeros(int(rand_ints(0, 3)), vocab.shape[1])])
            clip = frames + noise * torch.randn(frames.shape, generator=gen)
            if confusable:
                other = ids.clone()
                other[rand_ints(0, len(ids))] = rand_ints(4, 4 + n_phonemes)
            else:
                other = keywords[(k + int(rand_ints(1, n_kw))) % n_kw]
            for text, label in ((ids, 1.0), (other, float(torch.equal(other, ids)))):
                audio.append(clip)
                texts.append(text)
                labels.append(label)
                kw_ids.append(k)
                same = torch.zeros(len(text))
                n = min(len(text), len(ids))
                same[:n] = (text[:n] == ids[:n]).float()
                phone_labels.append(same)
    audio, audio_lengths = pad_sequences(audio)
    phoneme_ids, text_lengths = pad_sequences(texts)
    b, n, d = audio.shape
    proj = torch.randn(d, 80, generator=torch.Generator().manual_seed(7)) / math.sqrt(d)
    feats = F.pad((audio @ proj).unsqueeze(2).expand(b, n, 4, 80).reshape(b, 4 * n, 80), (0, 0, 0, 3))
    return PairBatch(audio=audio, audio_lengths=audio_lengths, text=vocab[phoneme_ids],
                     text_lengths=text_lengths, phoneme_ids=phoneme_ids, feats=feats,
                     feat_lengths=4 * audio_lengths + 3, labels=torch.tensor(labels),
                     phone_labels=pad_sequences(phone_labels)[0], keyword_ids=torch.tensor(kw_ids))


def train_toy(name: str, steps: int, cfg: dict | None = None, lr: float = 3e-3, seed: int = 0,
              **batch_kw) -> tuple[list[float], float]:
    """Train head ``name`` on fresh toy batches; return the loss curve and held-out accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vocab = torch.randn(NUM_PHONEMES, D, generator=gen)
    head = build_head(name, cfg, D)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, _ = head.loss(toy_batch(gen, vocab, **batch_kw))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    head.eval()
    test = toy_batch(gen, vocab, n_kw=32, **batch_kw)
    acc = ((head.score(test) > 0.5).float() == test.labels).float().mean().item()
    return losses, acc


# ------------------------------------------------------------------ contract

def _random_batch(gen: torch.Generator, lengths: list[tuple[int, int]]) -> PairBatch:
    """Random pairs with the given (audio frames, phonemes) per item."""
    audio = [torch.randn(n, D, generator=gen) for n, _ in lengths]
    ids = [torch.randint(4, NUM_PHONEMES, (m,), generator=gen) for _, m in lengths]
    feats = [torch.randn(4 * n + 3, 80, generator=gen) for n, _ in lengths]
    audio, audio_lengths = pad_sequences(audio)
    phoneme_ids, text_lengths = pad_sequences(ids)
    feats, feat_lengths = pad_sequences(feats)
    b = len(lengths)
    return PairBatch(audio=audio, audio_lengths=audio_lengths,
                     text=torch.randn(b, phoneme_ids.shape[1], D, generator=gen),
                     text_lengths=text_lengths, phoneme_ids=phoneme_ids, feats=feats,
                     feat_lengths=feat_lengths, labels=(torch.arange(b) % 2 == 0).float(),
                     phone_labels=torch.ones(b, phoneme_ids.shape[1]),
                     keyword_ids=torch.arange(b) // 2)


def _extend(batch: PairBatch, extra: PairBatch) -> PairBatch:
    """``batch`` followed by ``extra``'s items, everything re-padded to the longer shapes."""
    def cat(a, b):
        if a.dim() == 1:
            return torch.cat([a, b])
        size = max(a.shape[1], b.shape[1])
        return torch.cat([F.pad(x, (0, 0) * (x.dim() - 2) + (0, size - x.shape[1])) for x in (a, b)])

    fields = {k: None if getattr(batch, k) is None else cat(getattr(batch, k), getattr(extra, k))
              for k in batch.__dataclass_fields__}
    return PairBatch(**fields)


@pytest.mark.parametrize("name", sorted(n for n, cls in HEADS.items() if cls.trainable))
def test_forward_backward_and_padding_invariance(name):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    head = build_head(name, None, D)
    batch = _random_batch(gen, [(9, 4), (12, 6), (3, 5), (7, 2)])  # (3, 5): fewer frames than phonemes

    loss, stats = head.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss) and math.isfinite(stats["loss"])
    loss.backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in head.parameters())

    head.eval()
    logits = head(batch)
    assert logits.shape == (4,)
    scores = head.score(batch)
    assert ((scores >= 0) & (scores <= 1)).all() and not scores.requires_grad
    longer = _extend(batch, _random_batch(gen, [(20, 9), (15, 8)]))
    assert torch.allclose(head(longer)[:4], logits, atol=1e-5)
    # pairs that share a clip (encoded once inside some heads) score as if alone
    index = torch.tensor([2, 0, 2, 2])
    assert torch.allclose(head(batch.select(index)), logits[index], atol=1e-5)


def test_clip_groups():
    gen = torch.Generator().manual_seed(3)
    batch = _random_batch(gen, [(5, 3), (6, 4), (5, 2)]).select(torch.tensor([0, 1, 0, 2, 1]))
    clip, first = batch.clip_groups()
    assert clip[0] == clip[2] and clip[1] == clip[4] and len(set(clip.tolist())) == 3
    assert sorted(first.tolist()) == [0, 1, 3] and (clip[first] == torch.arange(3)).all()


def test_clip_groups_count_the_stream():
    gen = torch.Generator().manual_seed(4)
    batch = _random_batch(gen, [(5, 3), (5, 3)])
    same = PairBatch(audio=batch.audio[[0, 0]], audio_lengths=batch.audio_lengths[[0, 0]], text=batch.text,
                     text_lengths=batch.text_lengths, phoneme_ids=batch.phoneme_ids,
                     stream=torch.randn(2, 4, 6, generator=gen), stream_lengths=torch.tensor([4, 4]))
    assert len(set(same.clip_groups()[0].tolist())) == 2  # equal E, different stream: two clips
    assert same.select(torch.tensor([1, 1])).clip_groups()[0].tolist() == [0, 0]


def test_build_head_configs():
    assert build_head("ced", {"hidden": 32}, D).cfg.hidden == 32
    with pytest.raises(ValueError, match="unknown key"):
        build_head("ced", {"hiden": 32}, D)
    with pytest.raises(ValueError, match="unknown head"):
        build_head("nope", None, D)


@pytest.mark.parametrize("cfg", [{"ge2e_weight": 0.5}, {"rnn": "lstm", "num_layers": 2}])
def test_clad_variants(cfg):
    head = build_head("clad", cfg, D)
    batch = _random_batch(torch.Generator().manual_seed(2), [(6, 3), (7, 4), (5, 3), (8, 5)])
    loss, stats = head.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and ("ge2e" in stats) == ("ge2e_weight" in cfg)


def test_parameter_budgets():
    sizes = {name: num_parameters(build_head(name, None, 144)) for name in HEADS}
    assert sizes["ctc"] == 0  # training-free
    assert 100_000 <= sizes["ced"] <= 200_000
    assert 250_000 <= sizes["phonmatch"] <= 400_000  # the frozen G2P decoder is not a parameter
    assert 100_000 <= sizes["clad"] <= 350_000


def test_pair_batch_validation_and_to():
    gen = torch.Generator().manual_seed(0)
    batch = _random_batch(gen, [(5, 3), (6, 4)])
    assert len(batch.to("cpu")) == 2
    with pytest.raises(ValueError, match="audio_lengths"):
        PairBatch(audio=batch.audio, audio_lengths=torch.tensor([5, 60]), text=batch.text,
                  text_lengths=batch.text_lengths, phoneme_ids=batch.phoneme_ids)
    with pytest.raises(ValueError, match="text"):
        PairBatch(audio=batch.audio, audio_lengths=batch.audio_lengths, text=batch.text[:1],
                  text_lengths=batch.text_lengths, phoneme_ids=batch.phoneme_ids)
    inference = PairBatch(audio=batch.audio, audio_lengths=batch.audio_lengths, text=batch.text,
                          text_lengths=batch.text_lengths, phoneme_ids=batch.phoneme_ids)
    common = dict(audio=batch.audio, audio_lengths=batch.audio_lengths, text=batch.text,
                  text_lengths=batch.text_lengths, phoneme_ids=batch.phoneme_ids)
    with pytest.raises(ValueError, match="stream and stream_lengths come together"):
        PairBatch(**common, stream=torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="stream_lengths must lie in"):
        PairBatch(**common, stream=torch.zeros(2, 3, 4), stream_lengths=torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="PairBatch.stream: expected rank 3"):
        PairBatch(**common, stream=torch.zeros(2, 3), stream_lengths=torch.tensor([3, 3]))
    with_stream = PairBatch(**common, stream=torch.zeros(2, 3, 4), stream_lengths=torch.tensor([3, 1]))
    assert with_stream.select(torch.tensor([1])).stream_lengths.tolist() == [1]
    assert with_stream.to("cpu").stream.shape == (2, 3, 4)
    with pytest.raises(ValueError, match="labels"):
        build_head("ced", None, D).loss(inference)


# ------------------------------------------------------------------ learning a toy task

@pytest.mark.parametrize("name,cfg,steps,kw,min_acc", [
    ("ced", {"hidden": 32}, 150, {}, 0.9),
    ("clad", {"hidden": 32}, 150, {}, 0.9),
    # PhonMatchNet must learn which g2p state goes with which audio vector from scratch: give it
    # a 16-phoneme toy inventory and more steps (it reaches ~0.95 with all 70 in 600 steps).
    ("phonmatch", {"dim": 32}, 300, {"n_phonemes": 16}, 0.85),
])
def test_tiny_head_learns_toy_task(name, cfg, steps, kw, min_acc):
    losses, acc = train_toy(name, steps, cfg, **kw)
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:20])
    assert acc > min_acc, acc


# ------------------------------------------------------------------ g2p decoder embedding

def test_g2p_decoder_matches_numpy():
    w = np.load(checkpoint_path())

    def grucell(x, h):  # g2p_en's numpy GRU step, verbatim in spirit
        rzn_ih = x @ w["dec_w_ih"].T + w["dec_b_ih"]
        rzn_hh = h @ w["dec_w_hh"].T + w["dec_b_hh"]
        k = rzn_ih.shape[-1] * 2 // 3
        rz = 1 / (1 + np.exp(-(rzn_ih[:k] + rzn_hh[:k])))
        r, z = np.split(rz, 2)
        n = np.tanh(rzn_ih[k:] + r * rzn_hh[k:])
        return (1 - z) * n + z * h

    ids = [37, 30, 58, 4, 49]  # any phoneme string, confusable or not
    h = grucell(w["dec_emb"][2], np.zeros(256, np.float32))  # <s>
    expected = []
    for i in ids:
        h = grucell(w["dec_emb"][i], h)
        expected.append(h)
    embed = G2pDecoderEmbedding()
    batch = torch.tensor([ids, ids[:3] + [0, 0]])
    out = embed(batch)
    assert out.shape == (2, 5, 256) and not out.requires_grad
    assert np.allclose(out[0].numpy(), np.stack(expected), atol=1e-5)
    assert np.allclose(out[1, :3].numpy(), np.stack(expected[:3]), atol=1e-5)
    assert (out[1, 3:] == 0).all()
    assert not list(embed.parameters()) and not embed.state_dict()


# ------------------------------------------------------------------ losses

def test_info_nce_hand_values():
    a = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # candidates are L2-normalised inside
    pos = torch.tensor([[True, False, False]])
    assert info_nce(a, c, pos, 1.0).item() == pytest.approx(math.log(1 + 2 * math.exp(-1)))
    assert info_nce(a, c, pos, 0.5).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)))
    # two positives: each against the negatives only, averaged
    pos2 = torch.tensor([[True, True, False]])
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2  # s = 1 and s = 0 vs one s = 0
    assert info_nce(a, c, pos2, 1.0).item() == pytest.approx(expected)
    # anchors without a positive are skipped; ignored cells (neither mask) drop out
    a2 = torch.cat([a, a])
    pos3 = torch.tensor([[True, False, False], [False, False, False]])
    assert info_nce(a2, c, pos3, 1.0).item() == pytest.approx(math.log(1 + 2 * math.exp(-1)))
    neg = torch.tensor([[False, True, False], [False, False, False]])
    assert info_nce(a2, c, pos3, 1.0, neg).item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_info_nce_gradients_finite_without_negatives():
    a = torch.randn(3, 4, requires_grad=True)
    pos = torch.eye(3, dtype=torch.bool)
    loss = info_nce(a, a, pos, 0.2, negative_mask=torch.zeros(3, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(a.grad).all()


def test_ge2e_kws_hand_values():
    e0, e1 = [1.0, 0.0], [0.0, 1.0]
    # 2 phrases x 2 utterances: centroid k (utterance 0) vs tests (utterance 1)
    emb = torch.tensor([[e0, e0], [e1, e1]])
    loss_fn = GE2EKWSLoss(init_scale=10.0)
    assert loss_fn(emb).item() == pytest.approx(-10.0, abs=1e-5)  # log e^0 - log e^10
    # 2 phrases x 4: each phrase's 2nd test clip looks like the other phrase, so the positive
    # and negative sums are equal: log(e^0 + e^10) - log(e^10 + e^0) = 0
    emb = torch.tensor([[e0, e0, e0, e1], [e1, e1, e1, e0]])
    assert loss_fn(emb).item() == pytest.approx(0.0, abs=1e-5)
    # ragged classes, scale 2: class 5 enrols e0 and tests e0; class 9 enrols e1 and e0 (its
    # 1st and 3rd clips) and tests e1. c_5 = e0: log e^0 - log e^2 = -2; c_9 = (e0 + e1)/√2 is
    # equally close to both tests: 0. Mean -1.
    ragged = ge2e_kws_loss(torch.tensor([e0, e0, e1, e1, e0]), torch.tensor([5, 5, 9, 9, 9]), 2.0)
    assert ragged.item() == pytest.approx(-1.0, abs=1e-5)
    torch.manual_seed(0)
    emb = torch.randn(4, 6, 8, requires_grad=True)
    loss = loss_fn(emb)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and loss_fn.log_scale.grad is not None


def test_enrolment_scores_prefer_matching_class():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(5, 16), dim=-1)
    enrol = centres[2] + 0.1 * torch.randn(10, 16)
    test = centres.repeat_interleave(4, 0) + 0.1 * torch.randn(20, 16)
    scores = enrolment_scores(enrol, test)
    assert scores.shape == (20,) and (scores.abs() <= 1 + 1e-6).all()
    own = scores[8:12]
    assert own.min() > torch.cat([scores[:8], scores[12:]]).max()


def test_phonmatch_encoder_stream_follows_the_encoder_frame_rate():
    # E at 20 ms (the pretrained front end) is not upsampled: the stream stays on the 20 ms grid
    # of the fbank conv stream; at 40 ms it is upsampled twofold.
    gen = torch.Generator().manual_seed(5)
    batch = _random_batch(gen, [(9, 4), (12, 6)])
    for seconds, ratio in ((0.04, 2), (0.02, 1)):
        head = build_head("phonmatch", {"encoder_frame_seconds": seconds}, D)
        y, lengths = head.pretrained_stream(batch)
        assert lengths.tolist() == [ratio * 9, ratio * 12] and y.shape[1] == ratio * 12
        head.eval()
        assert head(batch).shape == (2,)
    with pytest.raises(ValueError, match="encoder_frame_seconds"):
        build_head("phonmatch", {"encoder_frame_seconds": 0.03}, D)
