"""The `xiaozhi` command line: one Typer sub-app per noun."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import __version__
from . import bench, config_cmd, device, memory, models, serve, voice
from .common import state

app = typer.Typer(
    name="xiaozhi",
    help="xiaozhi-local: a fully offline server for Xiaozhi ESP32 voice devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models", help="Download, verify and remove the speech and language models.")
app.add_typer(config_cmd.app, name="config", help="Show, locate or create the configuration file.")
app.command("serve", help="Run the server devices talk to (OTA + WebSocket + mDNS).")(serve.serve)
app.add_typer(device.app, name="device", help="Devices: pair, list, revoke, forget; simulate one.")
app.command("bench")(bench.bench)
app.add_typer(voice.app, name="voice", help="Voiceprints: enroll, list, remove, test who is speaking.")
app.add_typer(memory.app, name="memory", help="What the assistant remembers: show, forget, export.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xiaozhi-local {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", help="Config file to use instead of the default.",
                                envvar="XIAOZHI_CONFIG", show_envvar=True),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """xiaozhi-local: a fully offline server for Xiaozhi ESP32 voice devices."""
    state(ctx).config_path = config


def main() -> None:
    app()
