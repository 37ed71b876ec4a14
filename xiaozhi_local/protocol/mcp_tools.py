"""Tool declarations of the device's MCP server (protocol.md §4.3, §4.4).

A :class:`DeviceTool` has typed :class:`ToolProperty` arguments (boolean / integer / string,
optional ``default``, integer ``minimum`` / ``maximum``; no default → required) and a plain
callable handler. :func:`stringify_result` turns a handler's return value into the text the
firmware puts in ``content[0].text``: booleans → ``"true"``/``"false"``, integers → decimal,
objects/arrays → compact JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "DeviceTool",
    "PropertyType",
    "ToolHandler",
    "ToolProperty",
    "ToolResult",
    "ToolValue",
    "c_valueint",
    "compact_json",
    "is_json_number",
    "stringify_result",
]

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1

ToolValue = bool | int | str
ToolResult = bool | int | str | dict[str, Any] | list[Any]
ToolHandler = Callable[[Mapping[str, ToolValue]], ToolResult]


def compact_json(obj: object) -> str:
    """Compact JSON, UTF-8 kept as-is (like cJSON_PrintUnformatted)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def c_valueint(number: float) -> int:
    """cJSON's ``valueint`` of a JSON number: truncation toward zero, int32 saturation."""
    if isinstance(number, float):
        if math.isnan(number):
            return 0
        if math.isinf(number):
            return _INT32_MAX if number > 0 else _INT32_MIN
    if number >= _INT32_MAX:
        return _INT32_MAX
    if number <= _INT32_MIN:
        return _INT32_MIN
    return int(number)


def is_json_number(value: object) -> bool:
    """True for a JSON number (bool excluded, as cJSON does)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class PropertyType(StrEnum):
    """The three argument types the firmware supports (§4.3)."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    STRING = "string"


_PY_TYPES: Final = {
    PropertyType.BOOLEAN: bool,
    PropertyType.INTEGER: int,
    PropertyType.STRING: str,
}


@dataclass(frozen=True, slots=True)
class ToolProperty:
    """One tool argument. No ``default`` → required. Ranges apply to integers only."""

    name: str
    type: PropertyType
    default: ToolValue | None = None
    minimum: int | None = None
    maximum: int | None = None

    def __post_init__(self) -> None:
        if (self.minimum is not None or self.maximum is not None) and (self.type is not PropertyType.INTEGER):
            raise ValueError(f"{self.name}: range limits only apply to integer properties")
        if self.default is not None:
            want = _PY_TYPES[self.type]
            is_bool = isinstance(self.default, bool)
            if not isinstance(self.default, want) or (want is int and is_bool):
                raise ValueError(f"{self.name}: default does not match type {self.type}")
            if self.type is PropertyType.INTEGER and self._range_error(int(self.default)):
                raise ValueError(f"{self.name}: default must be within the range")

    @property
    def has_default(self) -> bool:
        """True when the argument is optional."""
        return self.default is not None

    def to_schema(self) -> dict[str, Any]:
        """JSON-schema fragment, keys in firmware order (type, default, minimum, maximum)."""
        schema: dict[str, Any] = {"type": str(self.type)}
        if self.default is not None:
            schema["default"] = self.default
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema

    def _range_error(self, value: int) -> str | None:
        if self.minimum is not None and value < self.minimum:
            return f"Property '{self.name}': value {value} is below minimum {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"Property '{self.name}': value {value} exceeds maximum {self.maximum}"
        return None

    def accept(self, value: object) -> ToolValue | None:
        """The typed value if ``value`` has this property's JSON type, else None.

        Raises ValueError (the firmware's message) for an integer out of range.
        """
        if self.type is PropertyType.BOOLEAN:
            return value if isinstance(value, bool) else None
        if self.type is PropertyType.STRING:
            return value if isinstance(value, str) else None
        if not is_json_number(value):
            return None
        number = c_valueint(value)  # type: ignore[arg-type]
        problem = self._range_error(number)
        if problem is not None:
            raise ValueError(problem)
        return number


@dataclass(frozen=True, slots=True)
class DeviceTool:
    """A tool registered on the (simulated) device (§4.3, §4.5)."""

    name: str
    description: str
    handler: ToolHandler
    properties: tuple[ToolProperty, ...] = ()
    user_only: bool = False

    @property
    def required(self) -> list[str]:
        """Names of the properties without a default, in declaration order."""
        return [p.name for p in self.properties if not p.has_default]

    def to_dict(self) -> dict[str, Any]:
        """The ``tools/list`` entry exactly as the firmware shapes it."""
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: p.to_schema() for p in self.properties},
        }
        if self.required:
            schema["required"] = self.required
        entry: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": schema,
        }
        if self.user_only:
            entry["annotations"] = {"audience": ["user"]}
        return entry


def stringify_result(value: object) -> str:
    """The ``content[0].text`` of a tool result (§4.4)."""
    # Order matters: bool is an int subclass.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return compact_json(value)
    raise TypeError(f"tool returned unsupported type {type(value).__name__}")
