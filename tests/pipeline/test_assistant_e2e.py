"""The voice assistant end to end: the simulated stock device talks to the real server, which
runs the real test models (Silero VAD, Whisper base, SmolLM2-135M, Piper), over loopback.

The question is synthesized by Piper, sent at real-time pace as opus; the reply the device
plays is decoded and transcribed again. The LLM runs greedy (temperature 0) so replies are
deterministic, but no test depends on what the reply says: only that there is one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import models_test_home
from xiaozhi_local.audio.resample import resample
from xiaozhi_local.audio.wav import read_wav, write_wav
from xiaozhi_local.config import (
    ModelsSettings,
    PairingSettings,
    PipelineSettings,
    ServerSettings,
    Settings,
    load_config,
)
from xiaozhi_local.engines.llm_openai import OpenAiLlm
from xiaozhi_local.pipeline.assistant import Assistant, Engines
from xiaozhi_local.pipeline.loader import load_engines
from xiaozhi_local.protocol.types import ListenMode
from xiaozhi_local.server.app import XiaozhiServer
from xiaozhi_local.server.context import ServerContext
from xiaozhi_local.server.pairing import DevicePairing
from xiaozhi_local.sim.runner import SessionOptions, run_devices, run_session

QUESTION = "What is two plus two?"
PIPELINE = PipelineSettings(language="en", temperature=0.0, seed=7, max_reply_tokens=40,
                            system_prompt="You are a helpful voice assistant. Answer in one short sentence.")


@pytest.fixture(scope="module")
def engines() -> Engines:
    models = models_test_home() / "models"
    if not models.is_dir():
        pytest.fail(f"the test model set is missing at {models}; run scripts/test")
    settings = Settings(models=ModelsSettings(dir=str(models), llm="smollm2-135m-q4_1"), pipeline=PIPELINE)
    config = dataclasses.replace(load_config(env={"XIAOZHI_HOME": str(models.parent)}), settings=settings)
    return load_engines(config)


@pytest.fixture(scope="module")
def question_wav(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The question as a user would say it: 0.3 s of room, the words, then 1 s of room."""
    voice = np.concatenate(list(engines.tts.synthesize(QUESTION)))
    rate = engines.tts.sample_rate
    room = np.zeros(int(0.3 * rate), np.int16)
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    write_wav(path, np.concatenate([room, voice, room, room, room, room]), rate)
    return path


@pytest.fixture(scope="module")
def silence_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("silence") / "silence.wav"
    rng = np.random.default_rng(3)
    write_wav(path, rng.normal(0, 30, 16000 * 2).astype(np.int16), 16000)  # 2 s of a quiet room
    return path


async def start(assistant: Assistant) -> tuple[XiaozhiServer, str]:
    settings = ServerSettings(host="127.0.0.1", http_port=0, ws_port=0, mdns=False)
    ctx = ServerContext(settings, conversation="assistant", turns=assistant.turn_log)
    # Open mode: these tests are about the conversation; pairing has its own tests.
    server = XiaozhiServer(ctx, assistant, pairing=DevicePairing.in_memory(PairingSettings(mode="open")))
    await server.start()
    return server, f"http://127.0.0.1:{server.http_port}/xiaozhi/ota/"


@pytest.fixture
async def assistant(engines: Engines) -> Assistant:
    a = Assistant(engines, PIPELINE)
    await a.warm_up()
    return a


@pytest.fixture
async def ota_url(assistant: Assistant) -> AsyncIterator[str]:
    server, url = await start(assistant)
    yield url
    await server.stop()


def heard_the_question(text: str) -> bool:
    """Whisper writes "What is 2 plus 2?" or "What is two plus two?"."""
    return re.search(r"\b(two|2)\s+plus\s+(two|2)\b", text.lower()) is not None


def transcribe(engines: Engines, path: Path) -> str:
    pcm, rate = read_wav(path)
    return engines.asr.transcribe(resample(pcm, rate, 16000), 16000, "en").text


@pytest.mark.parametrize("mode", [ListenMode.AUTO, ListenMode.MANUAL, ListenMode.REALTIME])
async def test_a_spoken_question_gets_a_spoken_answer(mode: ListenMode, engines: Engines, assistant: Assistant,
                                                      ota_url: str, question_wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    result = await run_session(ota_url, options=SessionOptions(wav=question_wav, mode=mode, out=out,
                                                               reply_timeout_s=90))
    assert result.ok, result.error
    turn = result.turns[0]
    assert len(turn.stt_texts) == 1 and heard_the_question(turn.stt_texts[0])
    assert turn.sentences and all(s.strip() for s in turn.sentences)
    assert turn.completed and turn.gating_drops == 0 and turn.dropped_overflow == 0
    assert transcribe(engines, out)  # the reply audio is speech, not noise or silence
    (timings,) = assistant.turn_log.recent()
    assert timings.outcome == "ok" and timings.llm_tokens > 0 and timings.e2e_ms is not None
    marks = [timings.speech_end, timings.asr_done, timings.llm_first_token, timings.first_clause,
             timings.tts_first_chunk, timings.first_frame, timings.last_frame]
    assert None not in marks and marks == sorted(marks)  # type: ignore[type-var]


async def test_the_dialogue_continues_over_turns(assistant: Assistant, ota_url: str, question_wav: Path) -> None:
    result = await run_session(ota_url, options=SessionOptions(wav=question_wav, mode=ListenMode.AUTO, turns=2,
                                                               reply_timeout_s=90))
    assert result.ok, result.error
    assert [len(t.sentences) > 0 for t in result.turns] == [True, True]
    first, second = assistant.turn_log.recent()
    assert second.llm_prompt_tokens > first.llm_prompt_tokens  # the second prompt carries the first turn


async def test_abort_mid_reply_stops_the_audio(assistant: Assistant, ota_url: str, question_wav: Path) -> None:
    options = SessionOptions(wav=question_wav, mode=ListenMode.MANUAL, abort_after_s=0.2, reply_timeout_s=90)
    result = await run_session(ota_url, options=options)
    assert result.ok, result.error
    turn = result.turns[0]
    assert turn.t_abort is not None and turn.t_tts_stop is not None and turn.t_tts_stop > turn.t_abort
    assert turn.frames_after_abort <= 6
    await asyncio.sleep(0.2)
    assert assistant.turn_log.recent()[-1].outcome == "aborted"


async def test_realtime_barge_in_interrupts_and_answers_the_new_utterance(
        assistant: Assistant, ota_url: str, question_wav: Path) -> None:
    options = SessionOptions(wav=question_wav, mode=ListenMode.REALTIME, barge_in_after_s=0.3, reply_timeout_s=90)
    result = await run_session(ota_url, options=options)
    assert result.ok, result.error
    interrupted, answer = result.turns
    assert interrupted.t_barge_in is not None and interrupted.barge_in_stop_s is not None
    assert interrupted.audio_s < 2.5  # cut short: the full reply is longer
    assert answer.barge_in and answer.completed and heard_the_question(answer.stt_texts[0])
    outcomes = [t.outcome for t in assistant.turn_log.recent()]
    assert outcomes == ["barge_in", "ok"]


async def test_wake_word_gets_the_cached_greeting(assistant: Assistant, ota_url: str) -> None:
    result = await run_session(ota_url, options=SessionOptions(text="你好小智", reply_timeout_s=30))
    assert result.ok, result.error
    assert result.turns[0].sentences == [PIPELINE.greeting]
    assert assistant.turn_log.recent()[-1].source == "wake"


async def test_typed_text_is_answered(assistant: Assistant, ota_url: str) -> None:
    result = await run_session(ota_url, options=SessionOptions(text=QUESTION, reply_timeout_s=60))
    assert result.ok, result.error
    assert result.turns[0].stt_texts == [QUESTION] and result.turns[0].sentences


async def test_goodbye_says_farewell_and_closes(ota_url: str) -> None:
    result = await run_session(ota_url, options=SessionOptions(text="Bye!", turns=2, reply_timeout_s=30))
    assert result.turns[0].sentences == [PIPELINE.farewell]
    assert not result.ok  # the device wanted a second turn, but the server had said goodbye
    assert result.closed_by == "server" and result.close_reason == "goodbye"


async def test_two_sessions_at_once_both_complete(ota_url: str, question_wav: Path) -> None:
    results = await run_devices(ota_url, 2, SessionOptions(wav=question_wav, mode=ListenMode.MANUAL,
                                                          reply_timeout_s=120))
    for result in results:
        assert result.ok, result.error
        assert result.turns[0].completed and result.turns[0].sentences
        assert result.turns[0].gating_drops == 0


# ---- bad input ----------------------------------------------------------------------------
async def test_silence_only_makes_no_turn(assistant: Assistant, ota_url: str, silence_wav: Path) -> None:
    result = await run_session(ota_url, options=SessionOptions(wav=silence_wav, mode=ListenMode.AUTO,
                                                               reply_timeout_s=2))
    assert not result.ok and "complete reply" in (result.error or "")  # the device waited in vain
    assert result.turns[0].t_stt is None and result.turns[0].frames_received == 0
    assert assistant.turn_log.recent() == []


async def test_empty_transcript_calls_no_llm(assistant: Assistant, ota_url: str, silence_wav: Path) -> None:
    result = await run_session(ota_url, options=SessionOptions(wav=silence_wav, mode=ListenMode.MANUAL,
                                                               reply_timeout_s=3))
    assert result.turns[0].t_stt is None  # nothing to show, nothing said
    await asyncio.sleep(0.5)
    (timings,) = assistant.turn_log.recent()
    assert timings.outcome == "empty" and timings.llm_tokens == 0 and timings.llm_first_token is None


async def test_a_monologue_is_cut_at_the_maximum_length(engines: Engines, question_wav: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    pcm, rate = read_wav(question_wav)
    long_wav = tmp_path / "monologue.wav"
    write_wav(long_wav, np.concatenate([pcm[: int(rate * 1.6)]] * 5), rate)  # 8 s without a pause
    a = Assistant(engines, PIPELINE.model_copy(update={"max_utterance_s": 3.0}))
    server, url = await start(a)
    try:
        with caplog.at_level(logging.INFO, logger="xiaozhi_local.pipeline.turns"):
            result = await run_session(url, options=SessionOptions(wav=long_wav, mode=ListenMode.MANUAL,
                                                                   reply_timeout_s=90))
    finally:
        await server.stop()
    assert result.turns[0].stt_texts  # the first 3 s were answered
    assert any("cut at the maximum length" in r.getMessage() for r in caplog.records)
    assert a.turn_log.recent()[0].speech_s == pytest.approx(3.0, abs=0.1)


async def test_a_failing_llm_gets_a_spoken_apology_and_the_session_goes_on(engines: Engines,
                                                                          question_wav: Path) -> None:
    dead = OpenAiLlm("http://127.0.0.1:9/v1", model="none", timeout_s=5)  # the discard port: refused
    a = Assistant(dataclasses.replace(engines, llm=dead), PIPELINE)
    server, url = await start(a)
    try:
        result = await run_session(url, options=SessionOptions(text=QUESTION, turns=2, reply_timeout_s=30))
    finally:
        await server.stop()
    assert result.ok, result.error
    assert [t.sentences for t in result.turns] == [[PIPELINE.apology]] * 2
    assert [t.outcome for t in a.turn_log.recent()] == ["error", "error"]
