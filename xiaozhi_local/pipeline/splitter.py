"""Streaming sentence splitting of LLM output for TTS, and text cleaning for speech.

Pure: no I/O, no clock. :class:`SentenceSplitter` is fed the LLM's streamed pieces
(:meth:`~SentenceSplitter.push`) and returns the speakable pieces completed so far; at the end
of the stream :meth:`~SentenceSplitter.flush` returns the rest. Where a piece ends depends only
on the text, never on how it was chunked: feeding a reply character by character or all at
once gives the same pieces.

* The **first** piece of a reply may end early at a clause mark (``, ; :`` and ``，、；：``) once
  it holds at least :attr:`SplitterConfig.first_min_chars` characters (a CJK character counts
  ``first_min_chars / first_min_cjk``), so speech starts before the LLM is done.
* Later pieces end at sentence ends: ``. ! ? …`` followed by a space, a CJK character or the
  end of the stream (so not ``3.14``, ``e.g.``, ``Mr.``, ``1...5``), ``。！？`` anywhere, and
  newlines. A piece heavier than :attr:`SplitterConfig.max_chars` is cut at a clause mark or a
  space in its second half.
* Markdown blocks are handled on the fly: fenced code is dropped whole; heading, list and quote
  markers at the start of a line are removed. Each piece is then cleaned by the same rules as
  :func:`clean_for_speech`; pieces left empty (or with punctuation only) are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["SentenceSplitter", "SplitterConfig", "clean_for_speech"]

_CJK: Final = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF),
               (0x20000, 0x2FFFF))  # fmt: skip
"""Kana, CJK ideographs (+ extensions, compatibility) and Hangul: the text a TTS speaks."""
_WIDE_PUNCT: Final = ((0x3000, 0x303F), (0xFF00, 0xFFEF))
_PICTOGRAPHS: Final = re.compile(
    "[\U0001f000-\U0001faff"  # mahjong … emoticons, transport, supplemental symbols, flags, skin tones
    "\u2190-\u21ff\u2300-\u23ff\u25a0-\u27bf\u2b00-\u2bff"  # arrows, technical, shapes, symbols, dingbats
    "\u3030\u303d\u3297\u3299\u24c2"  # the emoji among CJK symbols
    "\ufe00-\ufe0f\u200d\u20e3\U000e0000-\U000e007f]"  # variation selectors, ZWJ, keycap, tags
)

_HARD_STOPS: Final = frozenset("。！？｡")
_STOPS: Final = frozenset(".!?…") | _HARD_STOPS
_CLAUSES: Final = frozenset(",;:")
_WIDE_CLAUSES: Final = frozenset("，、；：")
_CLOSERS: Final = frozenset("\"'”’」』）)]】》〉*_`~")
"""Closing quotes/brackets and markdown emphasis that stay with the sentence they follow."""
_ABBREVIATIONS: Final = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "approx", "fig"})
_DOTTED: Final = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # e.g / i.e / U.S / a.m

_LINE_WINDOW: Final = 12
"""Characters at the start of a line enough to recognise any block marker."""
_MARKER_CHARS: Final = frozenset(" \t#>-*+•`~0123456789.)、")
_FENCE: Final = re.compile(r" {0,3}(`{3,}|~{3,})")
_LINE_MARKER: Final = re.compile(
    r"[ \t]*(?:>[ \t]*)*(?:#{1,6}(?:[ \t]+|(?=\n))|(?:[-*+•]|\d{1,3}[.)])(?:[ \t]+|(?=\n))|\d{1,3}、)?"
)

_IMAGE: Final = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_LINK: Final = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_REF_LINK: Final = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
_CHECKBOX: Final = re.compile(r"\[[ xX]\]")
_URL: Final = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+")
_HTML: Final = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>\n]*)?/?>")
_EMPHASIS: Final = re.compile(r"(?<![\d\s])\*+|\*+(?![\d\s])|~~|`+")  # not the * of "2*3" or "2 * 3"
_UNDERSCORE: Final = re.compile(r"(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])")  # keeps snake_case
_RULE_LINE: Final = re.compile(r"^[ \t|:=*_~-]+$", re.MULTILINE)  # table rules, horizontal rules
_LINE_END: Final = re.compile(r"([^\W_])([ \t|*_`~]*)(?=\n)")
_PIPE_EDGE: Final = re.compile(r"^[ \t]*\|[ \t]*|[ \t]*\|[ \t]*$", re.MULTILINE)
_PIPE: Final = re.compile(r"\s*\|\s*")
_SPACE: Final = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT: Final = re.compile(r"\s+([,.;:!?%，。、；：！？…)\]）】」』”’])")
_LEADING: Final = re.compile(r"^(?:[\s,.;:!?，。、；：！？…–—)\]）】」』”’\"'>]|-(?!\d))+")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK)


def _is_wide(ch: str) -> bool:
    """A CJK character, CJK/full-width punctuation or a pictograph: a sentence may end before it."""
    cp = ord(ch)
    return _is_cjk(ch) or any(lo <= cp <= hi for lo, hi in _WIDE_PUNCT) or _PICTOGRAPHS.match(ch) is not None


def _clean_inline(text: str) -> str:
    """Inline markdown, URLs, tags and pictographs out; whitespace collapsed; "" if nothing speakable."""
    text = _PICTOGRAPHS.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _CHECKBOX.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _HTML.sub(" ", text)
    text = _RULE_LINE.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _UNDERSCORE.sub("", text)
    text = _PIPE.sub(", ", _PIPE_EDGE.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _LEADING.sub("", text)
    return text if any(ch.isalnum() for ch in text) else ""


class _BlockFilter:
    """Streaming line-level markdown: drops fenced code, strips heading/list/quote markers.

    A line's fate is decided from its first :data:`_LINE_WINDOW` characters (or fewer once a
    character that cannot belong to a marker, or the newline, has arrived), so the output does
    not depend on chunking.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._held = ""  # the start of a line not yet decided
        self._line_start = True
        self._skip = False  # drop the rest of this line (fence lines, code)
        self._fence: str | None = None  # inside a fenced code block opened by this fence

    def feed(self, text: str, *, final: bool = False) -> str:
        buf, self._held = self._held + text, ""
        out: list[str] = []
        i, n = 0, len(buf)
        while i < n:
            nl = buf.find("\n", i)
            if self._line_start:
                line = buf[i:] if nl < 0 else buf[i:nl]
                complete = nl >= 0 or final
                if not complete and len(line) < _LINE_WINDOW and all(c in _MARKER_CHARS for c in line):
                    self._held = line
                    break
                self._line_start = False
                i += self._marker_length((line + "\n" if complete else line)[:_LINE_WINDOW])
                continue
            end = n if nl < 0 else nl + 1
            if not self._skip:
                out.append(buf[i:end])
            if nl >= 0:
                self._line_start, self._skip = True, False
            i = end
        if final:
            self._reset()  # an unclosed fence is dropped
        return "".join(out)

    def _marker_length(self, window: str) -> int:
        fence = _FENCE.match(window)
        if self._fence is not None:
            self._skip = True
            if fence is not None and fence[1][0] == self._fence[0] and len(fence[1]) >= len(self._fence):
                self._fence = None
            return 0
        if fence is not None:
            self._fence, self._skip = fence[1], True
            return 0
        marker = _LINE_MARKER.match(window)
        return marker.end() if marker is not None else 0


def clean_for_speech(text: str) -> str:
    """``text`` as a TTS should read it: markdown, code blocks, URLs and emoji removed, one line.

    A line that ends without punctuation (a heading, a list item) gets a full stop, so that the
    lines are not read as one run-on sentence.
    """
    text = _BlockFilter().feed(text, final=True)
    text = _LINE_END.sub(lambda m: m[1] + ("。" if _is_cjk(m[1]) else ".") + m[2], text)
    return _clean_inline(text)


def _inside_link(text: str) -> bool:
    """True while ``text`` ends inside a markdown ``[link text]`` or its ``(url)``."""
    depth = url = 0
    prev = ""
    for ch in text:
        if url:
            url += (ch == "(") - (ch == ")")
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == "(" and prev == "]":
            url = 1
        prev = ch
    return depth > 0 or url > 0


def _is_abbreviation(before: str) -> bool:
    """Does the word just before a single ``.`` make it an abbreviation (Mr., e.g., J.)?"""
    words = before.split()
    if not words:
        return False
    token = words[-1].lstrip("([{\"'“‘*_")
    if len(token) == 1:
        return token.isupper() and token != "I"
    return token.lower() in _ABBREVIATIONS or _DOTTED.fullmatch(token) is not None


@dataclass(frozen=True, slots=True)
class SplitterConfig:
    """Where :class:`SentenceSplitter` may cut."""

    first_min_chars: int = 12
    """The first piece may end at a clause mark once it is this long (cleaned, spaces counted)."""
    first_min_cjk: int = 4
    """… or holds this many CJK characters: each weighs ``first_min_chars / first_min_cjk``."""
    max_chars: int = 200
    """A piece heavier than this (same weights) is cut without waiting for a sentence end."""

    @property
    def cjk_weight(self) -> float:
        return self.first_min_chars / max(1, self.first_min_cjk)


class SentenceSplitter:
    """Cuts one streamed reply into speakable pieces (see the module docstring)."""

    def __init__(self, config: SplitterConfig | None = None) -> None:
        self.config = config or SplitterConfig()
        self.reset()

    eager = False
    """Cut at clause marks (commas …) in every piece, not only the first: set by the caller
    while the device is about to run out of audio, so speech keeps flowing from a slow LLM."""

    def reset(self) -> None:
        """Forget everything: the next text starts a new reply (its first piece may cut early)."""
        self.eager = False
        self._filter = _BlockFilter()
        self._seg = ""  # filtered text since the last cut
        self._weight = 0.0
        self._pending: str | None = None  # "stop" / "clause": a mark waiting for the next character
        self._run_start = 0  # where that mark is in _seg
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        """Feed the next streamed piece of the reply; return the pieces completed by it."""
        out: list[str] = []
        for ch in self._filter.feed(text):
            self._step(ch, out)
        return out

    def flush(self) -> list[str]:
        """End of the reply: return what is left, then reset for the next reply."""
        out: list[str] = []
        for ch in self._filter.feed("", final=True):
            self._step(ch, out)
        if self._pending is not None:
            self._resolve(None, out)
        self._cut(len(self._seg), out)
        self.reset()
        return out

    def _step(self, ch: str, out: list[str]) -> None:
        if self._pending is not None:
            if ch in _CLOSERS or (self._pending == "stop" and ch in _STOPS):
                self._append(ch, out)
                return
            self._resolve(ch, out)
        if ch == "\n":
            self._cut(len(self._seg), out)
            return
        first = self._emitted == 0 or self.eager
        if ch in _HARD_STOPS and not _inside_link(self._seg):
            self._seg += ch
            self._cut(len(self._seg), out)
        elif ch in _STOPS or (first and ch in _CLAUSES):
            self._pending, self._run_start = ("stop" if ch in _STOPS else "clause"), len(self._seg)
            self._append(ch, out)
        elif first and ch in _WIDE_CLAUSES and self._clause_cut_ok(len(self._seg), self._seg + ch):
            self._seg += ch
            self._cut(len(self._seg), out)
        else:
            self._append(ch, out)

    def _append(self, ch: str, out: list[str]) -> None:
        self._seg += ch
        self._weight += self.config.cjk_weight if _is_cjk(ch) else 1
        if self._weight > self.config.max_chars:
            self._cut(self._soft_cut_index(), out)

    def _resolve(self, nxt: str | None, out: list[str]) -> None:
        """The character after a pending mark arrived (``None``: the stream ended): cut or not."""
        kind, start, seg = self._pending, self._run_start, self._seg
        self._pending = None
        run = seg[start:]
        hard = any(c in _HARD_STOPS for c in run)
        if nxt is not None and not (nxt.isspace() or _is_wide(nxt) or hard):
            return
        if kind == "stop":
            before = seg[:start]
            single_dot = "".join(c for c in run if c in _STOPS) == "."
            if not _inside_link(before) and not (single_dot and _is_abbreviation(before)):
                self._cut(len(seg), out)
        elif (self._emitted == 0 or self.eager) and self._clause_cut_ok(start, seg):
            self._cut(len(seg), out)

    def _clause_cut_ok(self, mark: int, piece: str) -> bool:
        if _inside_link(piece[:mark]):
            return False
        cleaned = _clean_inline(piece)
        weight = sum(self.config.cjk_weight if _is_cjk(c) else 1 for c in cleaned)
        return weight >= self.config.first_min_chars

    def _soft_cut_index(self) -> int:
        """Where to cut an over-long piece: after a mark, else at a space, in its second half."""
        seg = self._seg
        last, half = len(seg) - 1, len(seg) // 2
        for j in range(last - 1, half - 1, -1):
            ch = seg[j]
            if ch in _WIDE_CLAUSES or ch in _HARD_STOPS or ((ch in _CLAUSES or ch in _STOPS) and seg[j + 1].isspace()):
                return j + 1
        for j in range(last - 1, half - 1, -1):
            if seg[j].isspace():
                return j
        return last

    def _cut(self, n: int, out: list[str]) -> None:
        piece, self._seg = self._seg[:n], self._seg[n:]
        if self._pending is not None:
            if self._run_start >= n:
                self._run_start -= n
            else:
                self._pending = None
        self._weight = sum(self.config.cjk_weight if _is_cjk(c) else 1 for c in self._seg)
        text = _clean_inline(piece)
        if text:
            out.append(text)
            self._emitted += 1
