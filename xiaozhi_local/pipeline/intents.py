"""Pure text matching for the turn logic: wake words, goodbyes and built-in requests.

Everything works on :func:`normalize`-d text (NFKC, casefolded, punctuation, symbols and emoji
removed, spaces collapsed), so "Hi, XiaoZhi!" and "hi xiaozhi" are the same. Matching is
whole-utterance: a phrase only counts when it is (nearly) all the user said, so "bye" inside
"how do I say bye in French" is not a goodbye.

:func:`match_builtin` is the seam for built-in intents handled without the LLM
(:class:`Intent` ``enroll_voice`` with the name, ``forget_me``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Intent", "is_goodbye", "is_wake_word", "match_builtin", "normalize"]

_APOSTROPHES: Final = frozenset("'’ʼ`")
_DROP_CATEGORIES: Final = ("P", "S", "Cc", "Cf", "Me")  # punctuation, symbols (emoji), controls, ZWJ, keycaps
_VARIATION_SELECTORS: Final = range(0xFE00, 0xFE10)

GREETINGS: Final = ("hi", "hello", "hey", "hey there", "hi there", "ok", "okay", "yo",
                    "你好", "你好呀", "嗨", "哈喽", "喂", "嘿")  # fmt: skip
"""Said before (or after) a wake word: "hi xiaozhi!", "你好，小智", "小智你好"."""

FILLERS: Final = ("ok", "okay", "alright", "all right", "right", "well", "so", "then", "now", "for now",
                  "later", "soon", "thanks", "thank you", "thank you very much", "thx", "and", "xiaozhi",
                  "好的", "好", "那", "那就", "那么", "嗯", "谢谢", "谢谢你", "了", "啦", "吧", "哦", "呀",
                  "啊", "小智")  # fmt: skip
"""May surround a goodbye: "ok bye then", "thanks, goodbye", "好的，再见", "那再见了"."""


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return 0x3040 <= cp <= 0x30FF or 0x3400 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7AF or 0xF900 <= cp <= 0xFAFF


def _plain(text: str) -> str:
    """NFKC; apostrophes dropped ("I'm" → "Im"); other punctuation, symbols, emoji → spaces; collapsed."""
    chars = []
    for ch in unicodedata.normalize("NFKC", text):
        if ch in _APOSTROPHES:
            continue
        drop = unicodedata.category(ch).startswith(_DROP_CATEGORIES) or ord(ch) in _VARIATION_SELECTORS
        chars.append(" " if drop else ch)
    return " ".join("".join(chars).split())


def normalize(text: str) -> str:
    """Casefolded text without punctuation (incl. CJK) or emoji, single-spaced."""
    return _plain(text).casefold()


def _compact(text: str) -> str:
    return normalize(text).replace(" ", "")


def is_wake_word(text: str, wake_words: Sequence[str]) -> bool:
    """True when ``text`` is a wake word, maybe with a short greeting ("hi xiaozhi!", "你好，小智").

    A wake word that starts with a greeting ("你好小智", "hey xiaozhi") also matches its bare
    name with any greeting ("小智", "hi xiaozhi", "小智你好"). Spaces do not matter.
    """
    said = _compact(text)
    if not said:
        return False
    greetings = sorted({_compact(g) for g in GREETINGS}, key=len, reverse=True)
    for wake in wake_words:
        word = _compact(wake)
        if not word:
            continue
        cores = {word} | {word[len(g) :] for g in greetings if word.startswith(g) and len(word) > len(g)}
        for core in cores:
            if said in (core, core + core) or any(said in (g + core, core + g) for g in greetings):
                return True
    return False


def _units_match(text: str, units: Iterable[str], required: frozenset[str]) -> bool:
    """Is ``text`` a sequence of ``units`` (at word boundaries, or anywhere in CJK) using at
    least one of ``required``?"""
    ordered = sorted({u for u in units if u}, key=len, reverse=True)
    seen: set[tuple[int, bool]] = set()
    todo = [(0, False)]
    while todo:
        pos, found = todo.pop()
        if pos == len(text):
            if found:
                return True
            continue
        if (pos, found) in seen:
            continue
        seen.add((pos, found))
        for unit in ordered:
            if not text.startswith(unit, pos):
                continue
            end = pos + len(unit)
            if end == len(text) or text[end] == " " or _is_cjk(text[end - 1]) or _is_cjk(text[end]):
                nxt = end + 1 if end < len(text) and text[end] == " " else end
                todo.append((nxt, found or unit in required))
    return False


def is_goodbye(text: str, goodbye_words: Sequence[str]) -> bool:
    """True when the whole utterance is a goodbye, maybe with fillers ("ok bye then", "好的，再见")."""
    said = normalize(text)
    goodbyes = frozenset(normalize(w) for w in goodbye_words) - {""}
    if not said or not goodbyes:
        return False
    return _units_match(said, goodbyes | {normalize(f) for f in FILLERS}, goodbyes)


@dataclass(frozen=True)
class Intent:
    """A built-in request recognised without the LLM: ``name`` and its ``argument`` (or "")."""

    name: str
    argument: str


_PLEASE_EN: Final = r"(?:(?:ok|okay|hey|hi|so|xiaozhi|please|can you|could you|would you|will you)\s+)*"
_PLEASE_END_EN: Final = r"(?:\s+(?:please|thanks|thank you|now|xiaozhi))*"
_PLEASE_ZH: Final = r"(?:(?:小智|好的|请你|请|你|帮我|麻烦你|能不能|可以|那)\s?)*"
_PARTICLE_ZH: Final = r"(?:\s?(?:吧|啊|呀|哦|了|好吗|好不好|谢谢|小智))*"

_REMEMBER_EN: Final = r"(?:remember|learn|save|store|memori[sz]e|record|enroll)\s+my\s+voice(?:print)?"
_I_AM_EN: Final = r"(?:i\s+am|im|i\s+m|this\s+is|my\s+name\s+is|my\s+names|call\s+me|its)"
_NAME_EN: Final = r"(?P<name>[^\W\d_][\w-]*(?:\s+[^\W\d_][\w-]*){0,2}?)"
_REMEMBER_ZH: Final = r"(?:记住|记下|记一下|认识|认住|录入|保存|学习)(?:一下)?\s?我的\s?(?:声音|声纹|嗓音)"
_I_AM_ZH: Final = r"(?:我是|我叫|我的名字是|我的名字叫|我名字叫)"
_NAME_ZH: Final = r"(?P<name>[^\W\d_]{1,8}?|[^\W\d_][\w-]*(?:\s[^\W\d_][\w-]*){0,2}?)"

_ENROLL: Final = (
    re.compile(rf"{_PLEASE_EN}{_REMEMBER_EN}\s+{_I_AM_EN}\s+{_NAME_EN}{_PLEASE_END_EN}", re.IGNORECASE),
    re.compile(rf"{_I_AM_EN}\s+{_NAME_EN}\s+(?:and\s+)?{_PLEASE_EN}{_REMEMBER_EN}{_PLEASE_END_EN}", re.IGNORECASE),
    re.compile(rf"{_PLEASE_ZH}{_REMEMBER_ZH}\s?{_I_AM_ZH}\s?{_NAME_ZH}{_PARTICLE_ZH}"),
    re.compile(rf"{_I_AM_ZH}\s?{_NAME_ZH}\s?{_PLEASE_ZH}{_REMEMBER_ZH}{_PARTICLE_ZH}"),
)
_FORGET: Final = (
    re.compile(
        rf"{_PLEASE_EN}(?:forget|delete|erase|remove|wipe)\s+"
        r"(?:me|(?:all\s+|everything\s+|what\s+)?(?:you\s+know\s+|you\s+remember\s+)?(?:about\s+me|of\s+me)"
        r"|all\s+my\s+data|my\s+data|my\s+memories)"
        rf"{_PLEASE_END_EN}",
        re.IGNORECASE,
    ),
    re.compile(
        rf"{_PLEASE_ZH}(?:忘记|忘掉|忘了|删除|删掉|清除|清空)\s?"
        r"(?:我|关于我的(?:一切|所有|所有事情|事情|记忆|信息)|我的(?:一切|所有信息|信息|数据|记忆|声音|声纹)|你对我的(?:记忆|了解))"
        rf"{_PARTICLE_ZH}"
    ),
)

_NOT_NAMES: Final = frozenset({
    "a", "an", "the", "you", "me", "it", "here", "back", "not", "sure", "sorry", "going", "gonna", "trying",
    "done", "ready", "just", "so", "very", "about", "from", "in", "at",
})  # fmt: skip
"""First words that show "I am …" is not followed by a name ("remember my voice, I'm going to sing")."""


def match_builtin(text: str) -> Intent | None:
    """``Intent("enroll_voice", name)`` for "remember my voice, I am Sam" / "记住我的声音，我是小明",
    ``Intent("forget_me", "")`` for "forget what you know about me" / "忘记关于我的一切"; else None.

    Only a whole utterance that is clearly that request matches ("can you remember my voice
    when I sing" does not).
    """
    plain = _plain(text)
    if not plain:
        return None
    for pattern in _ENROLL:
        m = pattern.fullmatch(plain)
        if m is not None and m["name"].split()[0].casefold() not in _NOT_NAMES:
            return Intent("enroll_voice", m["name"])
    if any(pattern.fullmatch(plain) for pattern in _FORGET):
        return Intent("forget_me", "")
    return None
