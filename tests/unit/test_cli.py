"""Every CLI command and its errors, through Typer's runner (real files, real loopback HTTP)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from tests.helpers.fileserver import Fault, FileServer
from xiaozhi_local import __version__
from xiaozhi_local.cli import app

runner = CliRunner()
PAYLOAD = os.urandom(50_000)


def toy_catalog(path: Path, url: str) -> Path:
    path.write_text(f"""
[[model]]
id = "toy-model"
role = "vad"
engine = "silero"
license = "MIT"
[[model.files]]
name = "toy.onnx"
sha256 = "{hashlib.sha256(PAYLOAD).hexdigest()}"
size = {len(PAYLOAD)}
[[model.sources]]
kind = "url"
[model.sources.files]
"toy.onnx" = [{{ url = "{url}" }}]
""")
    return path


@pytest.fixture
def toy(tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch) -> FileServer:
    file_server.files["/toy.onnx"] = PAYLOAD
    catalog = toy_catalog(tmp_path / "cat.toml", f"{file_server.url}/toy.onnx")
    monkeypatch.setenv("XIAOZHI_MODELS__CATALOG", str(catalog))
    return file_server


def test_help_lists_every_group_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "models" in result.output and "config" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_models_list_json_and_table(toy: FileServer) -> None:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert rows["toy-model"]["installed"] == "no"
    assert rows["whisper-base"]["default"] and rows["whisper-base"]["test"]
    table = runner.invoke(app, ["models", "list"])
    assert table.exit_code == 0 and "toy-model" in table.output and "qwen2.5-coder-0.5b-q4km" in table.output


def test_pull_verify_path_rm_cycle(toy: FileServer, isolated_env: Path) -> None:
    result = runner.invoke(app, ["models", "pull", "toy-model", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pulled"][0]["status"] == "pulled" and report["errors"] == []
    installed = isolated_env / "models" / "toy-model" / "toy.onnx"
    assert installed.read_bytes() == PAYLOAD

    again = runner.invoke(app, ["models", "pull", "toy-model", "--json"])
    assert json.loads(again.stdout)["pulled"][0]["status"] == "present"

    assert runner.invoke(app, ["models", "path", "toy-model"]).stdout.strip() == str(installed.parent)
    assert runner.invoke(app, ["models", "path", "toy-model", "--file"]).stdout.strip() == str(installed)

    ok = runner.invoke(app, ["models", "verify", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] == ["toy-model"]
    installed.write_bytes(b"x" + PAYLOAD[1:])  # same size, different bytes
    bad = runner.invoke(app, ["models", "verify", "toy-model", "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["problems"][0]["kind"] == "sha256"

    repaired = runner.invoke(app, ["models", "pull", "toy-model"])
    assert repaired.exit_code == 0 and installed.read_bytes() == PAYLOAD

    removed = runner.invoke(app, ["models", "rm", "toy-model"])
    assert removed.exit_code == 0 and not installed.exists()
    missing = runner.invoke(app, ["models", "path", "toy-model"])
    assert missing.exit_code == 1 and "xiaozhi models pull toy-model" in missing.output
    verify_missing = runner.invoke(app, ["models", "verify", "toy-model"])
    assert verify_missing.exit_code == 1 and "missing" in verify_missing.output


def test_pull_errors(toy: FileServer) -> None:
    nothing = runner.invoke(app, ["models", "pull"])
    assert nothing.exit_code == 1 and "--default" in nothing.output
    unknown = runner.invoke(app, ["models", "pull", "toy-modle"])
    assert unknown.exit_code == 1 and "Did you mean: toy-model" in unknown.output
    toy.faults["/toy.onnx"] = Fault(corrupt=True)
    corrupt = runner.invoke(app, ["models", "pull", "toy-model"])
    assert corrupt.exit_code == 1
    assert "sha256 mismatch" in corrupt.output and "source 1 (url http://127.0.0.1" in corrupt.output
    toy.faults["/toy.onnx"] = Fault(status=404)
    gone = runner.invoke(app, ["models", "pull", "toy-model"])
    assert gone.exit_code == 1 and "every source failed" in gone.output and "HTTP 404" in gone.output
    for command in (["rm", "nope"], ["path", "nope"], ["verify", "nope"]):
        result = runner.invoke(app, ["models", *command])
        assert result.exit_code == 1 and "unknown model id 'nope'" in result.output


def test_config_commands(isolated_env: Path) -> None:
    path = runner.invoke(app, ["config", "path"])
    assert path.stdout.strip() == str(isolated_env / "config.toml")
    locations = json.loads(runner.invoke(app, ["config", "path", "--json"]).stdout)
    assert locations["models_dir"] == str(isolated_env / "models")
    assert runner.invoke(app, ["config", "init"]).exit_code == 0
    text = (isolated_env / "config.toml").read_text()
    assert "[models]" in text and "# " in text
    again = runner.invoke(app, ["config", "init"])
    assert again.exit_code == 1 and "--force" in again.output
    assert runner.invoke(app, ["config", "init", "--force"]).exit_code == 0
    shown = json.loads(runner.invoke(app, ["config", "show", "--json"]).stdout)
    assert shown["models"]["vad"] == "silero-vad"
    assert 'llm = "qwen2.5-coder-0.5b-q4km"' in runner.invoke(app, ["config", "show"]).stdout


def test_config_error_exit_code_and_message(isolated_env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[models]\nllm = 5\n")
    result = runner.invoke(app, ["--config", str(bad), "config", "show"])
    assert result.exit_code == 2
    assert f"{bad}:2: models.llm" in result.output
    missing = runner.invoke(app, ["--config", str(tmp_path / "none.toml"), "models", "list"])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_cli_py_runs_from_a_checkout() -> None:
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0 and "models" in result.stdout
