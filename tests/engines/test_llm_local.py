"""LlamaCppLlm with the real SmolLM2-135M test model, greedy (temperature 0) and short replies."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines import real_models
from xiaozhi_local.engines.base import ChatMessage, GenerationOptions
from xiaozhi_local.engines.llm_local import LlamaCppLlm
from xiaozhi_local.errors import LlmError

pytestmark = pytest.mark.models

LLM_MODEL = ("smollm2-135m-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf")
SYSTEM = "You are a helpful voice assistant. Answer in one short sentence."
GREEDY = GenerationOptions(max_tokens=16, temperature=0.0)


def ask(question: str, system: str = SYSTEM) -> list[ChatMessage]:
    return [ChatMessage("system", system), ChatMessage("user", question)]


@pytest.fixture(scope="module")
def llm() -> Iterator[LlamaCppLlm]:
    engine = LlamaCppLlm(real_models().joinpath(*LLM_MODEL), context_size=2048, threads=1)
    yield engine
    engine.close()


def run(llm: LlamaCppLlm, messages: list[ChatMessage], options: GenerationOptions = GREEDY) -> list[str]:
    return list(llm.stream_chat(messages, options, threading.Event()))


def test_streams_a_reply_in_pieces(llm: LlamaCppLlm) -> None:
    pieces = run(llm, ask("What is two plus two?"))
    assert len(pieces) > 1
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces).strip()
    assert llm.context_size == 2048


def test_greedy_replies_are_deterministic(llm: LlamaCppLlm) -> None:
    llm.reset_cache()
    first = run(llm, ask("What is two plus two?"))
    llm.reset_cache()
    second = run(llm, ask("What is two plus two?"))
    assert first == second


def test_reused_system_prompt_gives_the_cold_reply(llm: LlamaCppLlm) -> None:
    llm.reset_cache()
    cold = run(llm, ask("Name a colour."))
    assert llm.last_prompt is not None and llm.last_prompt.source == "cold"
    run(llm, ask("What is two plus two?"))  # same system prompt, another user: the live context is reused
    live = llm.last_prompt
    assert live is not None and live.source == "live" and live.reused_tokens > 0
    run(llm, ask("Hi", system="You are a pirate."))  # the live context now diverges at the system prompt
    cached = run(llm, ask("Name a colour."))
    assert llm.last_prompt is not None and llm.last_prompt.source == "snapshot"
    assert cached == cold


def test_second_turn_reuses_the_dialogue_and_matches_a_cold_run(llm: LlamaCppLlm) -> None:
    llm.reset_cache()
    first = "".join(run(llm, ask("What is two plus two?")))
    run(llm, ask("Hi", system="You are a pirate."))  # another session in between
    second_turn = [*ask("What is two plus two?"), ChatMessage("assistant", first),
                   ChatMessage("user", "And three plus three?")]
    warm = run(llm, second_turn)
    stats = llm.last_prompt
    assert stats is not None and stats.source == "snapshot"
    first_turn_tokens = llm.count_tokens(SYSTEM) + llm.count_tokens("What is two plus two?") + llm.count_tokens(first)
    assert stats.reused_tokens > first_turn_tokens  # the first turn's prompt and reply were not recomputed
    llm.reset_cache()
    assert run(llm, second_turn) == warm


def test_stop_event_ends_generation_within_one_piece(llm: LlamaCppLlm) -> None:
    options = GenerationOptions(max_tokens=32, temperature=0.0)
    unstopped = run(llm, ask("Tell me about the sea."), options)
    assert len(unstopped) > 3
    stop = threading.Event()
    pieces = []
    for piece in llm.stream_chat(ask("Tell me about the sea."), options, stop):
        pieces.append(piece)
        stop.set()
    assert 1 <= len(pieces) <= 2


def test_a_stop_set_before_the_call_yields_nothing(llm: LlamaCppLlm) -> None:
    stop = threading.Event()
    stop.set()
    assert list(llm.stream_chat(ask("Tell me about the sea."), GREEDY, stop)) == []


def test_chinese_comes_out_as_whole_characters(llm: LlamaCppLlm) -> None:
    pieces = run(llm, ask("Translate to Chinese: good morning"))
    text = "".join(pieces)
    chinese = [c for c in text if "\u4e00" <= c <= "\u9fff"]
    assert chinese, f"expected Chinese characters in {text!r}"
    # the characters were split over several byte tokens, and still none was broken
    assert llm.count_tokens("".join(chinese)) > len(chinese)
    assert "\ufffd" not in text
    for piece in pieces:
        piece.encode("utf-8")  # every piece is a valid str on its own


def test_concurrent_sessions_queue_and_both_complete(llm: LlamaCppLlm) -> None:
    questions = ["What is two plus two?", "Name a colour."]
    expected = [run(llm, ask(q)) for q in questions]
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def session(i: int) -> None:
        try:
            results[i] = run(llm, ask(questions[i]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert [results.get(i) for i in range(2)] == expected


def test_count_tokens_uses_the_model_tokenizer(llm: LlamaCppLlm) -> None:
    assert llm.count_tokens("") == 0
    short, long = llm.count_tokens("hello"), llm.count_tokens("hello there, how are you doing today?")
    assert 0 < short < long


def test_a_prompt_larger_than_the_context_is_refused(llm: LlamaCppLlm) -> None:
    with pytest.raises(LlmError, match="context"):
        run(llm, ask("word " * (llm.context_size + 10)))


def test_missing_model_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(LlmError, match=re.escape(str(missing))):
        LlamaCppLlm(missing)


@pytest.mark.parametrize("content", [b"not a model at all", b"GGUF" + b"\x00" * 64])
def test_corrupt_model_file_names_it(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(content)
    with pytest.raises(LlmError, match=re.escape(str(bad))):
        LlamaCppLlm(bad)
