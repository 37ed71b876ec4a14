"""Loading the speaker model and the memory hooks from the configuration: checked like every model."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tests.memory.conftest import models_dir
from xiaozhi_local.config import MemorySettings, ModelsSettings, Settings, VoiceSettings, load_config
from xiaozhi_local.errors import EngineError, ModelMissingError
from xiaozhi_local.memory.hooks import MemoryHooks
from xiaozhi_local.pipeline.loader import load_memory_hooks, load_speaker_encoder


def config_with(models: Path, **model_ids: str) -> object:
    settings = Settings(models=ModelsSettings(dir=str(models), **model_ids))
    return dataclasses.replace(load_config(), settings=settings)


def test_a_missing_speaker_model_names_the_pull_command(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match=r"'ge2e-resemblyzer' is not installed.*models pull ge2e-resemblyzer"):
        load_speaker_encoder(config_with(tmp_path))  # type: ignore[arg-type]


def test_a_model_of_another_role_is_refused() -> None:
    with pytest.raises(EngineError, match=r"'silero-vad' is a vad model.*needs a speaker model"):
        load_speaker_encoder(config_with(models_dir(), speaker="silero-vad"))  # type: ignore[arg-type]


@pytest.mark.models
def test_a_corrupt_speaker_model_is_caught(tmp_path: Path) -> None:
    target = tmp_path / "ge2e-resemblyzer"
    shutil.copytree(models_dir() / "ge2e-resemblyzer", target)
    data = bytearray((target / "pretrained.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (target / "pretrained.pt").write_bytes(bytes(data))
    with pytest.raises(ModelMissingError, match="'ge2e-resemblyzer' is corrupt"):
        load_speaker_encoder(config_with(tmp_path))  # type: ignore[arg-type]


@pytest.mark.models
def test_memory_hooks_over_the_configured_database(isolated_env: Path) -> None:
    class NoEngines:
        def __init__(self) -> None:
            self.llm = object()
            self.model_ids: dict[str, str] = {}

    engines = NoEngines()
    config = config_with(models_dir())
    hooks = load_memory_hooks(config, engines, None)  # type: ignore[arg-type]
    assert isinstance(hooks, MemoryHooks) and hooks.voiceprints is not None and hooks.audio is None
    assert engines.model_ids["speaker"] == "ge2e-resemblyzer"
    assert (isolated_env / "xiaozhi.db").is_file()
    hooks.store.close()

    settings = config.settings.model_copy(update={"voice": VoiceSettings(enabled=False),  # type: ignore[attr-defined]
                                                  "memory": MemorySettings(keep_audio=True)})
    hooks = load_memory_hooks(dataclasses.replace(config, settings=settings), NoEngines(), None)  # type: ignore[arg-type]
    assert hooks.voiceprints is None and hooks.audio is not None
    assert hooks.audio.root == isolated_env / "utterances"
    hooks.store.close()
