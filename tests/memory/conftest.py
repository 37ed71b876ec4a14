"""Fixtures for the memory tests: the real test models (loaded once per module) and a way to drive
the real assistant with memory hooks, without sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import models_test_home
from xiaozhi_local.config import MemorySettings, ModelsSettings, PipelineSettings, Settings, load_config
from xiaozhi_local.engines.base import ChatMessage, GenerationOptions, Llm
from xiaozhi_local.memory.hooks import MemoryHooks
from xiaozhi_local.memory.voiceprints import VoiceprintService
from xiaozhi_local.pipeline.assistant import Assistant, Engines
from xiaozhi_local.pipeline.conversation import SessionInfo, ToolInfo
from xiaozhi_local.pipeline.loader import load_engines
from xiaozhi_local.pipeline.turns import AssistantConversation
from xiaozhi_local.protocol.types import ListenMode
from xiaozhi_local.speaker.encoder import SpeakerEncoder
from xiaozhi_local.store.memory import MemoryStore

PIPELINE = PipelineSettings(language="en", temperature=0.0, seed=7, max_reply_tokens=24,
                            system_prompt="You are a helpful voice assistant. Answer in one short sentence.")
TEST_LLM = "smollm2-135m-q4_1"


def models_dir() -> Path:
    models = models_test_home() / "models"
    if not models.is_dir():
        pytest.fail(f"the test model set is missing at {models}; run scripts/test")
    return models


def load_test_engines() -> Engines:
    models = models_dir()
    settings = Settings(models=ModelsSettings(dir=str(models), llm=TEST_LLM), pipeline=PIPELINE)
    config = dataclasses.replace(load_config(env={"XIAOZHI_HOME": str(models.parent)}), settings=settings)
    return load_engines(config)


def load_test_encoder() -> SpeakerEncoder:
    return SpeakerEncoder.load(models_dir() / "ge2e-resemblyzer" / "pretrained.pt")


class RecordingLlm:
    """The real LLM, with every prompt it was given kept (to check what the assistant asked it)."""

    def __init__(self, llm: Llm):
        self.llm = llm
        self.context_size = llm.context_size
        self.prompts: list[list[ChatMessage]] = []

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def stream_chat(self, messages: Sequence[ChatMessage], options: GenerationOptions,
                    stop: threading.Event) -> Iterator[str]:
        self.prompts.append(list(messages))
        return self.llm.stream_chat(messages, options, stop)


class Recorder:
    """A ReplySink that keeps what the device would have been sent."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.heard: list[str] = []
        self.closed: str | None = None

    async def stt(self, text: str) -> None:
        self.heard.append(text)

    async def emotion(self, emotion: str, emoji: str = "") -> None:
        pass

    async def say(self, text: str, audio: object, sample_rate: int) -> None:
        self.said.append(text)

    async def end_reply(self) -> None:
        pass

    async def wait_played(self) -> None:
        pass

    async def abort(self) -> None:
        pass

    def reply_marks(self) -> tuple[float | None, float | None]:
        return (None, None)

    async def close(self, reason: str) -> None:
        self.closed = reason


class NoTools:
    @property
    def tools(self) -> Sequence[ToolInfo]:
        return ()

    async def call(self, name: str, arguments: dict[str, Any], timeout: float = 30.0) -> str:
        raise AssertionError("no device tools in these tests")


class Session:
    """One device session with the real assistant, driven turn by turn."""

    def __init__(self, assistant: Assistant, device_id: str = "aa:bb:cc:00:00:01", session_id: str = "s-1"):
        self.assistant = assistant
        self.sink = Recorder()
        self.info = SessionInfo(session_id=session_id, device_id=device_id, client_id=None, address="127.0.0.1",
                                protocol_version=1)
        self.conversation: AssistantConversation = assistant(self.info, self.sink, NoTools())  # type: ignore[arg-type]

    async def _turn_done(self, before: int) -> str:
        while self.assistant.turn_log.total == before:
            await asyncio.sleep(0.05)
        await self.assistant.drain()  # turn_done stored the turn
        return self.assistant.turn_log.recent()[-1].reply

    async def type(self, text: str) -> str:
        """A typed turn (``listen detect``); returns the spoken reply."""
        before = self.assistant.turn_log.total
        await self.conversation.on_detect(text)
        return await self._turn_done(before)

    async def speak(self, pcm: np.ndarray) -> str:
        """A push-to-talk voice turn of 16 kHz speech; returns the spoken reply."""
        before = self.assistant.turn_log.total
        await self.conversation.on_listen_start(ListenMode.MANUAL)
        for start in range(0, len(pcm), 960):
            await self.conversation.on_audio(pcm[start:start + 960])
        await self.conversation.on_listen_stop()
        return await self._turn_done(before)

    async def end(self) -> None:
        await self.conversation.close()
        await self.assistant.drain(timeout=300)


def make_assistant(engines: Engines, db: Path, *, memory: MemorySettings | None = None,
                   encoder: SpeakerEncoder | None = None, llm: Llm | None = None) -> tuple[Assistant, MemoryHooks]:
    """A fresh assistant with memory over the database file ``db`` (a new one = a server restart)."""
    store = MemoryStore.open(db)
    voiceprints = (VoiceprintService(store, encoder, model_id="ge2e-resemblyzer") if encoder is not None else None)
    hooks = MemoryHooks(store, llm or engines.llm, memory or MemorySettings(), voiceprints=voiceprints)
    return Assistant(dataclasses.replace(engines, llm=llm or engines.llm), PIPELINE, hooks=hooks), hooks
