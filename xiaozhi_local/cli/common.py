"""What every CLI command shares: the lazily loaded config, error handling, output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..config import AppConfig, load_config
from ..errors import ConfigError, XiaozhiError

# Human output and progress go to stderr so that stdout carries only data (--json, paths).
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


@dataclass
class CliState:
    config_path: Path | None = None
    _config: AppConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> AppConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our typed errors into one clear message and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            err.print(f"[bold red]config error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except XiaozhiError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]; partial downloads are kept and resume on the next run")
            raise typer.Exit(130) from None

    return wrapper


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class RichProgress:
    """A ProgressSink drawing one Rich bar per transfer (bytes, speed, ETA)."""

    def __init__(self, console: Console = err):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def begin(self, key: str, label: str, total: int | None, completed: int = 0) -> None:
        if key in self.tasks:
            self.progress.reset(self.tasks[key], total=total, completed=completed, visible=True)
        else:
            self.tasks[key] = self.progress.add_task(label, total=total, completed=completed)

    def advance(self, key: str, amount: int) -> None:
        self.progress.advance(self.tasks[key], amount)

    def end(self, key: str) -> None:
        task = self.tasks.get(key)
        if task is not None:
            self.progress.stop_task(task)

    def note(self, message: str) -> None:
        self.progress.console.print(message, highlight=False, markup=False)
