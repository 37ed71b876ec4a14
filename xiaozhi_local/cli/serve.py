"""`xiaozhi serve`: run the device server (OTA + WebSocket + mDNS)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import sys

import typer
from rich.markup import escape

from ..config import AppConfig
from ..errors import XiaozhiError
from ..pipeline.assistant import Assistant
from ..pipeline.echo import EchoConversation
from ..pipeline.loader import load_assistant
from ..pipeline.timing import TurnLog
from ..protocol.ota import is_loopback_url
from ..server.app import XiaozhiServer
from ..server.context import WILDCARDS, ServerContext
from ..server.pairing import OPEN_MODE_WARNING, DevicePairing
from .common import err, guarded, state


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Fewer glibc malloc arenas: each of the many model threads would otherwise keep its own
    (tens of MB each once touched), which showed up as ~250 MB of extra RSS. No-op off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def build_assistant(config: AppConfig, server_ctx: ServerContext) -> Assistant:
    """Check and load every model (with a spinner), then warm them up."""
    server_ctx.turns = TurnLog(config.settings.pipeline.turn_log_size)
    limit_malloc_arenas()
    with err.status("loading models…") as status:
        assistant = load_assistant(config, server_ctx.turns, step=lambda text: status.update(text + "…"))
        status.update("warming up (first synthesis, first prompt)…")
        asyncio.run(assistant.warm_up())
    server_ctx.models = dict(assistant.engines.model_ids)
    return assistant


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("websockets.server", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(
    ctx: typer.Context,
    host: str = typer.Option(None, help="Address to listen on (default from config: 0.0.0.0)."),
    http_port: int = typer.Option(None, help="Port of the OTA/health HTTP server (default 8003)."),
    ws_port: int = typer.Option(None, help="Port of the device WebSocket (default 8000)."),
    advertise_host: str = typer.Option(None, help="LAN address devices use to reach this box (default: detect)."),
    no_mdns: bool = typer.Option(False, "--no-mdns", help="Do not announce the server on the LAN (mDNS)."),
    echo: bool = typer.Option(False, "--echo", help="Instead of the assistant, play back what the user says "
                              "(checks a device's microphone, speaker and network; loads no models)."),
    open_mode: bool = typer.Option(False, "--open", help="Admit every device without pairing (trusted LAN only; "
                                   "same as mode = \"open\" under \\[pairing] in the config)."),
) -> None:
    """Run the server Xiaozhi devices talk to. Point a device at the printed OTA URL."""
    config = state(ctx).config
    overrides = {k: v for k, v in {"host": host, "http_port": http_port, "ws_port": ws_port,
                                   "advertise_host": advertise_host}.items() if v is not None}
    if no_mdns:
        overrides["mdns"] = False
    settings = config.settings.server.model_copy(update=overrides)
    setup_logging(config.settings.log.level)
    pairing = DevicePairing.from_config(config, force_open=open_mode)
    server_ctx = ServerContext(settings, conversation="echo" if echo else "assistant")
    server_ctx.limits = config.settings.limits
    assistant = None if echo else build_assistant(config, server_ctx)
    server = XiaozhiServer(server_ctx, assistant or EchoConversation, pairing=pairing)

    async def run() -> None:
        await server.run_until_signal(ready)
        if assistant is not None:
            for _ in range(100):  # closing sessions finish their teardown (and spawn their storage work)
                if not server_ctx.sessions:
                    break
                await asyncio.sleep(0.05)
            await assistant.drain()  # what the last sessions said is stored before exiting

    def ready() -> None:
        endpoints = server_ctx.endpoints()
        err.print(f"[bold green]xiaozhi-local is running[/] (conversation: {server_ctx.conversation})")
        err.print(f"  OTA URL for the device's Wi-Fi portal: [bold]{endpoints.ota_url}[/]", highlight=False)
        err.print(f"  device WebSocket: {endpoints.websocket_url}", highlight=False)
        err.print(f"  health: http://{endpoints.host}:{server.http_port}/health", highlight=False)
        if is_loopback_url(endpoints.ota_url):
            why = ("it listens on a loopback address only" if settings.host not in WILDCARDS
                   else "no LAN address was found")
            err.print(f"[yellow]  warning:[/] devices on your network cannot reach this server: {why}. "
                      "Use --host 0.0.0.0 and/or --advertise-host <LAN address> (advertise_host under "
                      "\\[server] in the config).", highlight=False)
        if pairing.mode == "open":
            err.print(f"[yellow]  warning:[/] {escape(OPEN_MODE_WARNING)}", highlight=False)
        else:
            err.print("  pairing: a new device speaks a 6-digit code; approve it with `xiaozhi device pair CODE`",
                      markup=False, highlight=False)
        err.print("  stop with Ctrl-C")

    try:
        asyncio.run(run())
    except OSError as exc:
        raise XiaozhiError(f"cannot start the server: {exc} (is another server using the ports?)") from None


serve = guarded(serve)
