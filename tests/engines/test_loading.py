"""Catalog entry + model store → engine, and what the user is told when that fails."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.engines import real_models
from xiaozhi_local.engines.asr import WhisperAsr
from xiaozhi_local.engines.loading import load_asr, load_tts, load_vad
from xiaozhi_local.engines.tts import PiperTts
from xiaozhi_local.engines.vad import SileroVad
from xiaozhi_local.errors import EngineError, ModelMissingError
from xiaozhi_local.models.catalog import Catalog, ModelEntry, load_catalog
from xiaozhi_local.models.store import ModelStore

pytestmark = pytest.mark.models

LOADERS: dict[str, Callable[[ModelStore, ModelEntry], object]] = {
    "silero-vad": load_vad,
    "whisper-base": load_asr,
    "piper-en-us-joe-medium": load_tts,
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def real_store() -> ModelStore:
    return ModelStore(real_models())


def _store_with_links(tmp_path: Path, entry: ModelEntry, copied: str) -> ModelStore:
    """A store where every file of `entry` links to the real one, except `copied`, a real copy."""
    store = ModelStore(tmp_path / "models")
    target = store.model_dir(entry.id)
    target.mkdir(parents=True)
    for mf in entry.files:
        source = real_models() / entry.id / mf.name
        if mf.name == copied:
            shutil.copyfile(source, target / mf.name)
        else:
            (target / mf.name).symlink_to(source)
    return store


def _expect_pull_hint(exc: ModelMissingError, model_id: str) -> None:
    assert exc.model_id == model_id
    assert repr(model_id) in str(exc)
    assert f"`xiaozhi models pull {model_id}`" in str(exc)


def test_loads_vad_and_tts_from_the_store(catalog: Catalog, real_store: ModelStore) -> None:
    vad = load_vad(real_store, catalog.get("silero-vad"))
    assert isinstance(vad, SileroVad)
    assert len(vad.stream().accept(np.zeros(1024, dtype=np.int16))) == 2
    tts = load_tts(real_store, catalog.get("piper-en-us-joe-medium"))
    assert isinstance(tts, PiperTts)
    assert tts.sample_rate == 22050


def test_loads_asr_from_the_store(catalog: Catalog, real_store: ModelStore) -> None:
    asr = load_asr(real_store, catalog.get("whisper-base"), threads=1, language="en")
    assert isinstance(asr, WhisperAsr)
    assert asr.language == "en"
    assert asr.threads == 1


@pytest.mark.parametrize("model_id", list(LOADERS))
def test_not_installed(catalog: Catalog, tmp_path: Path, model_id: str) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelMissingError, match="is not installed") as caught:
        LOADERS[model_id](store, catalog.get(model_id))
    _expect_pull_hint(caught.value, model_id)


def test_truncated_file_counts_as_not_installed(catalog: Catalog, tmp_path: Path) -> None:
    entry = catalog.get("silero-vad")
    store = _store_with_links(tmp_path, entry, copied="silero_vad.onnx")
    path = store.path(entry, "silero_vad.onnx")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelMissingError, match="is not installed") as caught:
        load_vad(store, entry)
    _expect_pull_hint(caught.value, entry.id)


@pytest.mark.parametrize(("model_id", "damaged"), [
    ("silero-vad", "silero_vad.onnx"),
    ("whisper-base", "tokenizer.json"),
    ("piper-en-us-joe-medium", "en_US-joe-medium.onnx.json"),
])
def test_corrupt_file_of_the_right_size(catalog: Catalog, tmp_path: Path, model_id: str, damaged: str) -> None:
    entry = catalog.get(model_id)
    store = _store_with_links(tmp_path, entry, copied=damaged)
    with open(store.path(entry, damaged), "r+b") as handle:
        handle.write(b"\0" * 64)  # same size, so the store still counts it as installed
    assert store.is_installed(entry)
    with pytest.raises(ModelMissingError, match=r"cannot be loaded .*; it may be corrupt") as caught:
        LOADERS[model_id](store, entry)
    _expect_pull_hint(caught.value, model_id)


@pytest.mark.parametrize(("loader", "model_id", "role", "wanted"), [
    (load_vad, "whisper-base", "asr", "vad"),
    (load_asr, "piper-en-us-joe-medium", "tts", "asr"),
    (load_tts, "silero-vad", "vad", "tts"),
])
def test_wrong_role(catalog: Catalog, real_store: ModelStore, loader: Callable[[ModelStore, ModelEntry], object],
                    model_id: str, role: str, wanted: str) -> None:
    with pytest.raises(EngineError, match=f"is a {role} model, not a {wanted} model") as caught:
        loader(real_store, catalog.get(model_id))
    assert not isinstance(caught.value, ModelMissingError)


def test_unknown_engine(catalog: Catalog, real_store: ModelStore) -> None:
    entry = catalog.get("silero-vad").model_copy(update={"engine": "webrtc"})
    with pytest.raises(EngineError, match="'webrtc' engine"):
        load_vad(real_store, entry)


def test_bad_arguments_are_not_reported_as_corruption(catalog: Catalog, real_store: ModelStore) -> None:
    with pytest.raises(EngineError, match="threads") as caught:
        load_vad(real_store, catalog.get("silero-vad"), threads=0)
    assert not isinstance(caught.value, ModelMissingError)
