"""Where xiaozhi-local keeps its files.

- configuration: ``$XDG_CONFIG_HOME/xiaozhi/config.toml`` (default ``~/.config/xiaozhi``)
- data (models, SQLite): ``$XDG_DATA_HOME/xiaozhi/`` (default ``~/.local/share/xiaozhi``)
- ``XIAOZHI_HOME`` moves both: config at ``$XIAOZHI_HOME/config.toml``, data under
  ``$XIAOZHI_HOME/`` (used by tests and the systemd unit).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP = "xiaozhi"


@dataclass(frozen=True)
class BaseDirs:
    """The two roots everything else hangs from."""

    config_dir: Path
    data_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"


def base_dirs(env: Mapping[str, str] | None = None) -> BaseDirs:
    """Resolve the config and data roots from the environment (XDG rules)."""
    env = os.environ if env is None else env
    home = env.get("XIAOZHI_HOME", "").strip()
    if home:
        root = Path(home).expanduser().resolve()
        return BaseDirs(config_dir=root, data_dir=root)
    user_home = Path(env.get("HOME") or Path.home())
    xdg_config = env.get("XDG_CONFIG_HOME", "").strip()
    xdg_data = env.get("XDG_DATA_HOME", "").strip()
    config_root = Path(xdg_config) if xdg_config else user_home / ".config"
    data_root = Path(xdg_data) if xdg_data else user_home / ".local" / "share"
    return BaseDirs(config_dir=config_root / APP, data_dir=data_root / APP)
