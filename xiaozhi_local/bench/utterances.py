"""The questions ``xiaozhi bench`` asks, spoken by the installed TTS voice.

A fixed list of everyday questions in English, plus a few in Chinese that are asked only
when the voice speaks Chinese *and* the server's speech recognition understands it (the
default Piper voice is English-only, so by default they are skipped and the report says
why). Each question is synthesized once into a 16 kHz mono WAV, trimmed to its voiced part
(so the simulator's "end of speech" is the end of the words, not of trailing silence), and
cached in the bench output folder under a name that depends on the voice and the text.

Nothing is ever downloaded: the voice comes from the local model store
(``[models] tts`` in the config); a missing one is an error naming ``xiaozhi models pull``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from ..audio.resample import resample
from ..audio.wav import read_wav, write_wav
from ..config import AppConfig
from ..engines.base import PCM, Tts
from ..errors import EngineError, ModelMissingError
from ..models.catalog import Catalog, ModelEntry, load_catalog
from ..models.store import ModelStore

__all__ = [
    "CHINESE",
    "ENGLISH",
    "SpokenUtterance",
    "Utterance",
    "chinese_support",
    "load_catalog_for",
    "open_voice",
    "plan_turns",
    "synthesize_all",
    "trim_silence",
    "voice_entry",
]

SAMPLE_RATE: Final = 16000
_CACHE_VERSION: Final = "1"


@dataclass(frozen=True, slots=True)
class Utterance:
    id: str
    lang: str
    text: str


ENGLISH: Final[tuple[Utterance, ...]] = tuple(
    Utterance(f"en{i:02d}", "en", text)
    for i, text in enumerate(
        (
            "What is two plus two?",
            "What is the capital of France?",
            "Can you tell me a short joke?",
            "How many days are there in a week?",
            "How do I boil an egg?",
            "Why is the sky blue?",
            "What should I cook for dinner tonight?",
            "How far away is the moon?",
            "Give me a tip for sleeping better.",
            "What is a good name for a cat?",
            "How many minutes are in an hour?",
            "What does a healthy breakfast look like?",
            "Can you recommend a good book?",
            "At what temperature does water boil?",
            "How do you say hello in Spanish?",
            "What is the difference between a frog and a toad?",
            "Tell me something interesting about octopuses.",
            "How long should I rest between workouts?",
            "What day comes after Friday?",
            "How can I save a little money every month?",
        ),
        start=1,
    )
)

CHINESE: Final[tuple[Utterance, ...]] = tuple(
    Utterance(f"zh{i:02d}", "zh", text)
    for i, text in enumerate(
        ("今天天气怎么样？", "一加一等于几？", "给我讲个笑话吧。", "中国的首都是哪里？"),
        start=1,
    )
)


@dataclass(frozen=True, slots=True)
class SpokenUtterance:
    utterance: Utterance
    wav: Path
    seconds: float


def _speaks(entry: ModelEntry | None, lang: str) -> bool:
    return entry is not None and (lang in entry.languages or "*" in entry.languages)


def chinese_support(voice: ModelEntry, asr: ModelEntry | None) -> str | None:
    """None when Chinese questions can be asked; else the reason they are skipped."""
    if not _speaks(voice, "zh"):
        return (f"Chinese questions skipped: the voice {voice.id} speaks {', '.join(voice.languages) or '?'} "
                "only (install a Chinese voice and set [models] tts to use them)")
    if asr is None:
        return "Chinese questions skipped: the server's speech recognition model is unknown"
    if not _speaks(asr, "zh"):
        return f"Chinese questions skipped: the speech recognition model {asr.id} does not understand Chinese"
    return None


def plan_turns(count: int, *, chinese: bool) -> list[Utterance]:
    """``count`` questions in a fixed order: the English list, with one Chinese question after
    every fifth English one when ``chinese``; repeated as often as needed."""
    cycle: list[Utterance] = []
    zh = iter(CHINESE) if chinese else iter(())
    for i, utterance in enumerate(ENGLISH, start=1):
        cycle.append(utterance)
        if i % 5 == 0 and (extra := next(zh, None)) is not None:
            cycle.append(extra)
    return [cycle[i % len(cycle)] for i in range(count)]


def load_catalog_for(config: AppConfig) -> Catalog:
    """The catalog the config points at (built-in + the user's additions)."""
    return load_catalog(*config.catalog_files)


def voice_entry(config: AppConfig, catalog: Catalog) -> ModelEntry:
    """The configured ``[models] tts`` voice, checked to be an installed Piper voice."""
    entry = catalog.get(config.settings.models.tts)
    if entry.engine != "piper":
        raise EngineError(f"the bench speaks its questions with a Piper voice; {entry.id} is a "
                          f"{entry.engine!r} model (set [models] tts to a Piper voice)")
    store = ModelStore(config.models_dir)
    if not store.is_installed(entry):
        raise ModelMissingError(entry.id, f"is not installed in {store.root} (the bench needs it to speak "
                                          "its questions)")
    return entry


def open_voice(config: AppConfig, entry: ModelEntry) -> Tts:
    """Load ``entry`` (see :func:`voice_entry`) from the local store (never downloaded)."""
    from ..engines.loading import load_tts  # loads the engines' runtimes: only when a question is spoken

    return load_tts(ModelStore(config.models_dir), entry)


def trim_silence(pcm: PCM, rate: int, *, floor_db: float = -40.0, margin_ms: float = 40.0) -> PCM:
    """Cut leading and trailing silence: 10 ms windows quieter than ``floor_db`` below the loudest
    window, keeping ``margin_ms`` on each side. All-silent input is returned unchanged."""
    win = max(1, rate // 100)
    n = pcm.shape[0] // win
    if n == 0:
        return pcm
    frames = pcm[: n * win].astype(np.float64).reshape(n, win)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    peak = float(rms.max())
    if peak <= 0:
        return pcm
    voiced = np.flatnonzero(rms >= peak * 10 ** (floor_db / 20))
    margin = int(rate * margin_ms / 1000)
    start = max(0, int(voiced[0]) * win - margin)
    end = min(pcm.shape[0], (int(voiced[-1]) + 1) * win + margin)
    return pcm[start:end]


def _cache_name(voice_id: str, utterance: Utterance) -> str:
    key = "|".join((_CACHE_VERSION, voice_id, utterance.lang, utterance.text)).encode()
    return f"{utterance.id}-{hashlib.sha1(key).hexdigest()[:10]}.wav"


def synthesize(tts: Tts, text: str) -> PCM:
    """``text`` spoken by ``tts`` as trimmed 16 kHz mono int16."""
    chunks = list(tts.synthesize(text))
    if not chunks:
        raise EngineError(f"the voice produced no audio for {text!r}")
    pcm = trim_silence(np.concatenate(chunks).astype(np.int16, copy=False), tts.sample_rate)
    out: PCM = resample(pcm, tts.sample_rate, SAMPLE_RATE)
    return out


def synthesize_all(
    utterances: Iterable[Utterance],
    voice_id: str,
    tts: Callable[[], Tts],
    cache_dir: Path,
    on_done: Callable[[Utterance, bool], None] | None = None,
) -> dict[str, SpokenUtterance]:
    """Each distinct utterance as a cached WAV in ``cache_dir``. ``tts`` is called (to load the
    voice) only if something is not cached yet; ``on_done(utterance, cached)`` reports progress."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    voice: Tts | None = None
    spoken: dict[str, SpokenUtterance] = {}
    for utterance in utterances:
        if utterance.id in spoken:
            continue
        path = cache_dir / _cache_name(voice_id, utterance)
        cached = path.is_file()
        if cached:
            pcm, rate = read_wav(path)
        else:
            voice = voice or tts()
            pcm, rate = synthesize(voice, utterance.text), SAMPLE_RATE
            tmp = path.with_suffix(".tmp")
            write_wav(tmp, pcm, rate)
            tmp.replace(path)
        spoken[utterance.id] = SpokenUtterance(utterance, path, round(pcm.shape[0] / rate, 3))
        if on_done is not None:
            on_done(utterance, cached)
    return spoken
