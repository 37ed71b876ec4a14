from __future__ import annotations

from pathlib import Path

import pytest

from xiaozhi_local.config import Settings, find_key_line, load_config, render_toml
from xiaozhi_local.errors import ConfigError
from xiaozhi_local.paths import base_dirs


def test_xdg_and_xiaozhi_home() -> None:
    dirs = base_dirs({"HOME": "/home/u", "XDG_CONFIG_HOME": "/cfg", "XDG_DATA_HOME": "/data"})
    assert dirs.config_file == Path("/cfg/xiaozhi/config.toml")
    assert dirs.data_dir == Path("/data/xiaozhi")
    dirs = base_dirs({"HOME": "/home/u"})
    assert dirs.config_dir == Path("/home/u/.config/xiaozhi")
    assert dirs.data_dir == Path("/home/u/.local/share/xiaozhi")
    dirs = base_dirs({"HOME": "/home/u", "XIAOZHI_HOME": "/srv/xz", "XDG_DATA_HOME": "/data"})
    assert dirs.config_file == Path("/srv/xz/config.toml") and dirs.data_dir == Path("/srv/xz")


def test_defaults_without_a_file(isolated_env: Path) -> None:
    config = load_config()
    assert config.settings == Settings()
    assert not config.config_file_exists
    assert config.models_dir == isolated_env / "models"
    assert config.db_path == isolated_env / "xiaozhi.db"


def test_file_then_environment(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolated_env.mkdir(parents=True)
    (isolated_env / "config.toml").write_text('[models]\nllm = "smollm2-135m-q4_1"\ndir = "/opt/m"\n')
    config = load_config()
    assert config.settings.models.llm == "smollm2-135m-q4_1"
    assert config.models_dir == Path("/opt/m")
    monkeypatch.setenv("XIAOZHI_MODELS__LLM", "qwen2.5-coder-1.5b-q4km")
    monkeypatch.setenv("XIAOZHI_LOG__LEVEL", "debug")
    config = load_config()
    assert config.settings.models.llm == "qwen2.5-coder-1.5b-q4km"
    assert config.settings.log.level == "debug"


def test_unknown_key_names_key_file_and_line(isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True)
    path = isolated_env / "config.toml"
    path.write_text('# comment\n[models]\nllm = "x"\n\n[log]\nlevel = "info"\ncolour = "red"\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    assert info.value.key == "log.colour" and info.value.line == 7 and info.value.source == str(path)
    assert f"{path}:7: log.colour: unknown key" in str(info.value)


def test_wrong_type_names_key_and_line(isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True)
    (isolated_env / "config.toml").write_text('[log]\nlevel = "loud"\n[models]\nvad = 3\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    text = str(info.value)
    assert ":2: log.level:" in text and ":4: models.vad:" in text


def test_bad_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XIAOZHI_MODELS__NOPE", "1")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "XIAOZHI_MODELS__NOPE" in str(info.value) and "unknown key" in str(info.value)


def test_invalid_toml_and_missing_explicit_file(isolated_env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models]\nllm = "x"\nvad = \n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.line == 3
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_render_round_trips() -> None:
    import tomllib

    settings = Settings()
    assert Settings.model_validate(tomllib.loads(render_toml(settings, with_help=True))) == settings


def test_find_key_line_handles_quotes_and_tables() -> None:
    text = '[a]\n"b" = 1\n[c.d]\ne = 2\n'
    assert find_key_line(text, ("a", "b")) == 2
    assert find_key_line(text, ("c", "d", "e")) == 4
    assert find_key_line(text, ("c", "d")) == 3
    assert find_key_line(text, ("zz",)) is None
