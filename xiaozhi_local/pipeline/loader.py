"""Build the :class:`Assistant` from the configuration: check and load each model once.

Every model the configuration names must be installed and intact: a file whose size or
modification time changed since it was verified is re-hashed, and a missing or corrupt
model stops start-up with a message naming ``xiaozhi models pull <id>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..config import AppConfig
from ..engines.base import Llm
from ..engines.llm_openai import OpenAiLlm
from ..engines.loading import load_asr, load_llm, load_tts, load_vad
from ..errors import ConfigError, ModelMissingError
from ..models.catalog import ModelEntry, load_catalog
from ..models.store import ModelStore
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


def load_assistant(config: AppConfig, turn_log: TurnLog | None = None, step: Step | None = None) -> Assistant:
    engines = load_engines(config, step)
    return Assistant(engines, config.settings.pipeline, turn_log)
