"""Build real wheels and a simple-API package index (PEP 503 / PEP 691) for tests."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name


def make_wheel(directory: Path, name: str, version: str, members: dict[str, bytes]) -> Path:
    """Write a valid pure wheel (METADATA, WHEEL, RECORD) carrying ``members``."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = dict(members)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    target = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return target


def index_pages(wheels: list[Path], *, json_api: bool = False, bad_hash: bool = False) -> dict[str, tuple[bytes, str]]:
    """URL path -> (body, content type) for a simple index rooted at /simple/ and /files/."""
    pages: dict[str, tuple[bytes, str]] = {}
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        project = canonicalize_name(wheel.name.split("-")[0])
        projects.setdefault(project, []).append(wheel)
        pages[f"/files/{wheel.name}"] = (wheel.read_bytes(), "application/octet-stream")
    for project, files in projects.items():
        entries = []
        for wheel in files:
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if bad_hash:
                digest = "0" * 64
            entries.append((wheel.name, f"../../files/{wheel.name}", digest))
        if json_api:
            body = json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": [
                {"filename": f, "url": u, "hashes": {"sha256": d}} for f, u, d in entries]}).encode()
            pages[f"/simple/{project}/"] = (body, "application/vnd.pypi.simple.v1+json")
        else:
            links = "".join(f'<a href="{u}#sha256={d}">{f}</a><br/>' for f, u, d in entries)
            pages[f"/simple/{project}/"] = (f"<!DOCTYPE html><html><body>{links}</body></html>".encode(), "text/html")
    return pages


def write_file_index(root: Path, wheels: list[Path]) -> str:
    """The same index as files on disk; returns its file:// URL (like pip's local indexes)."""
    for path, (body, _ctype) in index_pages(wheels).items():
        target = root / path.lstrip("/")
        if path.endswith("/"):
            target = target / "index.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    return (root / "simple").as_uri()
