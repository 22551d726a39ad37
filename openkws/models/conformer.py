"""Conformer encoder (Gulati et al. 2020) with 4x convolutional subsampling (10 ms -> 40 ms frames).

Default size is CED's audio encoder: 6 blocks, d=144, 4 heads, FFN 576. Batch norm in the
convolution module is replaced by layer norm so that outputs do not depend on what else is in
the batch (padding, streaming windows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


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


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frame count after two stride-2 convolutions with kernel 3 and no padding."""
    return (torch.div(lengths - 1, 2, rounding_mode="floor") - 1).div(2, rounding_mode="floor").clamp(min=0)


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
    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pointwise_in = nn.Conv1d(d, 2 * d, 1)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.depth_norm = nn.LayerNorm(d)
        self.pointwise_out = nn.Conv1d(d, d, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(x) * mask.unsqueeze(-1)  # zero padding so it cannot leak into valid frames
        x = F.glu(self.pointwise_in(x.transpose(1, 2)), dim=1)
        x = self.depthwise(x * mask.unsqueeze(1))
        x = F.silu(self.depth_norm(x.transpose(1, 2)))
        return self.dropout(self.pointwise_out(x.transpose(1, 2)).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, cfg.num_heads, dropout=cfg.dropout, batch_first=True)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout)
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
    """``(B, T, input_dim)`` features + lengths -> ``(B, T/4, d_model)`` + lengths."""

    def __init__(self, cfg: ConformerConfig = ConformerConfig()):
        super().__init__()
        self.cfg = cfg
        self.subsampling = Subsampling(cfg.input_dim, cfg.subsampling_channels, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.num_layers))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feats.shape[1] < 7:  # the two convolutions need 7 input frames for one output frame
            feats = F.pad(feats, (0, 0, 0, 7 - feats.shape[1]))
        x = self.subsampling(feats)
        out_lengths = subsampled_lengths(lengths).clamp(max=x.shape[1])
        mask = padding_mask(out_lengths, x.shape[1])
        # Rows with no valid frame would make attention softmax NaN; give them one dummy key.
        mask_for_attn = mask.clone()
        mask_for_attn[:, 0] = True
        x = self.dropout(x + sinusoidal_positions(x.shape[1], x.shape[2], x.device))
        for block in self.blocks:
            x = block(x, mask_for_attn)
        return x * mask.unsqueeze(-1), out_lengths
