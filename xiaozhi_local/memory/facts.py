"""Facts as text: normalising, comparing and merging them. Pure.

A fact is a short third-person sentence ("The user has a dog called Max."). Two facts are about the
same thing when, after dropping "the user" and filler words and stemming crudely, their key words are
equal, one set contains the other, they overlap strongly (Jaccard ≥ :data:`SAME_TOPIC_JACCARD`), one
negates what the other says about two or more of the same key words ("no longer drinks green tea" /
"loves green tea"), or both state the same single-valued attribute (where the user lives, their
name, job or age). A new
fact about the same thing as a stored one *replaces* it (the newer statement wins); otherwise it is
added. Word overlap is a heuristic: "likes tea" and "likes coffee" stay two facts, "lives in Paris"
and "moved to Berlin" become one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Final

from ..store.memory import Fact, FactChange

__all__ = ["SAME_TOPIC_JACCARD", "grounded", "key_words", "normalize_fact", "plan_merge", "same_topic", "stem",
           "words"]

SAME_TOPIC_JACCARD: Final = 0.6

_STOPWORD_TEXT: Final = """
a an the and or but of in on at to for with from by as into about over than then so very also too just really
is are was were be been being am has have had having do does did doing will would can could should shall may might
who whom whose which that this these those there here it its they them their theirs he him his she her hers
user users user's users' person someone one ones some any all each every own other another
not no never dont doesnt didnt isnt arent wasnt werent wont cant don't doesn't didn't isn't aren't wasn't
weren't won't can't any more anymore longer still now currently recently usually often actually
especially only even quite
called named
"""
STOPWORDS: Final = frozenset(_STOPWORD_TEXT.split())
"""Words that carry no topic of their own (incl. negations: "likes tea" vs "no longer likes tea" is one topic)."""

_SINGLE_VALUED: Final = {
    "residence": re.compile(r"^the user (?:now |recently |just |has |currently )*(?:lives?|living|moved|resides?"
                            r"|relocated)\b"),
    "name": re.compile(r"^the user'?s? (?:name is|first name is|is called|goes by|wants to be called)\b"),
    "job": re.compile(r"^the user (?:now |currently )*(?:works? (?:as|at|for)|is employed)\b"
                      r"|^the user's (?:job|profession) is\b"),
    "age": re.compile(r"^the user is (?:\S+ ){1,2}years? old\b|^the user's age is\b"),
}
"""Attributes a person has one of at a time: a new statement of one replaces the old."""

_NEGATIONS: Final = frozenset({"not", "no", "never", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "wont",
                                "cant", "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "won't", "can't",
                                "anymore", "longer", "stopped", "quit"})
_APOSTROPHES: Final = str.maketrans({"’": "'", "ʼ": "'", "`": "'"})
_LATIN_THEN_CJK: Final = re.compile(r"([A-Za-z])([\u3400-\u9fff])")
_WORD: Final = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def normalize_fact(text: str) -> str:
    """NFKC, straight apostrophes, single spaces, a capital first letter and a final full stop."""
    clean = " ".join(unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).split()).strip(" \"'")
    if not clean:
        return ""
    clean = _LATIN_THEN_CJK.sub(r"\1 \2", clean[0].upper() + clean[1:])
    return clean if clean[-1] in ".!。" else clean.rstrip(",;:") + "."


def words(text: str) -> list[str]:
    """Lower-case words (apostrophes kept inside: "user's", "don't")."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold())


def stem(word: str) -> str:
    """A crude English stem: possessive and plural/verb endings off ("daughters" → "daughter")."""
    word = word.removesuffix("'s").removesuffix("'")
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def key_words(text: str) -> frozenset[str]:
    """The stems that say what a fact is about."""
    return frozenset(stem(w) for w in words(text) if w not in STOPWORDS and stem(w) not in STOPWORDS)


def _stems_match(a: str, b: str) -> bool:
    return a == b or (min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a)))


def grounded(fact: str, sources: Iterable[str]) -> tuple[int, int]:
    """(key words of ``fact`` found in ``sources``, key words of ``fact``): is it what the user said?

    Letters of CJK scripts count one by one (no spaces to split words on).
    """
    said = [stem(w) for text in sources for w in words(text)]
    cjk = {ch for text in sources for ch in text if _is_cjk(ch)}
    keys = [k for k in key_words(fact) if not any(_is_cjk(ch) for ch in k)]
    han = [ch for ch in fact.replace("用户", "") if _is_cjk(ch)]  # "the user" is no key word in Chinese either
    found = sum(any(_stems_match(k, s) for s in said) for k in keys) + sum(ch in cjk for ch in han)
    return found, len(keys) + len(han)


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return 0x3040 <= cp <= 0x30FF or 0x3400 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7AF or 0xF900 <= cp <= 0xFAFF


def _topics(text: str) -> set[str]:
    lowered = " ".join(words(text))
    return {name for name, pattern in _SINGLE_VALUED.items() if pattern.search(lowered)}


def same_topic(a: str, b: str) -> bool:
    """Do facts ``a`` and ``b`` state the same thing (so that the newer one should replace the older)?"""
    if normalize_fact(a).casefold() == normalize_fact(b).casefold():
        return True
    if _topics(a) & _topics(b):
        return True
    ka, kb = key_words(a), key_words(b)
    if not ka or not kb:
        return False
    if ka <= kb or kb <= ka:
        return True
    if _negated(a) != _negated(b) and len(ka & kb) >= 2:  # "no longer drinks green tea" corrects "loves green tea"
        return True
    return len(ka & kb) / len(ka | kb) >= SAME_TOPIC_JACCARD


def _negated(text: str) -> bool:
    return any(w in _NEGATIONS for w in words(text))


def plan_merge(new_facts: Sequence[str], existing: Sequence[Fact]) -> list[FactChange]:
    """How to store ``new_facts`` given an owner's ``existing`` ones: each replaces the first stored fact
    about the same thing (most recently updated first), else is added. Two new facts about the same
    thing: the later one wins."""
    changes: list[FactChange] = []
    claimed: dict[int, int] = {}  # existing fact id → index in changes
    for text in new_facts:
        earlier = next((i for i, c in enumerate(changes) if same_topic(c.text, text)), None)
        if earlier is not None:
            changes[earlier] = FactChange(text, changes[earlier].replace)
            continue
        match = next((f for f in existing if f.id not in claimed and same_topic(f.fact, text)), None)
        if match is not None:
            claimed[match.id] = len(changes)
        changes.append(FactChange(text, match.id if match is not None else None))
    return changes
