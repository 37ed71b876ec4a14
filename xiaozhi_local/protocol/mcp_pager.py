"""Accumulate a device's paginated ``tools/list`` results (protocol.md §4.3, §8 item 9).

Feed each ``result`` object to :meth:`ToolsListPager.feed`; it returns the cursor for the
next request, or None when the listing is complete (``nextCursor`` absent or empty) or had
to stop. Stops are never exceptions: :attr:`ToolsListPager.stop_reason` says why (a repeated
cursor, more than ``max_pages`` pages, too many tools, a malformed result). Malformed tool
entries and duplicate names are skipped and recorded in :attr:`ToolsListPager.skipped`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["MAX_TOOL_PAGES", "Tool", "ToolsListPager"]

MAX_TOOL_PAGES: Final = 50
"""Hard cap on pages per listing: guards against a device that never stops paginating."""


@dataclass(frozen=True, slots=True)
class Tool:
    """One device tool as listed (§4.3). ``user_only`` ⇔ ``annotations.audience`` is
    ``["user"]``-like: contains "user" and not "assistant"."""

    name: str
    description: str
    input_schema: dict[str, Any] = field(default_factory=dict)
    user_only: bool = False

    @classmethod
    def from_entry(cls, entry: object) -> Tool | str:
        """Parse one ``tools`` entry; a ``str`` return value is why it was rejected."""
        if not isinstance(entry, Mapping):
            return "tool entry is not an object"
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            return "tool entry has no name"
        description = entry.get("description", "")
        if not isinstance(description, str):
            return f"tool {name[:60]!r}: description is not a string"
        schema = entry.get("inputSchema", {"type": "object", "properties": {}})
        if not isinstance(schema, dict):
            return f"tool {name[:60]!r}: inputSchema is not an object"
        annotations = entry.get("annotations")
        audience = annotations.get("audience") if isinstance(annotations, Mapping) else None
        user_only = isinstance(audience, list) and "user" in audience and "assistant" not in audience
        return cls(name=name, description=description, input_schema=schema, user_only=user_only)


class ToolsListPager:
    """State of one paginated listing. Create a new pager for each listing."""

    def __init__(self, *, max_pages: int = MAX_TOOL_PAGES, max_tools: int | None = None):
        if max_pages < 1:
            raise ValueError("max_pages must be >= 1")
        self.max_pages = max_pages
        self.max_tools = max_tools
        self.tools: list[Tool] = []
        self.skipped: list[str] = []
        self.pages = 0
        self.done = False
        self.stop_reason: str | None = None
        self._cursors: set[str] = set()
        self._names: set[str] = set()

    @property
    def complete(self) -> bool:
        """True when the device said there is nothing more (not a forced stop)."""
        return self.done and self.stop_reason is None

    def _stop(self, reason: str | None) -> None:
        self.done = True
        self.stop_reason = reason

    def feed(self, result: object) -> str | None:
        """Add one page; return the next cursor to request, or None when done."""
        if self.done:
            return None
        self.pages += 1
        if not isinstance(result, Mapping):
            self._stop("tools/list result is not an object")
            return None
        entries = result.get("tools")
        if not isinstance(entries, list):
            self._stop("tools/list result has no tools list")
            return None
        for entry in entries:
            tool = Tool.from_entry(entry)
            if isinstance(tool, str):
                self.skipped.append(tool)
                continue
            if tool.name in self._names:
                self.skipped.append(f"duplicate tool {tool.name[:60]!r}")
                continue
            if self.max_tools is not None and len(self.tools) >= self.max_tools:
                self._stop(f"more than {self.max_tools} tools; the rest are ignored")
                return None
            self._names.add(tool.name)
            self.tools.append(tool)
        cursor = result.get("nextCursor")
        if cursor is None or cursor == "":
            self._stop(None)
            return None
        if not isinstance(cursor, str):
            self._stop("nextCursor is not a string")
            return None
        if cursor in self._cursors:
            self._stop(f"cursor {cursor[:60]!r} repeated; stopping to avoid a loop")
            return None
        if self.pages >= self.max_pages:
            self._stop(f"more than {self.max_pages} pages; stopping")
            return None
        self._cursors.add(cursor)
        return cursor
