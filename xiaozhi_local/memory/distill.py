"""Distilling durable facts about a person from what they said, with the local LLM.

Small local models (0.1–0.5 B parameters) cannot be trusted to read a whole dialogue and pick out
what matters, so the work is split:

1. :func:`self_statements` picks, in code, the sentences in which the person says something about
   themselves ("My dog is called Max.", "I moved to Berlin."): first person, not a question, not a
   built-in command. Turns without one never reach the LLM.
2. The LLM rewrites them as notes in the third person ("- The user's dog is called Max."), or answers
   NONE (:func:`distill_messages`: a strict format shown by three examples; greedy decoding).
3. :func:`parse_facts` keeps only well-formed notes that start with "The user", are short, are not
   questions and are *grounded*: at least half of their key words occur in what the person said
   (this drops invented facts and words copied from the examples).

Merging with the facts already stored (replace what a fact updates, add the rest) is
:func:`xiaozhi_local.memory.facts.plan_merge`. Known facts are not shown to the model: tiny models
copy them back, garbled.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from ..engines.base import ChatMessage, GenerationOptions, Llm
from .facts import grounded, key_words, normalize_fact, words

__all__ = ["MAX_FACTS_PER_RUN", "Distillation", "distill_messages", "parse_facts", "prompt_messages",
           "self_statements"]

MAX_FACTS_PER_RUN: Final = 5
MAX_STATEMENTS: Final = 8
"""Statements sent to the LLM in one prompt (more are sent in further prompts)."""
MAX_STATEMENT_CHARS: Final = 300
MAX_FACT_CHARS: Final = 160
MIN_GROUNDED: Final = 0.5
TOKENS_PER_STATEMENT: Final = 40

SYSTEM: Final = (
    "You turn what a person told a voice assistant into short notes about that person, written in the third "
    "person and starting with \"The user\". Keep only lasting facts (name, family, pets, home, work, likes, "
    "dislikes, habits, plans). Write one note per line starting with \"- \". If nothing is a lasting fact, "
    "write: NONE"
)
EXAMPLES: Final = (
    ("I'm vegetarian, so no meat please.\nWhat's the weather tomorrow?", "- The user is vegetarian."),
    ("Tell me a joke.", "NONE"),
    ("My sister Anna lives in Rome.\nI hate getting up early.",
     "- The user has a sister called Anna who lives in Rome.\n- The user hates getting up early."),
)
"""Few-shot examples: the format, a refusal, and two facts from two sentences."""

_FIRST_PERSON: Final = frozenset({"i", "i'm", "im", "i've", "ive", "i'd", "i'll", "my", "mine", "myself", "we",
                                  "we're", "we've", "our", "ours"})
_QUESTION_START: Final = frozenset({"what", "who", "whom", "whose", "where", "when", "why", "how", "which", "can",
                                    "could", "would", "will", "do", "does", "did", "is", "are", "am", "was", "were",
                                    "should", "shall", "may", "might", "won't", "don't", "doesn't", "isn't",
                                    "aren't", "didn't"})
_SENTENCE: Final = re.compile(r"[^.!?。！？\n]+[.!?。！？]*")
_BULLET: Final = re.compile(r"^\s*(?:[-*•·]|\d{1,2}[.)])\s*")
_FACT_START: Final = re.compile(r"^the user\b", re.IGNORECASE)
_CLAUSE: Final = re.compile(r",\s|\s(?:who|which|that|and|but|because|so|where|when)\s")
_FIRST_TO_THIRD: Final = tuple((re.compile(p, re.IGNORECASE), r) for p, r in (
    (r"^(?:i am|i'm|im)\b", "The user is"), (r"^(?:i|we) have\b", "The user has"), (r"^(?:my|our)\b", "The user's"),
))
_ZH_QUESTION_END: Final = ("吗", "呢", "么", "？", "?")


def _sentences(text: str) -> Iterator[str]:
    for match in _SENTENCE.finditer(text):
        sentence = " ".join(match.group().split())
        if sentence:
            yield sentence


def _is_self_statement(sentence: str) -> bool:
    if any("\u4e00" <= ch <= "\u9fff" for ch in sentence):  # Chinese: 我/我们, not a question
        return ("我" in sentence) and not sentence.rstrip("。！!.").endswith(_ZH_QUESTION_END)
    said = words(sentence)
    if len(said) < 3 or sentence.rstrip().endswith("?"):
        return False
    if said[0] in _QUESTION_START:
        return False
    return any(w in _FIRST_PERSON for w in said) or "call me" in " ".join(said)


def self_statements(texts: Sequence[str]) -> list[str]:
    """The sentences of ``texts`` in which the speaker says something about themselves, deduplicated."""
    found: list[str] = []
    seen: set[str] = set()
    for text in texts:
        for sentence in _sentences(text):
            key = " ".join(words(sentence))
            if key in seen or not _is_self_statement(sentence):
                continue
            seen.add(key)
            found.append(sentence[:MAX_STATEMENT_CHARS])
    return found


def prompt_messages(statements: Sequence[str]) -> list[ChatMessage]:
    messages = [ChatMessage("system", SYSTEM)]
    for said, notes in EXAMPLES:
        messages += [ChatMessage("user", said), ChatMessage("assistant", notes)]
    messages.append(ChatMessage("user", "\n".join(statements)))
    return messages


def _copies_an_example(fact: str, statements: Sequence[str]) -> bool:
    """Does ``fact`` use a key word of the examples' notes that the person did not say ("lives in Rome")?"""
    example_keys = key_words(" ".join(notes for _, notes in EXAMPLES))
    return any(grounded(word, [notes for _, notes in EXAMPLES])[0] and not grounded(word, statements)[0]
               for word in key_words(fact) if word in example_keys)


def _third_person(line: str) -> str:
    """A note the model left in the first person, in the third: "We have two cats" → "The user has two cats"."""
    for pattern, replacement in _FIRST_TO_THIRD:
        if pattern.match(line):
            return pattern.sub(replacement, line, count=1)
    return line


def _usable(fact: str, statements: Sequence[str]) -> bool:
    if not 4 <= len(words(fact)) <= 30:
        return False
    found, total = grounded(fact, statements)
    return total > 0 and found > 0 and found / total >= MIN_GROUNDED and not _copies_an_example(fact, statements)


def _salvage(line: str, statements: Sequence[str]) -> str | None:
    """``line`` as a fact, or its longest head cut at a clause boundary that is usable
    ("The user has a dog named Max who lives in Rome." → "The user has a dog named Max.")."""
    heads = [line] + [line[:m.start()] for m in reversed(list(_CLAUSE.finditer(line)))]
    for head in heads:
        fact = normalize_fact("The user" + head[len("the user"):])
        if _usable(fact, statements):
            return fact
    return None


def parse_facts(output: str, statements: Sequence[str], limit: int = MAX_FACTS_PER_RUN) -> list[str]:
    """The usable facts in the model's ``output`` (see the module docstring); junk is dropped."""
    facts: list[str] = []
    for raw in output.splitlines():
        line = _BULLET.sub("", raw).strip().strip("\"'“”")
        if not line or line.upper().startswith("NONE") or "?" in line or len(line) > MAX_FACT_CHARS:
            continue
        line = _third_person(line)
        if not _FACT_START.match(line):
            continue
        fact = _salvage(line, statements)
        if fact is None or any(fact.casefold() == kept.casefold() for kept in facts):
            continue
        facts.append(fact)
        if len(facts) >= limit:
            break
    return facts


@dataclass(frozen=True)
class Distillation:
    """What one distillation did (for logs, tests and the bench)."""

    statements: tuple[str, ...]
    outputs: tuple[str, ...]
    """The model's raw answers, one per prompt."""
    facts: tuple[str, ...]
    complete: bool
    """False when it was stopped (``stop`` set) before the end: nothing should be stored."""


def distill_messages(llm: Llm, texts: Sequence[str], stop: threading.Event, *, seed: int = 0,
                     limit: int = MAX_FACTS_PER_RUN) -> Distillation:
    """Blocking: the facts about the speaker of ``texts`` (their messages, oldest first)."""
    statements = self_statements(texts)
    outputs: list[str] = []
    facts: list[str] = []
    for start in range(0, len(statements), MAX_STATEMENTS):
        batch = statements[start:start + MAX_STATEMENTS]
        options = GenerationOptions(max_tokens=min(200, TOKENS_PER_STATEMENT * len(batch) + 16), temperature=0.0,
                                    seed=seed)
        output = "".join(llm.stream_chat(prompt_messages(batch), options, stop))
        if stop.is_set():
            return Distillation(tuple(statements), tuple(outputs), tuple(facts), complete=False)
        outputs.append(output)
        for fact in parse_facts(output, batch, limit):
            if len(facts) < limit and not any(fact.casefold() == f.casefold() for f in facts):
                facts.append(fact)
    return Distillation(tuple(statements), tuple(outputs), tuple(facts), complete=True)
