"""Conformer encoder (Gulati et al. 2020) with convolutional subsampling.

Default size is CED's audio encoder: 6 blocks, d=144, 4 heads, FFN 576, 4x Conv2d subsampling
(10 ms -> 40 ms frames), sinusoidal positions. Batch norm in the convolution module is replaced
by layer norm so that outputs do not depend on what else is in the batch (padding, streaming
windows).

The same module also expresses hama 1.7.0's pretrained phoneme Conformer
(:func:`hama_conformer_config`, weights in :mod:`openkws.models.pretrained`): 2x Conv1d stem +
GELU (20 ms frames), no positional encoding, 4 blocks, depthwise kernel 31 with its batch norm
folded into weights and bias (``conv_norm="none"``). Every option defaults to the original
network, so older configs and state_dict keys are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


SUBSAMPLING_FACTORS = {"conv2d": 4, "conv1d": 2}  # feature frames per encoder frame


@dataclass
class ConformerConfig:
    input_dim: int = 80
    d_model: int = 144
    num_layers: int = 6
    num_heads: int = 4
    ffn_dim: int = 576
    conv_kernel: int = 15
    dropout: float = 0.1
    subsampling_channels: int = 112  # 112, not d: keeps encoder + all three heads under 4M parameters
    # "conv2d": two Conv2d(3, stride 2) + ReLU + Linear, 4x (the CED encoder);
    # "conv1d": one Conv1d(input_dim -> d, 3, stride 2, padding 1) + erf-GELU, 2x (hama's stem).
    subsampling: str = "conv2d"
    positional: str = "sinusoidal"  # "sinusoidal" | "none"
    conv_norm: str = "layer"  # norm after the depthwise conv: "layer" | "none" (batch norm folded in)

    def __post_init__(self):
        for name, allowed in (("subsampling", SUBSAMPLING_FACTORS), ("positional", ("sinusoidal", "none")),
                              ("conv_norm", ("layer", "none"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ConformerConfig.{name}={getattr(self, name)!r}; expected one of {list(allowed)}")


def hama_conformer_config(dropout: float = 0.1) -> ConformerConfig:
    """The shape of hama 1.7.0's ASR Conformer (2.0M parameters with its 191-way output layer)."""
    return ConformerConfig(input_dim=80, d_model=144, num_layers=4, num_heads=4, ffn_dim=576, conv_kernel=31,
                           dropout=dropout, subsampling="conv1d", positional="none", conv_norm="none")


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frame count after two stride-2 convolutions with kernel 3 and no padding."""
    return (torch.div(lengths - 1, 2, rounding_mode="floor") - 1).div(2, rounding_mode="floor").clamp(min=0)


def conv1d_subsampled_lengths(lengths):
    """Frame count after one stride-2 convolution with kernel 3 and padding 1: ceil(T / 2)."""
    if isinstance(lengths, torch.Tensor):
        return torch.div(lengths + 1, 2, rounding_mode="floor").clamp(min=0)
    return max(0, (int(lengths) + 1) // 2)


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """True at valid positions, (B, max_len)."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class Subsampling(nn.Module):
    def __init__(self, input_dim: int, channels: int, d_model: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, channels, 3, 2), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2), nn.ReLU())
        freq = ((input_dim - 1) // 2 - 1) // 2
        self.proj = nn.Linear(channels * freq, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        return self.proj(x.transpose(1, 2).reshape(b, t, c * f))


# hama's engine computes erf-GELU as 0.5 x (1 + erf(x / s)) with s = sqrt(2) rounded to float16
# (1.4140625, not 1.41421356); torch's exact GELU differs by up to 3e-5, so the stem uses the constant.
HAMA_GELU_SQRT2 = 1.4140625


class Conv1dSubsampling(nn.Module):
    """(B, T, input_dim) -> (B, ceil(T/2), d): Conv1d(k 3, stride 2, zero padding 1) + erf-GELU."""

    def __init__(self, input_dim: int, d_model: int):
        super().__init__()
        self.conv = nn.Conv1d(input_dim, d_model, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return 0.5 * x * (1.0 + torch.erf(x / HAMA_GELU_SQRT2))


def sinusoidal_positions(length: int, dim: int, device) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


class FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, d), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int, dropout: float, norm: str = "layer"):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pointwise_in = nn.Conv1d(d, 2 * d, 1)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.depth_norm = nn.LayerNorm(d) if norm == "layer" else None
        self.pointwise_out = nn.Conv1d(d, d, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(x) * mask.unsqueeze(-1)  # zero padding so it cannot leak into valid frames
        x = F.glu(self.pointwise_in(x.transpose(1, 2)), dim=1)
        x = self.depthwise(x * mask.unsqueeze(1))
        x = x.transpose(1, 2)
        x = F.silu(self.depth_norm(x) if self.depth_norm is not None else x)
        return self.dropout(self.pointwise_out(x.transpose(1, 2)).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, cfg.num_heads, dropout=cfg.dropout, batch_first=True)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout, cfg.conv_norm)
        self.ff2 = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.out_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        h = self.attn_norm(x)
        h, _ = self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)
        x = x + self.attn_dropout(h)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x)


class Conformer(nn.Module):
    """``(B, T, input_dim)`` features + lengths -> ``(B, T/f, d_model)`` + lengths, f =
    ``subsampling_factor`` (4 for conv2d, 2 for conv1d). A clip's output does not depend on the
    padding or the other clips in its batch."""

    def __init__(self, cfg: ConformerConfig = ConformerConfig()):
        super().__init__()
        self.cfg = cfg
        if cfg.subsampling == "conv1d":
            self.subsampling = Conv1dSubsampling(cfg.input_dim, cfg.d_model)
        else:
            self.subsampling = Subsampling(cfg.input_dim, cfg.subsampling_channels, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.num_layers))

    @property
    def subsampling_factor(self) -> int:
        """Feature frames per encoder frame."""
        return SUBSAMPLING_FACTORS[self.cfg.subsampling]

    def output_lengths(self, feat_lengths):
        """Encoder frames for ``feat_lengths`` feature frames (an int or a tensor, same kind back)."""
        if self.cfg.subsampling == "conv1d":
            return conv1d_subsampled_lengths(feat_lengths)
        if isinstance(feat_lengths, torch.Tensor):
            return subsampled_lengths(feat_lengths)
        return int(subsampled_lengths(torch.tensor(int(feat_lengths))))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, keep_layer: int = 0):
        """-> ``(output, lengths)``; with ``keep_layer`` = k > 0, ``(output, lengths, hidden)``
        where ``hidden`` is the output of block k (1-based), padding zeroed like the output."""
        if self.cfg.subsampling == "conv1d":
            if feats.shape[1] < 1:
                feats = F.pad(feats, (0, 0, 0, 1))
            # The stem's padding reaches one frame past a clip's end: it must see zeros there, as
            # when the clip is alone, not the next frames of a padded batch.
            feats = feats * padding_mask(lengths, feats.shape[1]).unsqueeze(-1).to(feats.dtype)
        elif feats.shape[1] < 7:  # the two convolutions need 7 input frames for one output frame
            feats = F.pad(feats, (0, 0, 0, 7 - feats.shape[1]))
        x = self.subsampling(feats)
        out_lengths = self.output_lengths(lengths).clamp(max=x.shape[1])
        mask = padding_mask(out_lengths, x.shape[1])
        # Rows with no valid frame would make attention softmax NaN; give them one dummy key.
        mask_for_attn = mask.clone()
        mask_for_attn[:, 0] = True
        if self.cfg.positional == "sinusoidal":
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        x = self.dropout(x)
        if not 0 <= keep_layer <= len(self.blocks):
            raise ValueError(f"keep_layer must be in 0..{len(self.blocks)}, got {keep_layer}")
        hidden = None
        for i, block in enumerate(self.blocks, 1):
            x = block(x, mask_for_attn)
            if i == keep_layer:
                hidden = x * mask.unsqueeze(-1)
        out = x * mask.unsqueeze(-1)
        return (out, out_lengths) if keep_layer == 0 else (out, out_lengths, hidden)
