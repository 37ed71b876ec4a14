"""`xiaozhi config`: show, locate and create the configuration file."""

from __future__ import annotations

import typer

from ..config import Settings, render_toml
from ..errors import XiaozhiError
from .common import JSON_OPTION, err, guarded, print_json, state

app = typer.Typer(help="Show, locate or create the configuration file.", no_args_is_help=True)


@app.command()
@guarded
def show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the effective settings (defaults, then the file, then XIAOZHI_* variables)."""
    config = state(ctx).config
    if as_json:
        print_json(config.settings.model_dump(mode="json"))
        return
    origin = str(config.config_file) if config.config_file_exists else f"{config.config_file} (not created; defaults)"
    err.print(f"# from {origin}", highlight=False, markup=False)
    typer.echo(render_toml(config.settings), nl=False)


@app.command()
@guarded
def path(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the config file's path (with --json: every location xiaozhi uses)."""
    config = state(ctx).config
    if as_json:
        print_json({
            "config_file": str(config.config_file),
            "config_file_exists": config.config_file_exists,
            "data_dir": str(config.data_dir),
            "models_dir": str(config.models_dir),
            "database": str(config.db_path),
            "user_catalog": str(config.user_catalog),
        })
        return
    typer.echo(str(config.config_file))


@app.command()
@guarded
def init(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented config file with every setting at its default."""
    config = state(ctx).config
    target = config.config_file
    if target.exists() and not force:
        raise XiaozhiError(f"{target} already exists (use --force to overwrite it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    header = ("# xiaozhi-local configuration. Every key is optional; delete what you don't change.\n"
              "# Environment variables override it: [section] key -> XIAOZHI_SECTION__KEY.\n\n")
    target.write_text(header + render_toml(Settings(), with_help=True), encoding="utf-8")
    err.print(f"wrote {target}", highlight=False)
