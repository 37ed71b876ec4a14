"""Shared fixtures. Every test runs with its own XIAOZHI_HOME and no pip config of the machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.fileserver import FileServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if (name.startswith("XIAOZHI_") and name != "XIAOZHI_TEST_HOME") or name.startswith("PIP_"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "xiaozhi-home"
    monkeypatch.setenv("XIAOZHI_HOME", str(home))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    return home


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()


def models_test_home() -> Path:
    """Where scripts/test pulled the real test model set."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xiaozhi-local" / "test-home"
    return Path(os.environ.get("XIAOZHI_TEST_HOME") or default)


@pytest.fixture
def real_models_dir() -> Path:
    models = models_test_home() / "models"
    if not models.is_dir():
        pytest.fail(f"the test model set is missing at {models}; run scripts/test "
                    "(or XIAOZHI_HOME=<dir> xiaozhi models pull --test and set XIAOZHI_TEST_HOME)")
    return models
