"""PhonMatchNet (Lee & Cho, Interspeech 2023), after the official code (ALGORITHMS.md §B).

audio: frozen pretrained stream + a trainable conv stream on the fbank (two Conv1d + BN + ReLU,
       10 -> 20 ms), summed. The pretrained stream (``pretrained_stream``) is either the Conformer
       embeddings E, upsampled 40 -> 20 ms by a ConvTranspose1d + LeakyReLU ("encoder"), or an
       external frozen stream (openkws.streams): Google's speech embedding as in the paper
       ("gse", 80 ms) or a Hugging Face speech encoder ("hf:<dir or hub id>"), whose features
       (PairBatch.stream) a small trainable adapter maps to dim at 20 ms;
text:  frozen g2p_en decoder states per phoneme -> Dense + LeakyReLU;
extractor: [valid audio frames ; valid text tokens] packed left, one single-head self-attention
       with a causal mask (no residual, LayerNorm or FFN, as in the original);
discriminator: GRU over the whole valid sequence -> last state -> utterance logit, and a
       per-position linear layer on the text positions -> phoneme logits.
loss = utt_weight * mean BCE(utterance) + phone_weight * mean BCE(valid text positions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openkws.models.heads import (
    Head,
    PairBatch,
    binary_stats,
    last_state,
    length_mask,
    masked_bce,
    register_head,
)
from openkws.streams import build_stream
from openkws.text.g2p_embed import G2pDecoderEmbedding

FRAME_SECONDS = 0.02  # the audio embedding's frame rate


@dataclass
class PhonMatchConfig:
    dim: int = 128
    n_mels: int = 80
    audio_input: str = "both"  # "both" | "conv" (trainable stream only) | "pretrained" (frozen only)
    # the frozen stream: "encoder" (the acoustic encoder's E) | "gse" | "hf:<local dir or hub id>"
    pretrained_stream: str = "encoder"
    leaky_slope: float = 0.3  # Keras' LeakyReLU default, as in the official TF code
    utt_weight: float = 1.0
    phone_weight: float = 1.0
    # frame shift of the acoustic encoder's E (0.04 s for the Kaldi-fbank Conformer, 0.02 for the
    # pretrained one); the head trainer sets it from the acoustic model
    encoder_frame_seconds: float = 0.04


class ConvStream(nn.Module):
    """Trainable stream: fbank (B, T, n_mels) at 10 ms -> (B, ceil(T/2), dim) at 20 ms."""

    def __init__(self, n_mels: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm1d(dim)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(dim)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = feats * length_mask(lengths, feats.shape[1]).unsqueeze(-1)  # zeros = "same" padding
        lengths = (lengths + 1) // 2
        x = self.conv1(x.transpose(1, 2)).transpose(1, 2)
        x = _masked_bn_relu(self.bn1, x, lengths)
        x = self.conv2(x.transpose(1, 2)).transpose(1, 2)
        return _masked_bn_relu(self.bn2, x, lengths), lengths


def _masked_bn_relu(bn: nn.BatchNorm1d, x: Tensor, lengths: Tensor) -> Tensor:
    """BN over the valid frames only (batch statistics must not depend on how much padding the
    batch holds); padded frames come out zero."""
    mask = length_mask(lengths, x.shape[1])
    out = x.new_zeros(x.shape)
    out[mask] = F.relu(bn(x[mask]))
    return out


class EncoderStream(nn.Module):
    """Frozen pretrained stream: the acoustic encoder's E (B, n, d) at 40 ms, upsampled to
    (B, 2n, dim) at 20 ms, or at 20 ms, projected to (B, n, dim) by a convolution of the same
    reach. Another pretrained stream plugs in with the same signature."""

    def __init__(self, d_model: int, dim: int, leaky_slope: float, encoder_frame_seconds: float = 0.04):
        super().__init__()
        self.ratio = round(encoder_frame_seconds / FRAME_SECONDS)  # 20 ms frames per encoder frame
        if abs(self.ratio * FRAME_SECONDS - encoder_frame_seconds) > 1e-6:
            self.ratio = 0  # not a whole number of 20 ms frames: rejected below
        if self.ratio == 2:
            self.up = nn.ConvTranspose1d(d_model, dim, kernel_size=4, stride=2, padding=1)  # 2n out
        elif self.ratio == 1:
            self.up = nn.Conv1d(d_model, dim, kernel_size=3, padding=1)
        else:
            raise ValueError(f"phonmatch.encoder_frame_seconds must be 0.04 or 0.02, got {encoder_frame_seconds}")
        self.leaky_slope = leaky_slope

    def forward(self, batch: PairBatch) -> tuple[Tensor, Tensor]:
        audio = batch.audio * length_mask(batch.audio_lengths, batch.audio.shape[1]).unsqueeze(-1)
        y = F.leaky_relu(self.up(audio.transpose(1, 2)).transpose(1, 2), self.leaky_slope)
        lengths = self.ratio * batch.audio_lengths
        return y * length_mask(lengths, y.shape[1]).unsqueeze(-1), lengths


class StreamAdapter(nn.Module):
    """Trainable adapter for an external frozen stream: PairBatch.stream (B, S, in_dim) at
    ``frame_seconds`` -> LayerNorm (GSE values reach +-60; HF hidden states have outlier
    dimensions) -> Linear + LeakyReLU -> (B, L, dim) at 20 ms, each 20 ms frame i taking stream
    frame floor(i * 0.02 / frame_seconds) (80 ms GSE frames are repeated 4 times, 20 ms HF frames
    map one to one), so both start at t = 0 like the conv stream."""

    def __init__(self, in_dim: int, dim: int, frame_seconds: float, leaky_slope: float):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, dim)
        self.ratio = frame_seconds / FRAME_SECONDS  # 20 ms frames per stream frame
        self.leaky_slope = leaky_slope

    def out_lengths(self, lengths: Tensor) -> Tensor:
        return torch.ceil(lengths * self.ratio - 1e-6).long().clamp(min=1)

    def forward(self, batch: PairBatch) -> tuple[Tensor, Tensor]:
        if batch.stream is None:
            raise ValueError("PairBatch lacks stream, which PhonMatchNet's pretrained_stream needs "
                             "(openkws.streams.stream_kwargs computes it from the waveforms)")
        y = F.leaky_relu(self.proj(self.norm(batch.stream.float())), self.leaky_slope)
        lengths = self.out_lengths(batch.stream_lengths)
        index = torch.floor(torch.arange(int(lengths.max()), device=y.device) / self.ratio + 1e-6).long()
        y = y[:, index.clamp(max=y.shape[1] - 1)]
        return y * length_mask(lengths, y.shape[1]).unsqueeze(-1), lengths


@register_head
class PhonMatchNet(Head):
    name = "phonmatch"
    needs_feats = True  # its trainable conv stream reads the fbank
    config_class = PhonMatchConfig

    def __init__(self, cfg: PhonMatchConfig, d_model: int, pretrained_stream: nn.Module | None = None):
        super().__init__()
        if cfg.audio_input not in ("both", "conv", "pretrained"):
            raise ValueError(f"phonmatch.audio_input must be both/conv/pretrained, got {cfg.audio_input!r}")
        self.cfg = cfg
        d = cfg.dim
        self.conv_stream = ConvStream(cfg.n_mels, d) if cfg.audio_input != "pretrained" else None
        if cfg.audio_input == "conv":  # no frozen stream at all (pretrained_stream is ignored)
            self.pretrained_stream = None
        elif pretrained_stream is not None:  # any module: batch -> (B, L, dim) at 20 ms + lengths
            self.pretrained_stream = pretrained_stream
        elif cfg.pretrained_stream == "encoder":
            self.pretrained_stream = EncoderStream(d_model, d, cfg.leaky_slope, cfg.encoder_frame_seconds)
        else:  # an external frozen stream: a plain attribute, never in the state_dict
            try:
                self.stream = build_stream(cfg.pretrained_stream)
            except ValueError as e:
                raise ValueError(f"phonmatch.pretrained_stream: 'encoder' or a frozen stream; {e}") from e
            self.pretrained_stream = StreamAdapter(self.stream.dim, d, self.stream.frame_seconds, cfg.leaky_slope)
        self.g2p = G2pDecoderEmbedding()
        self.text_proj = nn.Linear(self.g2p.dim, d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.gru = nn.GRU(d, d, batch_first=True)
        self.utt_head = nn.Linear(d, 1)
        self.phone_head = nn.Linear(d, 1)

    def encode_audio(self, batch: PairBatch) -> tuple[Tensor, Tensor]:
        """Two-stream audio embedding (B, L, dim) at 20 ms and its lengths. Each distinct clip is
        encoded once (inference pairs one clip with every keyword)."""
        clip, first = batch.clip_groups()
        clips = batch.select(first)
        if self.conv_stream is None:
            x, lengths = self.pretrained_stream(clips)
            return x[clip], lengths[clip]
        if clips.feats is None:
            raise ValueError("PairBatch lacks feats, which PhonMatchNet's conv stream needs")
        x, lengths = self.conv_stream(clips.feats, clips.feat_lengths)
        if self.pretrained_stream is not None:
            y, _ = self.pretrained_stream(clips)  # zero past its own length; aligned at t = 0
            y = F.pad(y, (0, 0, 0, max(0, x.shape[1] - y.shape[1])))[:, : x.shape[1]]
            x = x + y
        return x[clip], lengths[clip]

    def encode_text(self, batch: PairBatch) -> Tensor:
        t = F.leaky_relu(self.text_proj(self.g2p(batch.phoneme_ids)), self.cfg.leaky_slope)
        return t * length_mask(batch.text_lengths, t.shape[1]).unsqueeze(-1)

    def extract(self, batch: PairBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention output over [audio; text] (B, L, dim), sequence lengths, and the index
        of each text position in it (B, m)."""
        audio, a_len = self.encode_audio(batch)
        text, t_len = self.encode_text(batch), batch.text_lengths
        seq, lengths, text_pos = _concat_left(audio, a_len, text, t_len)
        size = seq.shape[1]
        causal = torch.ones(size, size, dtype=torch.bool, device=seq.device).tril()
        allowed = causal & length_mask(lengths, size)[:, None, :]  # row 0 always has a valid key
        att = (self.q(seq) @ self.k(seq).transpose(1, 2)) / math.sqrt(seq.shape[-1])
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        return self.o(att @ self.v(seq)), lengths, text_pos

    def logits(self, batch: PairBatch) -> tuple[Tensor, Tensor]:
        """Utterance logits (B,) and phoneme logits (B, m) (meaningless past text_lengths)."""
        out, lengths, text_pos = self.extract(batch)
        utt = self.utt_head(last_state(self.gru, out, lengths)).squeeze(-1)
        text_out = out.gather(1, text_pos.unsqueeze(-1).expand(-1, -1, out.shape[-1]))
        return utt, self.phone_head(text_out).squeeze(-1)

    def forward(self, batch: PairBatch) -> Tensor:
        return self.logits(batch)[0]

    def loss(self, batch: PairBatch) -> tuple[Tensor, dict[str, float]]:
        batch.require("labels", "phone_labels")
        utt, phone = self.logits(batch)
        utt_loss = F.binary_cross_entropy_with_logits(utt, batch.labels)
        mask = length_mask(batch.text_lengths, phone.shape[1])
        phone_loss = masked_bce(phone, batch.phone_labels, mask)
        loss = self.cfg.utt_weight * utt_loss + self.cfg.phone_weight * phone_loss
        return loss, {"loss": loss.item(), "utt": utt_loss.item(), "phone": phone_loss.item(),
                      **binary_stats(utt.detach(), batch.labels)}


def _concat_left(a: Tensor, a_len: Tensor, t: Tensor, t_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per item: its a_len valid audio rows then its t_len valid text rows, packed left and
    zero-padded: (B, max(a_len + t_len), D), the lengths, and the text rows' positions (B, m)."""
    lengths = a_len + t_len
    pos = torch.arange(int(lengths.max()), device=a.device)[None, :]  # (1, L)
    a_idx = pos.clamp(max=a.shape[1] - 1).expand(len(a), -1)
    t_idx = (pos - a_len[:, None]).clamp(0, t.shape[1] - 1)
    a_rows = a.gather(1, a_idx.unsqueeze(-1).expand(-1, -1, a.shape[-1]))
    t_rows = t.gather(1, t_idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
    is_audio = (pos < a_len[:, None]).unsqueeze(-1)
    valid = (pos < lengths[:, None]).unsqueeze(-1)
    seq = torch.where(is_audio, a_rows, t_rows * valid)
    text_pos = (a_len[:, None] + torch.arange(t.shape[1], device=a.device)).clamp(max=seq.shape[1] - 1)
    return seq, lengths, text_pos
