"""`xiaozhi bench`: measure latency, throughput and footprint with simulated devices."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..bench.report import build_report, write_report
from ..bench.runner import BenchOptions, BenchRun, TurnRecord, run_bench
from ..bench.server import (
    Sampler,
    ServerHandle,
    ServerUrls,
    health_sampler,
    parse_server_url,
    process_sampler,
    start_server,
    stop_server,
)
from ..bench.utterances import (
    SpokenUtterance,
    Utterance,
    chinese_support,
    load_catalog_for,
    open_voice,
    plan_turns,
    synthesize_all,
    voice_entry,
)
from ..config import AppConfig
from ..errors import UnknownModelError, XiaozhiError
from ..models.catalog import Catalog, ModelEntry
from ..protocol.types import ListenMode
from .common import JSON_OPTION, err, guarded, out, print_json, state


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=False)


@contextmanager
def _server(urls: ServerUrls | None, out_dir: Path, echo: bool, config_path: Path | None) -> Iterator[ServerHandle]:
    if urls is not None:
        yield ServerHandle(urls)
        return
    with err.status("starting `xiaozhi serve` on 127.0.0.1 (loading the models)…"):
        handle = start_server(out_dir, echo=echo, config_path=config_path)
    err.print(f"server ready in {handle.startup_s:.1f} s at {handle.urls.base_url} (log: {handle.log_path})",
              highlight=False, markup=False)
    try:
        yield handle
    finally:
        stop_server(handle)


def _asr_entry(catalog: Catalog, config: AppConfig, health: dict[str, Any], started: bool) -> ModelEntry | None:
    models = health.get("models") if isinstance(health.get("models"), dict) else {}
    asr_id = models.get("asr") or (config.settings.models.asr if started else None)
    if not asr_id:
        return None
    try:
        return catalog.get(str(asr_id))
    except UnknownModelError:
        return None


def _describe(record: TurnRecord) -> str:
    what = "warm-up" if record.warmup else f"turn {record.index + 1}"
    if record.result.ok and record.result.turns and record.result.turns[0].completed:
        return f"{what}: {record.spoken.utterance.text}"
    return f"{what} failed: {record.result.error or 'no complete reply'}"


def _print_summary(report: dict[str, Any], paths: dict[str, Path]) -> None:
    summary = report["summary"]
    table = Table(title=f"latency (ms) over {summary['completed']}/{summary['turns']} turns")
    for column in ("", "p50", "p95", "max"):
        table.add_column(column, justify="right")

    def add(name: str, stats: dict[str, float] | None, fmt: str = "{:.0f}") -> None:
        table.add_row(name, *(("-",) * 3 if stats is None else (fmt.format(stats[k]) for k in ("p50", "p95", "max"))))

    add("end of speech → first reply audio", summary["e2e_ms"])
    add("end of speech → stt", summary["client_ms"]["stt"])
    server = summary["server"]
    if server:
        for name, stats in server["stages_ms"].items():
            add(f"  server stage: {name}", stats)
        add("LLM tokens/s", server["llm_tokens_per_s"], "{:.1f}")
        add("e2e ÷ stage compute", server["e2e_over_compute"], "{:.2f}")
    out.print(table)
    targets = Table(title="targets")
    for column in ("target", "goal", "measured", "status"):
        targets.add_column(column)
    colours = {"pass": "green", "fail": "red", "unknown": "yellow"}
    for t in report["targets"]:
        value = t["measured"]
        shown = "-" if value is None else (f"{value / 1e6:.0f} MB" if t["unit"] == "bytes" else f"{value:g}")
        targets.add_row(t["target"], t["goal"], shown, f"[{colours[t['status']]}]{t['status']}[/]")
    out.print(targets)
    for note in [*report["utterances"].get("notes", []), *report["notes"]]:
        out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    out.print(f"report: {paths['markdown']}  ·  {paths['json']}  ·  {paths['chart']}", highlight=False)


@guarded
def bench(
    ctx: typer.Context,
    turns: int = typer.Option(20, "--turns", min=1, help="Measured turns (questions asked)."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Simulated devices talking at once."),
    server: str = typer.Option(None, "--server", help="Measure this running server (its OTA URL, e.g. "
                               "http://192.168.1.5:8003/xiaozhi/ota/) instead of starting one on 127.0.0.1."),
    out_dir: Path = typer.Option(None, "--out", file_okay=False,
                                 help="Folder for report.json, report.md, latency.png, the spoken questions "
                                      "and server.log (default: ./bench-results/<timestamp>)."),
    mode: ListenMode = typer.Option(ListenMode.AUTO, "--mode", case_sensitive=False,
                                    help="auto: the server detects the end of speech; manual: push-to-talk "
                                         "(listen stop right after the question); realtime: full duplex."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Turns run first and left out of the figures."),
    echo: bool = typer.Option(False, "--echo", help="Start the server with --echo (no models): measures the "
                              "device protocol and audio path only."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0,
                                  help="Seconds to wait for each reply, from the end of the question to the end "
                                       "of the reply (long replies play for a minute)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Measure the server with simulated devices: latency per stage, LLM speed, memory and CPU.

    It speaks a fixed list of everyday questions with the installed voice (models.tts in the config), starts
    `xiaozhi serve` on 127.0.0.1 (or uses --server), asks --turns questions from --concurrency
    devices, and writes report.json, report.md and latency.png. Nothing is downloaded.

    Exit codes: 0 every turn completed, 1 an error or a failed turn (the report is still written).
    """
    if echo and server:
        raise XiaozhiError("--echo starts a server of its own; leave it out with --server")
    urls = parse_server_url(server) if server else None
    cli = state(ctx)
    config = cli.config
    catalog = load_catalog_for(config)
    voice = voice_entry(config, catalog)
    folder = out_dir or Path("bench-results") / time.strftime("%Y%m%d-%H%M%S")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise XiaozhiError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None
    options = BenchOptions(turns=turns, warmup=warmup, concurrency=concurrency, mode=mode, reply_timeout_s=timeout)
    try:
        with _server(urls, folder, echo, cli.config_path) as handle:
            try:
                health = httpx.get(handle.urls.base_url + "/health", timeout=10).json()
            except (httpx.HTTPError, ValueError) as exc:
                raise XiaozhiError(f"cannot reach the server at {handle.urls.base_url}/health: {exc}") from None
            if not isinstance(health, dict):
                raise XiaozhiError(f"{handle.urls.base_url}/health did not answer like a xiaozhi-local server")
            skip_zh = chinese_support(voice, _asr_entry(catalog, config, health, handle.proc is not None))
            plan = plan_turns(turns, chinese=skip_zh is None)
            spoken = _synthesize(config, voice, plan, folder)
            run = _run(handle, [spoken[u.id] for u in plan], options)
            server_info: dict[str, Any] = {"url": handle.urls.ota_url, "started": handle.proc is not None,
                                           "echo": echo, "startup_s": handle.startup_s,
                                           "log": str(handle.log_path) if handle.log_path else None}
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]; no report written")
        raise typer.Exit(130) from None
    utterances = {
        "voice": voice.id,
        "languages": sorted({u.lang for u in plan}),
        "notes": [skip_zh] if skip_zh else [],
        "items": [{"id": s.utterance.id, "lang": s.utterance.lang, "text": s.utterance.text,
                   "wav": str(s.wav.relative_to(folder)), "seconds": s.seconds} for s in spoken.values()],
    }
    report = build_report(run, options, server=server_info, utterances=utterances,
                          command=["xiaozhi", *sys.argv[1:]])
    paths = write_report(report, folder)
    if as_json:
        print_json(report)
    else:
        _print_summary(report, paths)
    failed = report["summary"]["failed"]
    if failed:
        first = next(r["error"] for r in report["turns"] if not r["warmup"] and not r["ok"])
        err.print(f"[bold red]error:[/] {failed} of {report['summary']['turns']} turns failed (first: {first})",
                  highlight=False)
        raise typer.Exit(1)


def _synthesize(config: AppConfig, voice: ModelEntry, utterances: list[Utterance],
                folder: Path) -> dict[str, SpokenUtterance]:  # fmt: skip
    distinct = {u.id: u for u in utterances}
    with _progress() as progress:
        task = progress.add_task(f"speaking the questions ({voice.id})", total=len(distinct))
        return synthesize_all(distinct.values(), voice.id, lambda: open_voice(config, voice), folder / "utterances",
                              on_done=lambda _u, _cached: progress.advance(task))


def _run(handle: ServerHandle, plan: list[SpokenUtterance], options: BenchOptions) -> BenchRun:
    async def main() -> BenchRun:
        async with httpx.AsyncClient(timeout=10.0) as client:
            sampler: Sampler = (process_sampler(handle.proc.pid) if handle.proc is not None
                                else health_sampler(client, handle.urls))
            with _progress() as progress:
                task = progress.add_task("warming up" if options.warmup else "turns",
                                         total=options.warmup + len(plan))

                def advance(record: TurnRecord) -> None:
                    progress.update(task, advance=1, description=_describe(record)[:70])

                return await run_bench(handle.urls, plan, options, sampler=sampler, progress=advance)

    return asyncio.run(main())
