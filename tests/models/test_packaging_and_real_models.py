"""The built wheel carries the catalog; the real test model set is installed and intact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, models_test_home


def test_wheel_ships_models_toml_and_finds_it(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, timeout=300,
                   env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    wheel = next((tmp_path / "dist").glob("xiaozhi_local-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "xiaozhi_local/models.toml" in names
        assert zf.read("xiaozhi_local/models.toml") == (REPO / "models.toml").read_bytes()
        zf.extractall(tmp_path / "site")
    # Installed from the wheel, away from the checkout, the catalog is the packaged one.
    code = ("from xiaozhi_local.models.catalog import builtin_catalog_text, load_catalog;"
            "print(builtin_catalog_text()[1]); print(len(load_catalog()))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, timeout=60)
    where, count = result.stdout.split()
    assert where.startswith(str(tmp_path / "site")) and int(count) >= 9


@pytest.mark.models
def test_real_test_set_verifies_with_the_cli(real_models_dir: Path) -> None:
    xiaozhi = shutil.which("xiaozhi") or str(Path(sys.executable).parent / "xiaozhi")
    env = {**os.environ, "XIAOZHI_HOME": str(models_test_home())}
    result = subprocess.run([xiaozhi, "models", "verify", "--json"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    listed = subprocess.run([xiaozhi, "models", "list", "--json"], capture_output=True, text=True,
                            env=env, timeout=60, check=True)
    test_set = {m["id"] for m in json.loads(listed.stdout) if m["test"]}
    assert test_set <= set(report["ok"]), f"not verified: {test_set - set(report['ok'])}"
    assert report["problems"] == []
