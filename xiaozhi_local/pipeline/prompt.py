"""Prompt assembly: the system prompt, as much recent dialogue as fits, and the new user turn.

Pure functions and a tiny history holder; no model code. The system prompt always comes
first and unchanged, so an engine can keep its KV state cached across turns and sessions
(session-specific instructions go *after* it, in ``extra_system``). History is trimmed by
whole turns, oldest first, so the model never sees an answer without its question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from xiaozhi_local.engines.base import ChatMessage
from xiaozhi_local.errors import LlmError

__all__ = ["MESSAGE_OVERHEAD_TOKENS", "Dialogue", "build_messages", "message_tokens"]

MESSAGE_OVERHEAD_TOKENS: Final = 4
"""Tokens a chat template adds around each message (ChatML: ``<|im_start|>role\\n … <|im_end|>\\n``)."""

EXTRA_SYSTEM_SEPARATOR: Final = "\n\n"


def message_tokens(message: ChatMessage, count_tokens: Callable[[str], int]) -> int:
    """What ``message`` costs in the prompt: its text plus the template's per-message overhead."""
    return count_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS


def _turns(history: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """Split ``history`` into indivisible units: a user message with the assistant replies after it.

    A leading assistant message (a greeting) is a unit of its own. A user message nobody
    answered (the reply failed) is dropped: it is not a pair, and two user messages in a row
    break templates that insist on alternating roles. System messages in history are ignored.
    """
    units: list[list[ChatMessage]] = []
    for message in history:
        if message.role == "system":
            continue
        if message.role == "user" or not units:
            units.append([message])
        elif message.role == "assistant":
            units[-1].append(message)
    return [u for u in units if not (u[0].role == "user" and len(u) == 1)]


def build_messages(system: str, history: Sequence[ChatMessage], user: str, *,
                   count_tokens: Callable[[str], int], history_budget: int, context_size: int,
                   reply_tokens: int, extra_system: str = "") -> list[ChatMessage]:
    """The messages for one turn: system (+ ``extra_system``), the newest history that fits, ``user``.

    History is taken newest first, whole turns at a time, while it fits both in
    ``history_budget`` tokens and in what ``context_size`` leaves after the system prompt, the
    user message and ``reply_tokens``; the first turn that does not fit ends the search (so
    the kept history is contiguous). Costs are counted with :func:`message_tokens`.

    Raises :class:`LlmError` if the system prompt and the user message alone leave no room
    for the reply.
    """
    system_text = system + (EXTRA_SYSTEM_SEPARATOR + extra_system if extra_system else "")
    head = [ChatMessage("system", system_text)] if system_text else []
    tail = ChatMessage("user", user)
    fixed = sum(message_tokens(m, count_tokens) for m in [*head, tail])
    room = context_size - reply_tokens - fixed
    if room < 0:
        raise LlmError(f"the system prompt and the user's message need {fixed} tokens, but the context of "
                       f"{context_size} tokens leaves only {context_size - reply_tokens} after reserving "
                       f"{reply_tokens} for the reply; shorten [pipeline] system_prompt, lower "
                       "max_reply_tokens or raise llm_context")
    budget = min(history_budget, room)
    kept: list[list[ChatMessage]] = []
    used = 0
    for unit in reversed(_turns(history)):
        cost = sum(message_tokens(m, count_tokens) for m in unit)
        if used + cost > budget:
            break
        kept.append(unit)
        used += cost
    return [*head, *(m for unit in reversed(kept) for m in unit), tail]


class Dialogue:
    """One session's running history, bounded to the last ``max_turns`` user turns.

    ``add_user`` then ``add_assistant`` once the reply is known. A user message that got no
    reply is replaced by the next one; consecutive assistant texts (a greeting, then a reply
    continued after a tool call) are joined into one message.
    """

    def __init__(self, max_turns: int = 16) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.max_turns = max_turns
        self._messages: list[ChatMessage] = []

    @property
    def messages(self) -> tuple[ChatMessage, ...]:
        return tuple(self._messages)

    def add_user(self, text: str) -> None:
        if self._messages and self._messages[-1].role == "user":
            self._messages.pop()
        self._messages.append(ChatMessage("user", text))
        self._trim()

    def add_assistant(self, text: str) -> None:
        if not text:
            return
        if self._messages and self._messages[-1].role == "assistant":
            previous = self._messages.pop()
            text = f"{previous.content} {text}"
        self._messages.append(ChatMessage("assistant", text))
        self._trim()

    def clear(self) -> None:
        self._messages.clear()

    def _trim(self) -> None:
        users = [i for i, m in enumerate(self._messages) if m.role == "user"]
        if len(users) > self.max_turns:
            del self._messages[:users[-self.max_turns]]
