"""Fetching bytes: HTTP(S) with Range resume and retries, and ``file://`` URLs.

A download goes to a partial file that is only ever appended to, so an interruption
(Ctrl-C, a dropped connection, a killed process) leaves something the next attempt
resumes with an HTTP Range request. Verification and the move into the store are the
caller's job (see ``pull.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpx

from ..errors import FetchError
from .pipconf import IndexConfig

CHUNK = 1 << 16
USER_AGENT = "xiaozhi-local (model pull)"


class ProgressSink(Protocol):
    """Where transfer progress goes (a Rich display in the CLI, nothing in tests)."""

    def begin(self, key: str, label: str, total: int | None, completed: int = 0) -> None: ...
    def advance(self, key: str, amount: int) -> None: ...
    def end(self, key: str) -> None: ...
    def note(self, message: str) -> None: ...


class NullProgress:
    def begin(self, key: str, label: str, total: int | None, completed: int = 0) -> None:
        pass

    def advance(self, key: str, amount: int) -> None:
        pass

    def end(self, key: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class TextResponse:
    text: str
    content_type: str
    url: str


class NotFound(FetchError):
    """The URL does not exist (HTTP 404/410, or no such file)."""


_RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def short_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class Transport:
    """HTTP and file access configured like pip (proxy, CA bundle, trusted hosts, timeout)."""

    def __init__(self, config: IndexConfig | None = None):
        self.config = config or IndexConfig()
        common = {
            "timeout": httpx.Timeout(self.config.timeout, connect=min(self.config.timeout, 15.0)),
            "follow_redirects": True,
            "headers": {"User-Agent": USER_AGENT},
            "trust_env": True,  # HTTPS_PROXY / NO_PROXY / SSL_CERT_FILE, as pip honours them
        }
        if self.config.proxy:
            common["proxy"] = self.config.proxy
        verify: str | bool = self.config.cert or True
        self._client = httpx.Client(verify=verify, **common)  # type: ignore[arg-type]
        self._trusted = httpx.Client(verify=False, **common)  # type: ignore[arg-type]

    def close(self) -> None:
        self._client.close()
        self._trusted.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client_for(self, url: str) -> httpx.Client:
        return self._trusted if _host(url) in self.config.trusted_hosts else self._client

    # ---- small text documents (index pages) -------------------------------------------
    def get_text(self, url: str, accept: str = "*/*") -> TextResponse:
        if url.startswith("file:"):
            path = file_path(url)
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                raise NotFound(f"{url}: no such file")
            return TextResponse(path.read_text(encoding="utf-8", errors="replace"), "text/html", url)
        try:
            response = self._client_for(url).get(url, headers={"Accept": accept})
        except httpx.HTTPError as exc:
            raise FetchError(f"{short_url(url)}: {describe_http_error(exc)}") from None
        if response.status_code in (404, 410):
            raise NotFound(f"{short_url(url)}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise FetchError(f"{short_url(url)}: HTTP {response.status_code}")
        return TextResponse(response.text, response.headers.get("content-type", ""), str(response.url))

    # ---- large files -----------------------------------------------------------------
    def download(self, url: str, dest: Path, *, expected_size: int | None = None,
                 progress: ProgressSink | None = None, label: str = "") -> None:
        """Make ``dest`` hold the whole resource, resuming whatever ``dest`` already has."""
        progress = progress or NullProgress()
        label = label or Path(unquote(urlsplit(url).path)).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if url.startswith("file:"):
            self._copy_file(url, dest, progress, label)
            return
        attempts = self.config.retries + 1
        last_error = ""
        for attempt in range(attempts):
            try:
                self._http_download(url, dest, expected_size, progress, label)
                return
            except _Retryable as exc:
                last_error = str(exc)
                if attempt + 1 < attempts:
                    have = dest.stat().st_size if dest.exists() else 0
                    progress.note(f"{label}: {last_error}; resuming at byte {have} "
                                  f"(attempt {attempt + 2} of {attempts})")
        raise FetchError(f"{short_url(url)}: {last_error} (gave up after {attempts} attempts; "
                         "the partial file is kept and the next pull resumes it)")

    def _http_download(self, url: str, dest: Path, expected_size: int | None,
                       progress: ProgressSink, label: str) -> None:
        have = dest.stat().st_size if dest.exists() else 0
        if expected_size is not None and have > expected_size:
            dest.unlink()
            have = 0
        if expected_size is not None and have == expected_size:
            return
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        key = str(dest)
        try:
            with self._client_for(url).stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 416 and have:
                    dest.unlink()  # our partial is not a prefix of what the server has
                    raise _Retryable("the server refused to resume; starting over")
                if status in (404, 410):
                    raise NotFound(f"{short_url(url)}: HTTP {status}")
                if status in _RETRYABLE:
                    raise _Retryable(f"HTTP {status}")
                if status not in (200, 206):
                    raise FetchError(f"{short_url(url)}: HTTP {status}")
                if status == 206 and not _range_starts_at(response, have):
                    dest.unlink()
                    raise _Retryable("the server answered the wrong range; starting over")
                mode = "ab" if status == 206 else "wb"
                start = have if status == 206 else 0
                length = response.headers.get("content-length")
                total = start + int(length) if length and length.isdigit() else expected_size
                progress.begin(key, label, total, start)
                received = start
                with open(dest, mode) as out:
                    try:
                        for chunk in response.iter_bytes(CHUNK):
                            out.write(chunk)
                            received += len(chunk)
                            progress.advance(key, len(chunk))
                    finally:
                        out.flush()
                        os.fsync(out.fileno())
                if total is not None and received < total:
                    raise _Retryable(f"connection closed after {received} of {total} bytes")
        except httpx.HTTPError as exc:
            raise _Retryable(describe_http_error(exc)) from None
        finally:
            progress.end(key)

    def _copy_file(self, url: str, dest: Path, progress: ProgressSink, label: str) -> None:
        src = file_path(url)
        if not src.is_file():
            raise NotFound(f"{url}: no such file")
        total = src.stat().st_size
        have = dest.stat().st_size if dest.exists() else 0
        if have > total:
            dest.unlink()
            have = 0
        key = str(dest)
        progress.begin(key, label, total, have)
        try:
            with open(src, "rb") as inp, open(dest, "ab") as out:
                inp.seek(have)
                while chunk := inp.read(CHUNK * 16):
                    out.write(chunk)
                    progress.advance(key, len(chunk))
        except OSError as exc:
            raise FetchError(f"{url}: {exc.strerror or exc}") from None
        finally:
            progress.end(key)


class _Retryable(Exception):
    """A transient failure: try again, resuming the partial file."""


def _range_starts_at(response: httpx.Response, offset: int) -> bool:
    content_range = response.headers.get("content-range", "")
    try:
        start = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return start == offset


def describe_http_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "the connection dropped"
    return f"{type(exc).__name__}: {exc}"


def file_path(url: str) -> Path:
    return Path(url2pathname(urlsplit(url).path))

