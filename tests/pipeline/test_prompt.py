"""Prompt assembly and the per-session dialogue history (no model: one token per word)."""

from __future__ import annotations

import pytest

from xiaozhi_local.engines.base import ChatMessage
from xiaozhi_local.errors import LlmError
from xiaozhi_local.pipeline.prompt import Dialogue, build_messages, message_tokens


def words(text: str) -> int:
    return len(text.split())


def cost(messages: list[ChatMessage]) -> int:
    return sum(message_tokens(m, words) for m in messages)


def turn(i: int, size: int = 3) -> list[ChatMessage]:
    return [ChatMessage("user", " ".join([f"q{i}"] * size)), ChatMessage("assistant", " ".join([f"a{i}"] * size))]


HISTORY = [m for i in range(6) for m in turn(i)]
SYSTEM = "you are a helpful assistant"


def build(history: list[ChatMessage], *, budget: int = 1000, context: int = 1000, reply: int = 100,
          extra: str = "") -> list[ChatMessage]:
    return build_messages(SYSTEM, history, "what now", count_tokens=words, history_budget=budget,
                          context_size=context, reply_tokens=reply, extra_system=extra)


def test_system_first_user_last_and_all_history_when_it_fits() -> None:
    messages = build(HISTORY)
    assert messages[0] == ChatMessage("system", SYSTEM)
    assert messages[-1] == ChatMessage("user", "what now")
    assert messages[1:-1] == HISTORY


def test_extra_system_goes_after_the_fixed_system_prompt() -> None:
    messages = build([], extra="the device is in the kitchen")
    assert messages[0].role == "system"
    assert messages[0].content.startswith(SYSTEM)
    assert messages[0].content.endswith("the device is in the kitchen")
    assert [m.role for m in messages] == ["system", "user"]


@pytest.mark.parametrize("budget", [0, 9, 10, 19, 20, 35, 60, 1000])
def test_history_budget_keeps_the_newest_whole_turns(budget: int) -> None:
    messages = build(HISTORY, budget=budget)
    kept = messages[1:-1]
    assert cost(kept) <= budget
    assert len(kept) % 2 == 0
    assert kept == HISTORY[len(HISTORY) - len(kept):]  # a suffix: the oldest went first
    if len(kept) < len(HISTORY):  # one more (older) turn would not have fitted
        assert cost(HISTORY[len(HISTORY) - len(kept) - 2:]) > budget


@pytest.mark.parametrize("context", [60, 70, 81, 100, 130])
def test_total_never_exceeds_context_minus_reply(context: int) -> None:
    messages = build(HISTORY, context=context, reply=40)
    assert cost(messages) <= context - 40
    kept = messages[1:-1]
    assert kept == HISTORY[len(HISTORY) - len(kept):]
    if len(kept) < len(HISTORY):
        assert cost(messages) + cost(HISTORY[len(HISTORY) - len(kept) - 2:len(HISTORY) - len(kept)]) > context - 40


def test_a_long_turn_is_not_split_and_stops_the_search() -> None:
    history = [*turn(0), ChatMessage("user", "q1"), ChatMessage("assistant", "a1 " * 50), *turn(2)]
    kept = build(history, budget=30)[1:-1]
    assert kept == turn(2)


def test_unanswered_user_messages_are_dropped_and_a_greeting_is_kept() -> None:
    history = [ChatMessage("assistant", "hi how can i help"), *turn(0), ChatMessage("user", "lost question"),
               *turn(1)]
    kept = build(history)[1:-1]
    assert kept == [ChatMessage("assistant", "hi how can i help"), *turn(0), *turn(1)]


def test_system_and_user_alone_too_big_is_a_clear_error() -> None:
    with pytest.raises(LlmError, match="llm_context"):
        build([], context=20, reply=10)


def test_empty_system_prompt_gives_no_system_message() -> None:
    messages = build_messages("", [], "hello", count_tokens=words, history_budget=10, context_size=100,
                              reply_tokens=10)
    assert messages == [ChatMessage("user", "hello")]


def test_dialogue_alternates_and_stays_bounded() -> None:
    dialogue = Dialogue(max_turns=3)
    for i in range(5):
        dialogue.add_user(f"q{i}")
        dialogue.add_assistant(f"a{i}")
    assert dialogue.messages == tuple(m for i in range(2, 5)
                                      for m in (ChatMessage("user", f"q{i}"), ChatMessage("assistant", f"a{i}")))


def test_dialogue_replaces_an_unanswered_question_and_joins_assistant_texts() -> None:
    dialogue = Dialogue()
    dialogue.add_assistant("Hi!")
    dialogue.add_assistant("How can I help?")
    dialogue.add_user("first try")
    dialogue.add_user("second try")
    dialogue.add_assistant("")  # an empty reply is not history
    dialogue.add_assistant("Sure.")
    assert dialogue.messages == (ChatMessage("assistant", "Hi! How can I help?"),
                                 ChatMessage("user", "second try"), ChatMessage("assistant", "Sure."))
    dialogue.clear()
    assert not dialogue.messages


def test_dialogue_needs_room_for_a_turn() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        Dialogue(max_turns=0)
