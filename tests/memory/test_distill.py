"""Fact distillation: which sentences reach the LLM, what of its output is kept, and the real tiny model."""

from __future__ import annotations

import threading

import pytest

from tests.memory.conftest import load_test_engines
from xiaozhi_local.memory.distill import EXAMPLES, SYSTEM, distill_messages, parse_facts, self_statements
from xiaozhi_local.memory.facts import key_words
from xiaozhi_local.pipeline.assistant import Engines


def test_only_what_people_say_about_themselves_reaches_the_llm() -> None:
    texts = ["Hello! My dog is called Max. What should I feed him?", "What is two plus two?",
             "Set a timer for five minutes.", "I see.", "Do I have any appointments today",
             "We moved to Berlin last year, and I love it.", "Call me Sam, please.", "我的狗叫小白。", "我的狗叫什么？",
             "My dog is called Max."]
    assert self_statements(texts) == ["My dog is called Max.", "We moved to Berlin last year, and I love it.",
                                      "Call me Sam, please.", "我的狗叫小白。"]


@pytest.mark.parametrize(("output", "expected"), [
    ("- The user's dog is called Max.", ["The user's dog is called Max."]),
    ("1. the user's dog is called Max\n2) The user has a dog called Max", ["The user's dog is called Max.",
                                                                         "The user has a dog called Max."]),
    ("NONE", []),
    ("- The user has a dog named Max who lives in Rome.", ["The user has a dog named Max."]),  # copied example
    ("- The user hates getting up early.", []),  # an example's fact the person never stated
    ("- The user is two plus two.\n- The user likes pizza.", []),  # not grounded in what was said
    ("- Set a timer for five minutes.\n- Max is a good dog.", []),  # not a note about the user
    ("- The user's dog is called Max?\n- The user", []),
    ("Sure! Here are the notes:\n\n- The user's dog is called Max.\n- The user's dog is called Max.",
     ["The user's dog is called Max."]),
])
def test_parsing_keeps_grounded_notes_and_drops_junk(output: str, expected: list[str]) -> None:
    assert parse_facts(output, ["My dog is called Max."]) == expected


def test_notes_left_in_the_first_person_are_turned_around() -> None:
    said = ["I'm allergic to peanuts.", "We have two cats called Tom and Jerry."]
    output = "- The user is allergic to peanuts.\n- We have two cats called Tom and Jerry.\n- I am from Mars."
    assert parse_facts(output, said) == ["The user is allergic to peanuts.",
                                         "The user has two cats called Tom and Jerry."]


def test_parsing_is_bounded() -> None:
    said = [f"I have a pet number {i}." for i in range(10)]
    output = "\n".join(f"- The user has a pet number {i}." for i in range(10))
    assert len(parse_facts(output, said, limit=5)) == 5


class NoLlm:
    context_size = 2048

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(self, *args: object) -> object:
        raise AssertionError("nothing to distill: the LLM must not be asked")


def test_small_talk_never_reaches_the_llm() -> None:
    result = distill_messages(NoLlm(), ["What is two plus two?", "Tell me a joke."], threading.Event())  # type: ignore[arg-type]
    assert result.complete and result.facts == () and result.statements == ()


@pytest.fixture(scope="module")
def engines() -> Engines:
    return load_test_engines()


@pytest.mark.models
def test_the_tiny_test_llm_distills_a_pet_from_a_statement(engines: Engines) -> None:
    result = distill_messages(engines.llm, ["Hello there.", "My dog is called Max.", "What should I feed him?"],
                              threading.Event())
    assert result.complete and result.statements == ("My dog is called Max.",)
    assert result.facts, f"SmolLM2-135M gave no usable fact; it answered {result.outputs}"
    assert all(f.startswith("The user") and {"dog", "max"} <= key_words(f) for f in result.facts)


@pytest.mark.models
def test_a_stopped_distillation_is_incomplete(engines: Engines) -> None:
    stop = threading.Event()
    stop.set()
    result = distill_messages(engines.llm, ["My dog is called Max."], stop)
    assert not result.complete and result.facts == ()


def test_the_prompt_shows_the_format_it_parses() -> None:
    assert "NONE" in SYSTEM and "The user" in SYSTEM
    for said, notes in EXAMPLES:
        assert parse_facts(notes, said.splitlines()) == [n.removeprefix("- ") for n in notes.splitlines()
                                                         if n != "NONE"]
