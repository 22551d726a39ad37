"""hama 1.7.0's pretrained real-speech phoneme CTC model, ported into openkws's own modules.

The PyPI wheel ``hama==1.7.0`` (wheel metadata Apache-2.0, repository hamanlp/hama MIT; training
data not disclosed, see ``openkws/assets/THIRD_PARTY.md``) ships ``hama/assets/asr_waveform.hama``:
a 2.0M-parameter Conformer mapping 16 kHz waveforms to IPA-token CTC log-probabilities at 50
frames/s (191 tokens, blank 190, word boundary 189). :func:`read_hama_archive` parses that file
with numpy alone; the weights go into an :class:`~openkws.models.acoustic.AcousticModel` whose
front end is ``FbankConfig.hama()`` and whose encoder is ``hama_conformer_config()``. hama's
native engine is never needed, except by :func:`hama_engine_log_probs` (to check the port).

- :func:`hama_asr` -- the model as hama ships it: ``module(waves, lengths) -> (log_probs (B, T,
  191), out_lengths)``, batched (a clip's output does not depend on padding or batch-mates).
- :func:`pretrained_acoustic` -- the same network over openkws's phoneme inventory (blank 0): its
  CTC layer is initialised from hama's ``proj`` rows through :mod:`openkws.text.ipa`, ready to
  fine-tune or to use zero-shot.

Do not use either to initialise a model whose LibriPhrase numbers are compared with papers: hama's
training data is unknown and may include LibriSpeech.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import struct
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from openkws.features import FbankConfig
from openkws.models.acoustic import AcousticConfig, AcousticModel
from openkws.models.conformer import hama_conformer_config
from openkws.text import PHONEMES
from openkws.text.ipa import output_layer_rows

HAMA_VERSION = "1.7.0"
HAMA_VOCAB_SIZE = 191
HAMA_BLANK = 190
HAMA_WORD_BOUNDARY = 189
INSTALL_HINT = f"pip install hama=={HAMA_VERSION} (or pip install 'openkws[pretrained]')"

_MAGIC = b"HAMAPK"
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int64, 3: np.int32, 4: np.uint8}  # hama's tools/hama_pack.py
_ALIGN = 16  # the data area starts at the header + table size rounded up to 16 bytes


class HamaNotInstalled(ImportError):
    pass


def hama_asset_path(name: str = "asr_waveform.hama") -> Path:
    """Path of a file in the installed hama wheel's ``hama/assets``; HamaNotInstalled (an
    ImportError) naming the pip command when hama is not installed."""
    spec = importlib.util.find_spec("hama")
    if spec is None or not spec.submodule_search_locations:
        raise HamaNotInstalled(f"hama is not installed; it carries the pretrained phoneme model: {INSTALL_HINT}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "assets" / name
        if path.is_file():
            return path
    raise HamaNotInstalled(f"the installed hama has no assets/{name} (version {_hama_version()}); {INSTALL_HINT}")


def _hama_version() -> str:
    try:
        return importlib.metadata.version("hama")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_hama_archive(path: str | Path, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Tensors of a ``.hama`` weight archive (``names``: only these) as numpy arrays in their
    stored dtype. Format: magic ``HAMAPK``, u8 version, u8 kind, u32 tensor count; per tensor u16
    name length, UTF-8 name, u8 dtype (0 f32, 1 f16, 2 i64, 3 i32, 4 u8), u8 ndim, u32 dims, u64
    offset and u64 byte length relative to the data area, which starts after the table at the next
    multiple of 16 bytes. All little-endian. A bad file raises ValueError naming it."""
    path = Path(path)
    data = path.read_bytes()
    wanted = None if names is None else set(names)

    def fail(problem: str):
        raise ValueError(f"{path}: {problem}")

    if len(data) < 12 or data[:6] != _MAGIC:
        fail(f"not a hama weight archive (magic {data[:6]!r}, expected {_MAGIC!r})")
    version, kind, count = data[6], data[7], struct.unpack_from("<I", data, 8)[0]
    pos, table = 12, []
    try:
        for i in range(count):
            (name_len,) = struct.unpack_from("<H", data, pos)
            pos += 2
            if pos + name_len > len(data):
                raise struct.error
            name = data[pos:pos + name_len].decode("utf-8")
            pos += name_len
            dtype_code, ndim = struct.unpack_from("<BB", data, pos)
            pos += 2
            dims = struct.unpack_from(f"<{ndim}I", data, pos)
            pos += 4 * ndim
            offset, nbytes = struct.unpack_from("<QQ", data, pos)
            pos += 16
            table.append((name, dtype_code, dims, offset, nbytes))
    except struct.error:
        fail(f"truncated: its table of {count} tensors (version {version}, kind {kind}) ends past the "
             f"file's {len(data)} bytes")
    except UnicodeDecodeError:
        fail(f"tensor {len(table)} has a name that is not UTF-8 (corrupt table)")
    start = -(-pos // _ALIGN) * _ALIGN
    out = {}
    for name, dtype_code, dims, offset, nbytes in table:
        if dtype_code not in _DTYPES:
            fail(f"tensor {name!r} has unknown dtype code {dtype_code} (known: {sorted(_DTYPES)})")
        dtype = np.dtype(_DTYPES[dtype_code]).newbyteorder("<")
        expected = math.prod(dims) * dtype.itemsize
        if nbytes != expected:
            fail(f"tensor {name!r}: {nbytes} bytes stored for shape {list(dims)} of {dtype.name} ({expected} expected)")
        if start + offset + nbytes > len(data):
            fail(f"tensor {name!r} reaches byte {start + offset + nbytes}, past the end of the file "
                 f"({len(data)} bytes): truncated or corrupt")
        if wanted is None or name in wanted:
            arr = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=start + offset)
            out[name] = arr.reshape(dims).astype(dtype.newbyteorder("="))
    if wanted is not None and wanted - set(out):
        fail(f"no tensor(s) {sorted(wanted - set(out))}")
    return out


# ---------------------------------------------------------------------------------------------
# hama's tensor names -> our AcousticModel's state_dict


def _block_map(i: int) -> dict[str, str]:
    src, dst = f"acoustic_model.model.blocks.{i}.", f"encoder.blocks.{i}."
    pairs = {
        "ffn1.norm.weight": "ff1.net.0.weight", "ffn1.norm.bias": "ff1.net.0.bias",
        "ffn1.fc1.bias": "ff1.net.1.bias", "ffn1.fc2.bias": "ff1.net.4.bias",
        "attn_norm.weight": "attn_norm.weight", "attn_norm.bias": "attn_norm.bias",
        "attn.in_proj_bias": "attn.in_proj_bias", "attn.out_proj.bias": "attn.out_proj.bias",
        "conv.norm.weight": "conv.norm.weight", "conv.norm.bias": "conv.norm.bias",
        "conv.pointwise1.weight": "conv.pointwise_in.weight", "conv.pointwise1.bias": "conv.pointwise_in.bias",
        "conv.pointwise2.weight": "conv.pointwise_out.weight", "conv.pointwise2.bias": "conv.pointwise_out.bias",
        "ffn2.norm.weight": "ff2.net.0.weight", "ffn2.norm.bias": "ff2.net.0.bias",
        "ffn2.fc1.bias": "ff2.net.1.bias", "ffn2.fc2.bias": "ff2.net.4.bias",
        "norm.weight": "out_norm.weight", "norm.bias": "out_norm.bias",
    }  # fmt: skip
    return {src + k: dst + v for k, v in pairs.items()}


# Per block, the six ONNX-named matrices (stored (in, out) for x @ W) in ascending number order.
_MATMUL_ORDER = ("ff1.net.1.weight", "ff1.net.4.weight", "attn.in_proj_weight", "attn.out_proj.weight",
                 "ff2.net.1.weight", "ff2.net.4.weight")


def hama_state_dict(tensors: dict[str, np.ndarray], num_layers: int = 4) -> dict[str, torch.Tensor]:
    """hama's archive tensors -> the state_dict of ``hama_acoustic()`` (float32). The wiring of the
    ONNX-named tensors (stem ``onnx::Conv_801/802``; depthwise ``onnx::Conv_804/805`` ... one pair
    per block; ``onnx::MatMul_*`` in groups of six per block) is OFFLINE.md section 6's."""
    def f32(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    sd = {"fbank.mel_fb": f32(tensors["mel_fb"])}
    for i in range(num_layers):
        for src, dst in _block_map(i).items():
            sd[dst] = f32(tensors[src])
    sd["ctc.proj.weight"] = f32(tensors["acoustic_model.model.proj.weight"]).squeeze(-1)
    sd["ctc.proj.bias"] = f32(tensors["acoustic_model.model.proj.bias"])
    convs = sorted((int(k.split("_")[-1]), k) for k in tensors if k.startswith("onnx::Conv_"))
    matmuls = sorted((int(k.split("_")[-1]), k) for k in tensors if k.startswith("onnx::MatMul_"))
    if len(convs) != 2 + 2 * num_layers or len(matmuls) != 6 * num_layers:
        raise ValueError(f"{len(convs)} onnx::Conv and {len(matmuls)} onnx::MatMul tensors; hama {HAMA_VERSION}'s "
                         f"{num_layers}-block Conformer has {2 + 2 * num_layers} and {6 * num_layers}")
    sd["encoder.subsampling.conv.weight"] = f32(tensors[convs[0][1]])
    sd["encoder.subsampling.conv.bias"] = f32(tensors[convs[1][1]])
    for i in range(num_layers):
        sd[f"encoder.blocks.{i}.conv.depthwise.weight"] = f32(tensors[convs[2 + 2 * i][1]])
        sd[f"encoder.blocks.{i}.conv.depthwise.bias"] = f32(tensors[convs[3 + 2 * i][1]])
        for j, dst in enumerate(_MATMUL_ORDER):
            sd[f"encoder.blocks.{i}.{dst}"] = f32(tensors[matmuls[6 * i + j][1]]).T.contiguous()
    sd["feat_mean"] = torch.zeros(80)  # no normalisation: global CMVN is the identity
    sd["feat_std"] = torch.ones(80)
    return sd


def hama_acoustic(path: str | Path | None = None, dropout: float = 0.1) -> AcousticModel:
    """hama's network as an :class:`AcousticModel` with its own 191-way CTC layer (eval mode).
    ``path``: a ``.hama`` archive (default: the installed wheel's ``asr_waveform.hama``)."""
    path = Path(path) if path is not None else hama_asset_path()
    tensors = read_hama_archive(path)
    if "acoustic_model.model.blocks.0.ffn1.fc1.bias" not in tensors or "mel_fb" not in tensors:
        raise ValueError(f"{path}: not hama {HAMA_VERSION}'s Conformer ASR archive (installed hama: "
                         f"{_hama_version()}); {INSTALL_HINT}")
    model = AcousticModel(AcousticConfig(encoder=hama_conformer_config(dropout), vocab_size=HAMA_VOCAB_SIZE),
                          FbankConfig.hama())
    try:
        model.load_state_dict(hama_state_dict(tensors, model.cfg.encoder.num_layers))
    except (KeyError, RuntimeError) as e:
        raise ValueError(f"{path}: its tensors do not fit hama {HAMA_VERSION}'s Conformer: {e}") from None
    return model.eval()


class HamaASR(nn.Module):
    """hama's phoneme recogniser: ``(waves (B, N) float32 16 kHz, lengths (B,))`` -> ``(log_probs
    (B, T, 191), out_lengths (B,))`` in hama's token order (:func:`openkws.text.ipa.hama_tokens`;
    blank 190, word boundary 189). ``.acoustic`` is the underlying AcousticModel."""

    blank = HAMA_BLANK
    word_boundary = HAMA_WORD_BOUNDARY

    def __init__(self, acoustic: AcousticModel):
        super().__init__()
        self.acoustic = acoustic

    @property
    def frame_samples(self) -> int:
        return self.acoustic.frame_samples

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None):
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        if lengths is None:
            lengths = torch.full((waves.shape[0],), waves.shape[1], dtype=torch.long, device=waves.device)
        return self.acoustic(waves, lengths, log_probs=True)


def hama_asr(path: str | Path | None = None) -> HamaASR:
    """hama 1.7.0's ASR model in torch (eval mode); see :class:`HamaASR`."""
    return HamaASR(hama_acoustic(path)).eval()


# ---------------------------------------------------------------------------------------------
# our phoneme inventory

UNUSED_LOGIT = -30.0  # bias of the specials <unk>, <s>, </s>: never targets, never emitted


def pretrained_acoustic(path: str | Path | None = None, dropout: float = 0.1, extra_layers: int = 0,
                        ctc_mix_weight: float = 0.0) -> AcousticModel:
    """hama's network over openkws's inventory (``openkws.text.PHONEMES``, blank 0), eval mode.

    ``extra_layers`` > 0 stacks that many new Conformer blocks (same shape) on top of hama's four,
    for a model trained on top of the frozen pretrained one; their residual branches start at
    zero, so each new block starts as a plain LayerNorm of hama's features. Its CTC layer starts
    as hama's; ``ctc_mix_weight`` > 0 also keeps hama's on hama's last block, mixed in with that
    weight (:func:`with_pretrained_ctc_mix`).

    Output row of each phoneme = hama's ``proj`` row of its IPA token (:data:`openkws.text.ipa.
    ARPABET_TO_IPA`; stress variants share their vowel's row, except AH0 <- schwa and ER0 <- the
    unstressed r-coloured schwa); blank <- hama's blank (190). hama's word boundary (189) has no
    place in our inventory and is dropped: its probability is spread over the remaining tokens by
    the softmax; on the frames where hama's argmax is ``<wb>`` ours is blank 97 % of the time
    (476 of 493 frames of 50 real dev clips: hama emits it between words, where a CTC model without
    one emits blank), so greedy decoding barely changes. CTC keyword search is unaffected by the
    shared rows: per frame, the log-softmax normaliser cancels between the keyword's path and the
    best free path.
    The specials <unk>, <s>, </s> get zero weights and a bias of ``UNUSED_LOGIT``."""
    hama = hama_acoustic(path, dropout)
    encoder = replace(hama.cfg.encoder, num_layers=hama.cfg.encoder.num_layers + extra_layers)
    model = AcousticModel(AcousticConfig(encoder=encoder, vocab_size=len(PHONEMES)), hama.fbank.cfg)
    state = {k: v for k, v in hama.state_dict().items() if not k.startswith("ctc.")}
    state["ctc.proj.weight"], state["ctc.proj.bias"] = _output_layer(hama)
    for i in range(hama.cfg.encoder.num_layers, encoder.num_layers):
        block = model.encoder.blocks[i]
        for out in (block.ff1.net[-2], block.ff2.net[-2], block.attn.out_proj, block.conv.pointwise_out):
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        state |= {f"encoder.blocks.{i}.{k}": v for k, v in block.state_dict().items()}
    model.load_state_dict(state)
    if ctc_mix_weight:
        model = with_pretrained_ctc_mix(model, ctc_mix_weight, hama)
    return model.eval()


def with_pretrained_ctc_mix(model: AcousticModel, weight: float = 0.2, hama: AcousticModel | None = None) -> AcousticModel:
    """``model`` (hama's blocks, frozen, with new blocks on top: model (c)) plus hama's own output
    layer over our inventory on hama's last block, its posteriors mixed into the model's with
    ``weight`` (``AcousticConfig.ctc_mix_layer``); a new model, eval mode, same weights otherwise.

    The two layers read the same frozen frames at different depths and err differently. Measured
    on the real dev data with the shipped model (c) (recipe README): the more of hama's layer, the
    better hard negatives and the worse telephone-band digits -- sentence trials hard 88.9 / 90.2
    / 90.6 / 91.0 % AUC and FSDD 93.4 / 92.7 / 92.1 / 91.4 % at weights 0 / 0.2 / 0.35 / 0.5;
    at 0.2 the phoneme error rate also drops (15.1 -> 14.9 %), for one 144 x 71 layer more.
    ``hama``: the already loaded :func:`hama_acoustic` (default: load the installed wheel's)."""
    hama = hama or hama_acoustic()
    n_hama = hama.cfg.encoder.num_layers
    if model.cfg.encoder.num_layers <= n_hama or model.fbank.cfg != hama.fbank.cfg or any(
            not torch.equal(p, q) for p, q in zip(model.encoder.blocks[:n_hama].parameters(),
                                                  hama.encoder.blocks.parameters())):
        raise ValueError("the pretrained CTC layer mixes into a model whose first encoder blocks are hama's own "
                         "pretrained ones, unchanged, with new blocks on top (init=hama, init_extra_layers > 0, "
                         "init_lr_scale 0)")
    cfg = replace(model.cfg, ctc_mix_layer=n_hama, ctc_mix_weight=weight)
    mixed = AcousticModel(cfg, model.fbank.cfg)
    w, b = _output_layer(hama)
    mixed.load_state_dict(model.state_dict() | {"ctc_mix.proj.weight": w, "ctc_mix.proj.bias": b})
    return mixed.eval()


def _output_layer(hama: AcousticModel) -> tuple[torch.Tensor, torch.Tensor]:
    """hama's output layer (weight, bias) with its rows rearranged onto our inventory (see
    :func:`pretrained_acoustic`)."""
    rows = output_layer_rows()  # our id -> hama row, None for the specials
    w, b = hama.ctc.proj.weight.detach(), hama.ctc.proj.bias.detach()
    new_w = torch.zeros(len(PHONEMES), w.shape[1])
    new_b = torch.full((len(PHONEMES),), UNUSED_LOGIT)
    for i, row in enumerate(rows):
        if row is not None:
            new_w[i], new_b[i] = w[row], b[row]
    return new_w, new_b


# ---------------------------------------------------------------------------------------------
# hama's own engine (only to check the port)


def hama_engine_log_probs(wave: np.ndarray) -> np.ndarray:
    """Frame log-probabilities (T, 191) of one 16 kHz float32 clip from hama's native engine
    (``hama.ASRModel``'s session, no decoding bias or temperature)."""
    try:
        import hama
    except ImportError:
        raise HamaNotInstalled(f"hama is not installed: {INSTALL_HINT}") from None
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = hama.ASRModel()
    wav = np.ascontiguousarray(wave, dtype=np.float32).reshape(1, -1)
    log_probs, out_lengths = _ENGINE.session.run(["log_probs", "out_lengths"],
                                                 {"waveform": wav, "waveform_lengths": np.array([wav.shape[1]])})
    return log_probs[0, :int(np.asarray(out_lengths).reshape(-1)[0])]


_ENGINE = None
