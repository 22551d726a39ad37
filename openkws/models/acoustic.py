"""The acoustic model: waveform -> log-mel front end -> global CMVN -> Conformer -> E (and CTC
log-probs).

Everything from raw 16 kHz samples to embeddings lives in one module, so a model file always
carries its own front end (its settings, normalisation statistics and, for hama's front end, its
mel matrix). The front end is whichever ``FbankConfig.kind`` names (Kaldi fbank by default, hama's
log-mel for the pretrained model); its module is ``model.fbank`` either way. Frame timing comes
from the model (``frame_samples``, ``num_frames``), never from a constant.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from openkws.checkpoint import safe_torch_load
from openkws.config import from_dict
from openkws.features import FbankConfig, build_frontend, frontend_config
from openkws.features import num_frames as feature_frames
from openkws.models.conformer import Conformer, ConformerConfig
from openkws.models.ctc import CTCHead
from openkws.text import NUM_PHONEMES


@dataclass
class AcousticConfig:
    encoder: ConformerConfig = field(default_factory=ConformerConfig)
    vocab_size: int = NUM_PHONEMES
    # A second CTC layer on the output of encoder block ``ctc_mix_layer`` (1-based; 0: none), its
    # posteriors mixed into the last layer's with weight ``ctc_mix_weight``: model (c) keeps the
    # pretrained output layer on its frozen pretrained blocks beside the new layer on its new
    # blocks, an ensemble of two readings of the same frames (openkws.models.pretrained).
    ctc_mix_layer: int = 0
    ctc_mix_weight: float = 0.2


class AcousticModel(nn.Module):
    def __init__(self, cfg: AcousticConfig = AcousticConfig(), frontend: FbankConfig | dict = FbankConfig()):
        super().__init__()
        frontend = frontend_config(frontend)
        self.cfg = cfg
        self.fbank = build_frontend(frontend)
        self.register_buffer("feat_mean", torch.zeros(frontend.num_mel_bins))
        self.register_buffer("feat_std", torch.ones(frontend.num_mel_bins))
        self.encoder = Conformer(cfg.encoder)
        self.ctc = CTCHead(cfg.encoder.d_model, cfg.vocab_size)
        self.ctc_mix = None
        if cfg.ctc_mix_layer:
            if not 0 < cfg.ctc_mix_layer <= cfg.encoder.num_layers:
                raise ValueError(f"ctc_mix_layer must be in 1..{cfg.encoder.num_layers} (encoder blocks), "
                                 f"got {cfg.ctc_mix_layer}")
            if not 0 < cfg.ctc_mix_weight < 1:
                raise ValueError(f"ctc_mix_weight must be in (0, 1), got {cfg.ctc_mix_weight}")
            self.ctc_mix = CTCHead(cfg.encoder.d_model, cfg.vocab_size)

    @property
    def d_model(self) -> int:
        return self.cfg.encoder.d_model

    @property
    def frontend_config(self) -> FbankConfig:
        return self.fbank.cfg

    @property
    def frame_samples(self) -> int:
        """Waveform samples per encoder frame (640 = 40 ms for the Kaldi/Conv2d model, 320 = 20 ms
        for hama's)."""
        return self.fbank.cfg.frame_shift * self.encoder.subsampling_factor

    @property
    def frame_seconds(self) -> float:
        return self.frame_samples / self.fbank.cfg.sample_rate

    def num_frames(self, num_samples):
        """Encoder frames for clips of ``num_samples`` samples (an int or a tensor, same kind back)."""
        return self.encoder.output_lengths(feature_frames(num_samples, self.fbank.cfg))

    def features(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mel features (B, T, 80) and their lengths."""
        feats, feat_lengths = self.fbank(wave, lengths)
        return (feats - self.feat_mean) / self.feat_std, feat_lengths

    @torch.no_grad()
    def set_normalisation(self, feats: torch.Tensor) -> None:
        """Global CMVN from a (N, 80) sample of training frames."""
        self.feat_mean.copy_(feats.mean(0))
        self.feat_std.copy_(feats.std(0).clamp(min=1e-3))

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor,
               mixed: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised features -> embeddings E (B, T', d), their lengths and the CTC
        log-probabilities (B, T', V): with a ``ctc_mix`` layer, log((1 - w) p + w p_mix) unless
        ``mixed=False`` (the last layer's own, which is what training fits)."""
        if self.ctc_mix is None:
            enc, enc_lengths = self.encoder(feats, feat_lengths)
            return enc, enc_lengths, self.ctc(enc.float())
        enc, enc_lengths, hidden = self.encoder(feats, feat_lengths, keep_layer=self.cfg.ctc_mix_layer)
        log_probs = self.ctc(enc.float())
        if mixed:
            w = self.cfg.ctc_mix_weight
            log_probs = torch.logaddexp(log_probs + math.log(1 - w), self.ctc_mix(hidden.float()) + math.log(w))
        return enc, enc_lengths, log_probs

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor, feature_transform=None,
                log_probs: bool = False, mixed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (B, N) at 16 kHz -> embeddings E (B, T', d) and their lengths, or CTC
        log-probabilities (B, T', V) with ``log_probs=True`` (``mixed``: see :meth:`encode`).
        ``feature_transform(feats, lengths)`` (e.g. SpecAugment) is applied to the normalised
        features in training."""
        feats, feat_lengths = self.features(wave, lengths)
        if feature_transform is not None:
            feats = feature_transform(feats, feat_lengths)
        if not log_probs:
            return self.encoder(feats, feat_lengths)
        _, enc_lengths, lp = self.encode(feats, feat_lengths, mixed)
        return lp, enc_lengths


def acoustic_state(model: AcousticModel) -> dict:
    """What rebuilds the model: its config, front end and weights (plain types + tensors)."""
    return {"acoustic_config": asdict(model.cfg), "frontend": model.fbank.cfg.to_dict()}


PRETRAINED = "hama"  # names the pretrained real-speech model (openkws.models.pretrained) where a path is expected


def load_acoustic(path: str | Path, map_location="cpu") -> AcousticModel:
    """Load an acoustic model from a CTC experiment's ``best_model.pt`` or ``checkpoint.pt``, or
    ``"hama"``: the pretrained real-speech Conformer of the installed hama wheel, not fine-tuned."""
    if str(path) == PRETRAINED:
        from openkws.models.pretrained import pretrained_acoustic

        return pretrained_acoustic()
    state = safe_torch_load(path, map_location)
    if "acoustic_config" not in state:
        raise ValueError(f"{path}: not an openkws acoustic-model checkpoint (no acoustic_config)")
    model = AcousticModel(from_dict(AcousticConfig, state["acoustic_config"]), frontend_config(state["frontend"]))
    model.load_state_dict(state.get("state_dict") or state["model"])
    return model.eval()
