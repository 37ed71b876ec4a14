"""The systemd unit `scripts/install-service` installs: fully rendered and valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def render(tmp_path: Path) -> Path:
    env = {"PATH": "/usr/bin:/bin", "XIAOZHI_SERVICE_USER": "root", "XIAOZHI_SERVICE_HOME": str(tmp_path / "data")}
    result = subprocess.run(["bash", str(REPO / "scripts" / "install-service"), "--print"], capture_output=True,
                            text=True, env=env, timeout=30, check=True)
    unit = tmp_path / "xiaozhi.service"
    unit.write_text(result.stdout)
    return unit


def test_the_unit_runs_serve_from_this_checkout(tmp_path: Path) -> None:
    text = render(tmp_path).read_text()
    assert not any(p in text for p in ("@REPO@", "@USER@", "@DATA@"))
    assert f"ExecStart={REPO}/.venv/bin/xiaozhi serve" in text
    assert f"Environment=XIAOZHI_HOME={tmp_path / 'data'}" in text
    assert f"ReadWritePaths={tmp_path / 'data'}" in text
    assert "Restart=on-failure" in text and "WantedBy=multi-user.target" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(render(tmp_path))], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
