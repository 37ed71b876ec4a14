"""Turn a catalog model installed in the model store into a loaded engine.

Each loader checks that the entry is a model of the right role and engine, that its files
are in the store, and turns a file that will not load into a :class:`ModelMissingError`
that tells the user how to get a good copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from xiaozhi_local.errors import EngineError, ModelMissingError
from xiaozhi_local.models.catalog import ModelEntry, Role
from xiaozhi_local.models.store import ModelStore

from .asr import WhisperAsr
from .llm_local import LlamaCppLlm
from .tts import PiperTts
from .vad import SileroVad

__all__ = ["load_asr", "load_llm", "load_tts", "load_vad"]

_T = TypeVar("_T")

_ENGINES: dict[Role, tuple[str, ...]] = {
    Role.VAD: ("silero",),
    Role.ASR: ("faster-whisper",),
    Role.TTS: ("piper",),
    Role.LLM: ("llama.cpp",),
}


def load_vad(store: ModelStore, entry: ModelEntry, threads: int = 1) -> SileroVad:
    _check(store, entry, Role.VAD)
    path = store.path(entry, _one_file(entry, ".onnx"))
    return _load(entry, lambda: SileroVad(path, threads=threads))


def load_asr(store: ModelStore, entry: ModelEntry, threads: int = 0, language: str | None = None) -> WhisperAsr:
    _check(store, entry, Role.ASR)
    if not any(f.name == "model.bin" for f in entry.files):
        raise EngineError(f"model {entry.id!r} has no model.bin; it is not a CTranslate2 Whisper model")
    model_dir = store.path(entry)
    return _load(entry, lambda: WhisperAsr(model_dir, threads=threads, language=language))


def load_tts(store: ModelStore, entry: ModelEntry, speaker_id: int | None = None,
             length_scale: float | None = None) -> PiperTts:
    _check(store, entry, Role.TTS)
    model = store.path(entry, _one_file(entry, ".onnx"))
    config = store.path(entry, _one_file(entry, ".onnx.json"))
    return _load(entry, lambda: PiperTts(model, config, speaker_id=speaker_id, length_scale=length_scale))


def load_llm(store: ModelStore, entry: ModelEntry, *, context_size: int = 2048, threads: int = 0,
             seed: int = -1, snapshot_mb: int = 64) -> LlamaCppLlm:
    """``snapshot_mb`` bounds the saved dialogue KV states (~12 KB per token for a 0.5B model:
    64 MB keeps about 5000 tokens, a dozen conversations)."""
    _check(store, entry, Role.LLM)
    path = store.path(entry, _one_file(entry, ".gguf"))
    return _load(entry, lambda: LlamaCppLlm(path, context_size=context_size, threads=threads, seed=seed,
                                            snapshot_mb=snapshot_mb))


def _check(store: ModelStore, entry: ModelEntry, role: Role) -> None:
    if entry.role != role:
        raise EngineError(f"model {entry.id!r} is a {entry.role.value} model, not a {role.value} model; "
                          f"choose a {role.value} model (see `xiaozhi models list`)")
    engines = _ENGINES[role]
    if entry.engine not in engines:
        raise EngineError(f"model {entry.id!r} needs the {entry.engine!r} engine, which xiaozhi-local does not have "
                          f"for {role.value} (supported: {', '.join(engines)})")
    if not store.is_installed(entry):
        raise ModelMissingError(entry.id, "is not installed")


def _one_file(entry: ModelEntry, suffix: str) -> str:
    names = [f.name for f in entry.files if f.name.endswith(suffix)]
    if len(names) != 1:
        raise EngineError(f"model {entry.id!r} should have exactly one *{suffix} file, "
                          f"has {names or 'none'} (check the catalog entry)")
    return names[0]


def _load(entry: ModelEntry, make: Callable[[], _T]) -> _T:
    """Build the engine; a file the runtime refused becomes a ModelMissingError.

    The engines raise load failures ``from`` the runtime's exception; an EngineError without
    a cause is a problem with the arguments (threads, language, speaker) and passes through.
    """
    try:
        return make()
    except EngineError as exc:
        if exc.__cause__ is None:
            raise
        raise ModelMissingError(entry.id, f"cannot be loaded ({exc}); it may be corrupt") from exc
