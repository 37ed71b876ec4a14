from __future__ import annotations

import os
from pathlib import Path

from xiaozhi_local.models.pipconf import PYPI_SIMPLE, load_index_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_to_pypi_without_config() -> None:
    config = load_index_config({"PIP_CONFIG_FILE": os.devnull, "HOME": "/nonexistent"})
    assert config.indexes == [PYPI_SIMPLE]
    assert config.files_read == ()


def test_user_file_then_env_file_then_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home / ".config" / "pip" / "pip.conf", "[global]\nindex-url = https://user.example/simple\n")
    env_file = write(tmp_path / "env.conf", "[global]\nextra-index-url = https://a.example/simple\n"
                     "  https://b.example/simple\n[download]\nproxy = http://proxy.lan:3128\n")
    env = {"HOME": str(home), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    assert load_index_config(env).index_url == "https://user.example/simple"
    # PIP_CONFIG_FILE pointing at an existing file skips the user files, as pip does.
    env["PIP_CONFIG_FILE"] = str(env_file)
    config = load_index_config(env)
    assert config.index_url == PYPI_SIMPLE
    assert config.extra_index_urls == ("https://a.example/simple", "https://b.example/simple")
    assert config.proxy == "http://proxy.lan:3128"
    env["PIP_INDEX_URL"] = "https://mirror.example/simple/"
    env["PIP_TRUSTED_HOST"] = "mirror.example other.example"
    config = load_index_config(env)
    assert config.indexes[0] == "https://mirror.example/simple"
    assert config.trusted_hosts == ("mirror.example", "other.example")


def test_no_index_and_find_links(tmp_path: Path) -> None:
    env = {"PIP_CONFIG_FILE": os.devnull, "HOME": str(tmp_path), "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": "/srv/wheels file:///opt/w"}
    config = load_index_config(env)
    assert config.indexes == []
    assert config.find_links == ("/srv/wheels", "file:///opt/w")
