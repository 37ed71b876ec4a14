"""The model catalog (``models.toml``): typed entries, loading, selection.

The built-in catalog ships inside the package (``xiaozhi_local/models.toml`` in the wheel,
the repository's top-level ``models.toml`` in a checkout). A user catalog can add entries
or replace built-in ones by id.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Iterable
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError, UnknownModelError


class Role(StrEnum):
    VAD = "vad"
    ASR = "asr"
    TTS = "tts"
    LLM = "llm"
    SPEAKER = "speaker"
    EMBEDDING = "embedding"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Part(_Frozen):
    """One piece of a file: a wheel member (pypi) or a URL, optionally an archive member."""

    package: str | None = None
    url: str | None = None
    member: str | None = None

    @field_validator("package")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+", value):
            raise ValueError(f"package must be pinned as name==version, got {value!r}")
        return value

    @field_validator("url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not is_allowed_url(value):
            raise ValueError(f"url must be https:// (plain http only on loopback), got {value!r}")
        return value

    @property
    def requirement(self) -> tuple[str, str]:
        name, _, version = (self.package or "").partition("==")
        return name, version

    def describe(self) -> str:
        where = self.package or self.url or "?"
        return f"{where}:{self.member}" if self.member else where


class Source(_Frozen):
    kind: Literal["pypi", "url"]
    files: dict[str, tuple[Part, ...]]

    @model_validator(mode="after")
    def _parts_fit_kind(self) -> Source:
        for name, parts in self.files.items():
            if not parts:
                raise ValueError(f"file {name!r} has no parts")
            for part in parts:
                if self.kind == "pypi" and not (part.package and part.member and not part.url):
                    raise ValueError(f"pypi part of {name!r} needs package and member (and no url)")
                if self.kind == "url" and not (part.url and not part.package):
                    raise ValueError(f"url part of {name!r} needs url (and no package)")
        return self

    def label(self) -> str:
        """Short human name, e.g. ``pypi silero-vad==6.2.3`` or ``url https://host/…``."""
        first = next(iter(self.files.values()))[0]
        where = first.package if self.kind == "pypi" else first.url
        packages = {p.package for parts in self.files.values() for p in parts if p.package}
        more = f" (+{len(packages) - 1} more)" if len(packages) > 1 else ""
        return f"{self.kind} {where}{more}"


class ModelFile(_Frozen):
    name: str
    sha256: str
    size: int = Field(gt=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value or "\\" in value or value.startswith("."):
            raise ValueError(f"file name must be a plain name, got {value!r}")
        return value


class ModelEntry(_Frozen):
    id: str
    role: Role
    engine: str
    description: str = ""
    languages: tuple[str, ...] = ()
    license: str
    default: bool = False
    test: bool = False
    notes: str = ""
    files: tuple[ModelFile, ...]
    sources: tuple[Source, ...]

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value):
            raise ValueError(f"id must be lowercase letters, digits, '.', '_' or '-', got {value!r}")
        return value

    @model_validator(mode="after")
    def _sources_cover_files(self) -> ModelEntry:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("duplicate file names")
        if not self.sources:
            raise ValueError("a model needs at least one source")
        for index, source in enumerate(self.sources, start=1):
            if set(source.files) != set(names):
                raise ValueError(f"source {index} must provide exactly the files {sorted(names)}")
        return self

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def sets(self) -> list[str]:
        return [name for name, flag in (("default", self.default), ("test", self.test)) if flag]


class Catalog:
    """All known models, in catalog order."""

    def __init__(self, entries: Iterable[ModelEntry]):
        self.models: dict[str, ModelEntry] = {}
        for entry in entries:
            self.models[entry.id] = entry

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            close = difflib.get_close_matches(model_id, list(self.models), n=3, cutoff=0.5)
            close += [m for m in self.models if model_id and model_id in m and m not in close]
            raise UnknownModelError(model_id, close[:3]) from None

    def select(self, ids: Iterable[str] = (), *, default: bool = False, test: bool = False,
               everything: bool = False) -> list[ModelEntry]:
        """Entries named by id and/or by set, in catalog order, without repeats."""
        wanted = {self.get(i).id for i in ids}
        return [
            e for e in self.models.values()
            if everything or e.id in wanted or (default and e.default) or (test and e.test)
        ]

    def merged(self, other: Catalog) -> Catalog:
        combined = dict(self.models)
        combined.update(other.models)
        return Catalog(combined.values())

    @classmethod
    def from_toml(cls, text: str, source: str) -> Catalog:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"catalog is not valid TOML: {exc}", source=source) from None
        extra = set(data) - {"model"}
        if extra:
            raise ConfigError(f"unknown top-level keys {sorted(extra)} (expected [[model]] tables)", source=source)
        entries = []
        for index, raw in enumerate(data.get("model", []), start=1):
            try:
                entries.append(ModelEntry.model_validate(raw))
            except ValidationError as exc:
                label = raw.get("id", f"#{index}") if isinstance(raw, dict) else f"#{index}"
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ConfigError(f"model {label}: {where}: {first['msg']}", source=source) from None
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the catalog: {exc}", source=str(path)) from None
        return cls.from_toml(text, str(path))


def builtin_catalog_text() -> tuple[str, str]:
    """The shipped catalog: inside the installed package, else the checkout's top level."""
    packaged = resources.files("xiaozhi_local").joinpath("models.toml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8"), str(packaged)
    checkout = Path(__file__).resolve().parents[2] / "models.toml"
    return checkout.read_text(encoding="utf-8"), str(checkout)


def load_catalog(*extra: Path) -> Catalog:
    """The built-in catalog with any existing extra catalog files merged over it, in order."""
    text, source = builtin_catalog_text()
    catalog = Catalog.from_toml(text, source)
    for path in extra:
        if path.is_file():
            catalog = catalog.merged(Catalog.load(path))
    return catalog


def is_allowed_url(url: str) -> bool:
    """https anywhere; plain http only to a loopback host (a local mirror or a test server)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme == "http" and parts.hostname:
        if parts.hostname == "localhost":
            return True
        try:
            return ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            return False
    return False
