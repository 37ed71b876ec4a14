"""The local model store.

Layout under the models directory::

    <id>/<file>            installed files, each verified against the catalog's sha256
    <id>/.verified.json    what was verified: size, mtime and sha256 per file
    .partial/              resumable downloads and files being assembled (never read as models)
    .lock                  held while a pull writes

A file appears under ``<id>/`` only by an atomic rename after its sha256 matched, so the
store is consistent whatever happens to a pull.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalog import ModelEntry, ModelFile

MANIFEST = ".verified.json"


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


@dataclass(frozen=True)
class FileProblem:
    model_id: str
    file: str
    kind: str  # "missing" | "size" | "sha256"
    detail: str

    def __str__(self) -> str:
        return f"{self.model_id}/{self.file}: {self.detail}"


class ModelStore:
    def __init__(self, root: Path):
        self.root = root

    @property
    def partial_dir(self) -> Path:
        return self.root / ".partial"

    def model_dir(self, model_id: str) -> Path:
        return self.root / model_id

    def path(self, entry: ModelEntry, name: str | None = None) -> Path:
        """A model's directory, or one of its files."""
        base = self.model_dir(entry.id)
        return base / name if name else base

    # ---- what is there -----------------------------------------------------------------
    def present_files(self, entry: ModelEntry) -> list[ModelFile]:
        """Files that exist with the catalog size (cheap; no hashing)."""
        out = []
        for mf in entry.files:
            p = self.path(entry, mf.name)
            if p.is_file() and p.stat().st_size == mf.size:
                out.append(mf)
        return out

    def is_installed(self, entry: ModelEntry) -> bool:
        return len(self.present_files(entry)) == len(entry.files)

    def is_verified(self, entry: ModelEntry, mf: ModelFile) -> bool:
        """Verified earlier and unchanged since (same size and mtime), so no re-hash needed."""
        p = self.path(entry, mf.name)
        record = self._manifest(entry).get(mf.name)
        if not record or not p.is_file():
            return False
        st = p.stat()
        return (record.get("sha256") == mf.sha256 and record.get("size") == st.st_size
                and record.get("mtime_ns") == st.st_mtime_ns)

    def verify(self, entry: ModelEntry, on_bytes: Callable[[int], None] | None = None) -> list[FileProblem]:
        """Re-hash every file; record the good ones, report the rest."""
        problems = []
        for mf in entry.files:
            p = self.path(entry, mf.name)
            if not p.is_file():
                problems.append(FileProblem(entry.id, mf.name, "missing", "missing"))
                continue
            size = p.stat().st_size
            if size != mf.size:
                problems.append(FileProblem(entry.id, mf.name, "size",
                                            f"size {size} bytes, expected {mf.size}"))
                if on_bytes:
                    on_bytes(mf.size)
                continue
            digest = sha256_file(p, on_bytes)
            if digest != mf.sha256:
                problems.append(FileProblem(entry.id, mf.name, "sha256",
                                            f"sha256 {digest[:16]}…, expected {mf.sha256[:16]}… (corrupt)"))
                self._forget(entry, mf.name)
            else:
                self._record(entry, mf)
        return problems

    # ---- changing it -------------------------------------------------------------------
    def install(self, entry: ModelEntry, mf: ModelFile, verified_tmp: Path) -> Path:
        """Move a file whose sha256 was just checked into place, atomically."""
        dest = self.path(entry, mf.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(verified_tmp, dest)
        _fsync_dir(dest.parent)
        self._record(entry, mf)
        return dest

    def remove(self, entry: ModelEntry) -> bool:
        target = self.model_dir(entry.id)
        existed = target.exists()
        if existed:
            shutil.rmtree(target)
        partial = self.partial_dir / entry.id
        if partial.exists():
            shutil.rmtree(partial)
        return existed

    @contextlib.contextmanager
    def lock(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Exclusive lock so two pulls never write the same store at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- the manifest ------------------------------------------------------------------
    def _manifest(self, entry: ModelEntry) -> dict[str, dict[str, object]]:
        try:
            data = json.loads((self.model_dir(entry.id) / MANIFEST).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_manifest(self, entry: ModelEntry, data: dict[str, dict[str, object]]) -> None:
        path = self.model_dir(entry.id) / MANIFEST
        tmp = path.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def _record(self, entry: ModelEntry, mf: ModelFile) -> None:
        st = self.path(entry, mf.name).stat()
        data = self._manifest(entry)
        data[mf.name] = {"sha256": mf.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        self._write_manifest(entry, data)

    def _forget(self, entry: ModelEntry, name: str) -> None:
        data = self._manifest(entry)
        if data.pop(name, None) is not None:
            self._write_manifest(entry, data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
