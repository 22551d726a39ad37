"""The acoustic model: waveform -> fbank -> global CMVN -> Conformer -> E (and CTC log-probs).

Everything from raw 16 kHz samples to embeddings lives in one module, so a model file always
carries its own front end (the fbank settings and the normalisation statistics).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from openkws.checkpoint import safe_torch_load
from openkws.config import from_dict
from openkws.features import Fbank, FbankConfig
from openkws.models.conformer import Conformer, ConformerConfig
from openkws.models.ctc import CTCHead
from openkws.text import NUM_PHONEMES


@dataclass
class AcousticConfig:
    encoder: ConformerConfig = field(default_factory=ConformerConfig)
    vocab_size: int = NUM_PHONEMES


class AcousticModel(nn.Module):
    def __init__(self, cfg: AcousticConfig = AcousticConfig(), frontend: FbankConfig = FbankConfig()):
        super().__init__()
        self.cfg = cfg
        self.fbank = Fbank(frontend)
        self.register_buffer("feat_mean", torch.zeros(frontend.num_mel_bins))
        self.register_buffer("feat_std", torch.ones(frontend.num_mel_bins))
        self.encoder = Conformer(cfg.encoder)
        self.ctc = CTCHead(cfg.encoder.d_model, cfg.vocab_size)

    @property
    def d_model(self) -> int:
        return self.cfg.encoder.d_model

    def features(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mel features (B, T, 80) and their lengths."""
        feats, feat_lengths = self.fbank(wave, lengths)
        return (feats - self.feat_mean) / self.feat_std, feat_lengths

    @torch.no_grad()
    def set_normalisation(self, feats: torch.Tensor) -> None:
        """Global CMVN from a (N, 80) sample of training frames."""
        self.feat_mean.copy_(feats.mean(0))
        self.feat_std.copy_(feats.std(0).clamp(min=1e-3))

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor, feature_transform=None,
                log_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (B, N) at 16 kHz -> embeddings E (B, T', d) and their lengths, or CTC
        log-probabilities (B, T', V) with ``log_probs=True``. ``feature_transform(feats, lengths)``
        (e.g. SpecAugment) is applied to the normalised features in training."""
        feats, feat_lengths = self.features(wave, lengths)
        if feature_transform is not None:
            feats = feature_transform(feats, feat_lengths)
        enc, enc_lengths = self.encoder(feats, feat_lengths)
        return (self.ctc(enc.float()), enc_lengths) if log_probs else (enc, enc_lengths)


def acoustic_state(model: AcousticModel) -> dict:
    """What rebuilds the model: its config, front end and weights (plain types + tensors)."""
    return {"acoustic_config": asdict(model.cfg), "frontend": model.fbank.cfg.to_dict()}


def load_acoustic(path: str | Path, map_location="cpu") -> AcousticModel:
    """Load an acoustic model from a CTC experiment's ``best_model.pt`` or ``checkpoint.pt``."""
    state = safe_torch_load(path, map_location)
    if "acoustic_config" not in state:
        raise ValueError(f"{path}: not an openkws acoustic-model checkpoint (no acoustic_config)")
    model = AcousticModel(from_dict(AcousticConfig, state["acoustic_config"]),
                          from_dict(FbankConfig, state["frontend"]))
    model.load_state_dict(state.get("state_dict") or state["model"])
    return model.eval()
