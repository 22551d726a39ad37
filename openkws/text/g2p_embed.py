"""g2p_en's decoder as a frozen phoneme-sequence embedder (PhonMatchNet's text input, §B.2).

PhonMatchNet records the g2p_en decoder's GRU hidden state (256-d) at every phoneme it emits
while spelling a word. Here the same decoder is run TEACHER-FORCED over a given phoneme sequence
from a zero initial state: input ``<s>``, then p_1 .. p_m, and the state after reading p_k is
the embedding of position k. No spelling (encoder) is needed, so any phoneme string works,
including mutated confusable ones. (PhonMatchNet's state at p_k has read p_1..p_{k-1} plus the
spelling; with no spelling the state must read p_k itself to carry it.) Word separators are not
inserted: openkws phoneme sequences carry no word boundaries.

openkws phoneme ids are g2p_en decoder ids (same order, blank <-> ``<pad>``), so no mapping is
needed. The weights are read straight from g2p_en's ``checkpoint20.npz`` (importing g2p_en
itself would try to download NLTK data) into non-persistent buffers: they are frozen, never
optimised, not counted as parameters and not written into model files.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from openkws.text.phonemes import NUM_PHONEMES

START_ID = 2  # g2p_en's <s>


def checkpoint_path() -> Path:
    spec = importlib.util.find_spec("g2p_en")
    if spec is None or spec.origin is None:
        raise RuntimeError("g2p_en is not installed; it ships the decoder weights (checkpoint20.npz)")
    return Path(spec.origin).parent / "checkpoint20.npz"


class G2pDecoderEmbedding(nn.Module):
    """Phoneme ids (B, m) (0 = padding) -> decoder hidden states (B, m, 256), zero at padding."""

    cache_size = 8

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self._cache: OrderedDict[tuple, Tensor] = OrderedDict()
        w = np.load(path or checkpoint_path())
        if w["dec_emb"].shape[0] != NUM_PHONEMES:
            raise ValueError(f"g2p_en decoder has {w['dec_emb'].shape[0]} symbols, openkws {NUM_PHONEMES}")
        for name in ("dec_emb", "dec_w_ih", "dec_w_hh", "dec_b_ih", "dec_b_hh"):
            self.register_buffer(name, torch.from_numpy(w[name].copy()), persistent=False)

    @property
    def dim(self) -> int:
        return self.dec_w_hh.shape[1]

    @torch.no_grad()
    def forward(self, phoneme_ids: Tensor) -> Tensor:
        if self.training:
            return self._embed(phoneme_ids)
        # Inference scores the same keyword set against window after window: remember the last
        # few id batches (training batches never repeat, so nothing is cached there). Tensors
        # made under inference_mode may only go back to inference_mode callers, hence the flag.
        key = (torch.is_inference_mode_enabled(), str(phoneme_ids.device), tuple(phoneme_ids.shape),
               phoneme_ids.cpu().numpy().tobytes())
        if key in self._cache:
            self._cache.move_to_end(key)
        else:
            self._cache[key] = self._embed(phoneme_ids)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return self._cache[key]

    def _embed(self, phoneme_ids: Tensor) -> Tensor:
        # Identical rows (the same keyword in many pairs) are embedded once.
        unique, inverse = torch.unique(phoneme_ids, dim=0, return_inverse=True)
        start = torch.full_like(unique[:, :1], START_ID)
        x = self.dec_emb[torch.cat([start, unique], 1)]
        gates_x = x @ self.dec_w_ih.T + self.dec_b_ih  # input projections for all steps at once
        h = x.new_zeros(len(unique), self.dim)
        states = []
        for t in range(gates_x.shape[1]):  # a GRU cell in g2p_en's (= PyTorch's) gate order r, z, n
            gx_rz, gx_n = gates_x[:, t].split([2 * self.dim, self.dim], -1)
            gh_rz, gh_n = (h @ self.dec_w_hh.T + self.dec_b_hh).split([2 * self.dim, self.dim], -1)
            r, z = torch.sigmoid(gx_rz + gh_rz).chunk(2, -1)
            h = (1 - z) * torch.tanh(gx_n + r * gh_n) + z * h
            states.append(h)
        out = torch.stack(states[1:], 1) * (unique != 0).unsqueeze(-1)  # drop the <s> step
        return out[inverse]
