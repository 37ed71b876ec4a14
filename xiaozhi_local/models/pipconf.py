"""pip's index configuration, read the way pip reads it, so model pulls use the same mirror.

Files, later overriding earlier (pip's order): the global files (``$XDG_CONFIG_DIRS``'s
``pip/pip.conf``, ``/etc/pip.conf``), the user files (``~/.pip/pip.conf``, then
``$XDG_CONFIG_HOME/pip/pip.conf``; skipped when ``PIP_CONFIG_FILE`` names an existing file),
the virtualenv's ``pip.conf``, then ``PIP_CONFIG_FILE``. In each file ``[global]`` is read,
then ``[download]``. ``PIP_*`` environment variables beat every file.
``PIP_CONFIG_FILE=/dev/null`` (``os.devnull``) disables all files, as in pip.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PYPI_SIMPLE = "https://pypi.org/simple"
_SECTIONS = ("global", "download")
_KEYS = ("index-url", "extra-index-url", "find-links", "no-index", "proxy", "cert",
         "trusted-host", "timeout", "retries")


@dataclass(frozen=True)
class IndexConfig:
    """Where and how to fetch wheels, as pip would for ``pip download``."""

    index_url: str = PYPI_SIMPLE
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    proxy: str | None = None
    cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    timeout: float = 60.0
    retries: int = 3
    files_read: tuple[str, ...] = field(default=(), compare=False)

    @property
    def indexes(self) -> list[str]:
        """Index URLs in the order they are searched (none when ``no-index``)."""
        return [] if self.no_index else [self.index_url, *self.extra_index_urls]


def config_files(env: Mapping[str, str]) -> list[Path]:
    """Candidate pip config files, lowest priority first."""
    env_file = env.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    home = Path(env.get("HOME") or Path.home())
    files: list[Path] = []
    xdg_dirs = env.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files += [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(os.pathsep) if d]
    files.append(Path("/etc/pip.conf"))
    if not (env_file and Path(env_file).exists()):
        files.append(home / ".pip" / "pip.conf")
        files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf")
    venv = env.get("VIRTUAL_ENV") or (sys.prefix if sys.prefix != sys.base_prefix else "")
    if venv:
        files.append(Path(venv) / "pip.conf")
    if env_file:
        files.append(Path(env_file))
    return files


def _split(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split() if v)


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def load_index_config(env: Mapping[str, str] | None = None) -> IndexConfig:
    env = os.environ if env is None else env
    values: dict[str, str] = {}
    read: list[str] = []
    for path in config_files(env):
        parser = configparser.RawConfigParser()
        try:
            if not parser.read(path, encoding="utf-8"):
                continue
        except (configparser.Error, UnicodeDecodeError):
            continue  # pip would error out too; we just ignore an unreadable file
        read.append(str(path))
        for section in _SECTIONS:
            if parser.has_section(section):
                for key, value in parser.items(section):
                    key = key.replace("_", "-")
                    if key in _KEYS:
                        values[key] = value
    for key in _KEYS:
        env_name = "PIP_" + key.upper().replace("-", "_")
        if env.get(env_name) is not None:
            values[key] = env[env_name]
    proxy = values.get("proxy") or None
    try:
        timeout = float(values.get("timeout", 60))
    except ValueError:
        timeout = 60.0
    try:
        retries = int(values.get("retries", 3))
    except ValueError:
        retries = 3
    return IndexConfig(
        index_url=(values.get("index-url") or PYPI_SIMPLE).rstrip("/"),
        extra_index_urls=tuple(u.rstrip("/") for u in _split(values.get("extra-index-url", ""))),
        find_links=_split(values.get("find-links", "")),
        no_index=_truthy(values.get("no-index", "")),
        proxy=proxy,
        cert=values.get("cert") or None,
        trusted_hosts=_split(values.get("trusted-host", "")),
        timeout=timeout,
        retries=max(0, retries),
        files_read=tuple(read),
    )
