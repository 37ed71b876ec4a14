"""The system-prompt text that tells the LLM who is speaking and what it remembers about them. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = ["render_context"]

_THE_USER: Final = re.compile(r"^the user('s)?\b", re.IGNORECASE)


def _about(fact: str, name: str) -> str:
    """"The user's dog is called Max." → "Sam's dog is called Max."."""
    return _THE_USER.sub(lambda m: name + (m.group(1) or ""), fact, count=1)


def render_context(speaker: str | None, facts: Sequence[str]) -> str:
    """Known speaker: their name and their facts. Unknown: the device's facts, if any; else nothing
    (an empty extra keeps the system prompt, and the LLM's cached state of it, unchanged)."""
    if speaker:
        text = f"The person speaking is {speaker} (recognised by their voice); you may address them by name."
        if facts:
            text += f"\nWhat you remember about {speaker}:\n" + "\n".join(f"- {_about(f, speaker)}" for f in facts)
        return text
    if not facts:
        return ""
    return ("You do not know who is speaking. What you remember from earlier conversations on this device:\n"
            + "\n".join(f"- {f}" for f in facts))
