"""Build the :class:`Assistant` from the configuration: check and load each model once.

Every model the configuration names must be installed and intact: a file whose size or
modification time changed since it was verified is re-hashed, and a missing or corrupt
model stops start-up with a message naming ``xiaozhi models pull <id>``. With ``[memory] enabled``
the assistant gets :class:`~xiaozhi_local.memory.hooks.MemoryHooks` over the database at
``config.db_path`` (and, with ``[voice] enabled``, the speaker model ``[models] speaker``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..config import AppConfig
from ..engines.base import Llm
from ..engines.llm_openai import OpenAiLlm
from ..engines.loading import load_asr, load_llm, load_tts, load_vad
from ..errors import ConfigError, EngineError, ModelError, ModelMissingError
from ..memory.audio import AudioKeeper
from ..memory.hooks import MemoryHooks
from ..memory.voiceprints import VoiceprintService
from ..models.catalog import ModelEntry, Role, load_catalog
from ..models.store import ModelStore
from ..speaker.encoder import SpeakerEncoder
from ..store.memory import MemoryStore
from .assistant import Assistant, Engines
from .timing import TurnLog

Step = Callable[[str], None]


def ensure_intact(store: ModelStore, entry: ModelEntry) -> None:
    """ModelMissingError unless every file of ``entry`` is present with the catalog's sha256."""
    if not store.is_installed(entry):
        raise ModelMissingError(entry.id, "is not installed")
    if all(store.is_verified(entry, mf) for mf in entry.files):
        return
    problems = store.verify(entry)
    if problems:
        raise ModelMissingError(entry.id, f"is corrupt ({problems[0]})")


def load_engines(config: AppConfig, step: Step | None = None) -> Engines:
    say = step or (lambda _text: None)
    models, pipeline = config.settings.models, config.settings.pipeline
    catalog = load_catalog(*config.catalog_files)
    store = ModelStore(config.models_dir)
    ids = {"vad": models.vad, "asr": models.asr, "tts": models.tts}
    if pipeline.llm_engine == "local":
        ids["llm"] = models.llm
    entries = {role: catalog.get(model_id) for role, model_id in ids.items()}
    for role, entry in entries.items():
        say(f"checking {role} model {entry.id}")
        ensure_intact(store, entry)
    say(f"loading the voice activity detector ({entries['vad'].id})")
    vad = load_vad(store, entries["vad"])
    say(f"loading speech recognition ({entries['asr'].id})")
    language = None if pipeline.language.strip().lower() in ("", "auto") else pipeline.language.strip()
    asr = load_asr(store, entries["asr"], threads=pipeline.asr_threads, language=language)
    say(f"loading the voice ({entries['tts'].id})")
    tts = load_tts(store, entries["tts"])
    llm: Llm
    if pipeline.llm_engine == "local":
        say(f"loading the language model ({entries['llm'].id})")
        llm = load_llm(store, entries["llm"], context_size=pipeline.llm_context, threads=pipeline.llm_threads,
                       seed=pipeline.seed)
        ids["llm"] = entries["llm"].id
    else:
        key = os.environ.get(pipeline.openai_api_key_env) if pipeline.openai_api_key_env else None
        if pipeline.openai_api_key_env and not key:
            raise ConfigError(f"the environment variable {pipeline.openai_api_key_env} is not set",
                              key="pipeline.openai_api_key_env")
        llm = OpenAiLlm(pipeline.openai_url, model=pipeline.openai_model, api_key=key)
        ids["llm"] = f"openai:{pipeline.openai_url}"
    return Engines(vad=vad, asr=asr, llm=llm, tts=tts, model_ids=ids)


def load_speaker_encoder(config: AppConfig, step: Step | None = None) -> tuple[SpeakerEncoder, str]:
    """The configured speaker model ([models] speaker), checked like the others; and its catalog id."""
    say = step or (lambda _text: None)
    entry = load_catalog(*config.catalog_files).get(config.settings.models.speaker)
    if entry.role != Role.SPEAKER or entry.engine != "ge2e":
        raise EngineError(f"model {entry.id!r} is a {entry.role.value} model for the {entry.engine!r} engine; "
                          "[models] speaker needs a speaker model for the 'ge2e' engine (see `xiaozhi models list`)")
    store = ModelStore(config.models_dir)
    say(f"checking speaker model {entry.id}")
    ensure_intact(store, entry)
    names = [f.name for f in entry.files if f.name.endswith(".pt")]
    if len(names) != 1:
        raise EngineError(f"model {entry.id!r} should have exactly one *.pt file, has {names or 'none'}")
    say(f"loading the speaker encoder ({entry.id})")
    try:
        return SpeakerEncoder.load(store.path(entry, names[0])), entry.id
    except (ModelError, EngineError, OSError) as exc:
        raise ModelMissingError(entry.id, f"cannot be loaded ({exc}); it may be corrupt") from exc


def load_memory_hooks(config: AppConfig, engines: Engines, step: Step | None = None) -> MemoryHooks:
    """Memory and voiceprints over the database at ``config.db_path`` (the speaker model only with [voice])."""
    settings = config.settings
    store = MemoryStore.open(config.db_path)
    voiceprints = None
    if settings.voice.enabled:
        encoder, model_id = load_speaker_encoder(config, step)
        engines.model_ids["speaker"] = model_id
        voiceprints = VoiceprintService(store, encoder, model_id=model_id, threshold=settings.voice.threshold,
                                        min_clips=settings.voice.min_enroll_clips)
    audio = (AudioKeeper(config.data_dir / "utterances", settings.memory.audio_retention_days)
             if settings.memory.keep_audio else None)
    return MemoryHooks(store, engines.llm, settings.memory, voiceprints=voiceprints, audio=audio)


def load_assistant(config: AppConfig, turn_log: TurnLog | None = None, step: Step | None = None) -> Assistant:
    engines = load_engines(config, step)
    hooks = load_memory_hooks(config, engines, step) if config.settings.memory.enabled else None
    return Assistant(engines, config.settings.pipeline, turn_log, hooks=hooks)
