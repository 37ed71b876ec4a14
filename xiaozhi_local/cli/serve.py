"""`xiaozhi serve`: run the device server (OTA + WebSocket + mDNS)."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer

from ..errors import XiaozhiError
from ..pipeline.echo import EchoConversation
from ..protocol.ota import is_loopback_url
from ..server.app import XiaozhiServer
from ..server.context import WILDCARDS, ServerContext
from .common import err, guarded, state

PIPELINE_MISSING = (
    "the voice pipeline (speech recognition, language model, voice) is not built yet, so the "
    "server cannot hold a conversation. `xiaozhi serve --echo` runs the full device protocol "
    "with an echo conversation that plays back what you say: use it to check a device's "
    "microphone, speaker and connection."
)


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
    echo: bool = typer.Option(False, "--echo", help="Play back what the user says (a device check; no models)."),
) -> None:
    """Run the server Xiaozhi devices talk to. Point a device at the printed OTA URL."""
    config = state(ctx).config
    overrides = {k: v for k, v in {"host": host, "http_port": http_port, "ws_port": ws_port,
                                   "advertise_host": advertise_host}.items() if v is not None}
    if no_mdns:
        overrides["mdns"] = False
    settings = config.settings.server.model_copy(update=overrides)
    if not echo:
        raise XiaozhiError(PIPELINE_MISSING)
    setup_logging(config.settings.log.level)
    server_ctx = ServerContext(settings, conversation="echo")
    server = XiaozhiServer(server_ctx, EchoConversation)

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
        err.print("  stop with Ctrl-C")

    try:
        asyncio.run(server.run_until_signal(ready))
    except OSError as exc:
        raise XiaozhiError(f"cannot start the server: {exc} (is another server using the ports?)") from None


serve = guarded(serve)
