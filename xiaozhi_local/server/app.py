"""The whole server: HTTP (OTA, activation, health), the device WebSocket and mDNS.

``XiaozhiServer.start()`` brings the parts up, ``stop()`` closes every session with a close
code, stops listening and unregisters mDNS. ``run_until_signal()`` is what ``xiaozhi serve``
runs: the first SIGTERM/SIGINT stops cleanly (within 5 s), a second exits at once.

Admission is default-deny: without an explicit ``pairing`` the server uses an empty in-memory
registry in paired mode, so no device is admitted until it is paired through ``server.pairing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

from ..audio.clock import Clock
from ..errors import XiaozhiError
from ..pipeline.conversation import ConversationFactory
from .context import ServerContext
from .http_api import HttpServer, build_http_app, start_http
from .mdns import MdnsAdvertiser
from .pairing import DevicePairing
from .ws import DeviceSocketServer

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


class XiaozhiServer:
    def __init__(self, ctx: ServerContext, factory: ConversationFactory, *, pairing: DevicePairing | None = None,
                 clock: Clock | None = None):
        self.ctx = ctx
        self.pairing = pairing if pairing is not None else DevicePairing.in_memory()
        ctx.pairing_mode = self.pairing.mode
        self.ws = DeviceSocketServer(ctx, factory, clock, admit=self.pairing.admit)
        self.http_app = build_http_app(ctx, self.pairing)
        self.http: HttpServer | None = None
        self.mdns = MdnsAdvertiser() if ctx.settings.mdns else None
        self.http_port = ctx.settings.http_port
        self.ws_port = ctx.settings.ws_port

    async def start(self) -> None:
        settings = self.ctx.settings
        self.pairing.start(self.ctx.sessions)
        self.ws_port = await self.ws.start(settings.host, settings.ws_port)
        self.http = await start_http(self.ctx, self.http_app, settings.host, settings.http_port)
        self.http_port = self.http.port
        # Ports may have been chosen by the OS (port 0): advertise the real ones.
        self.ctx.settings = settings.model_copy(update={"http_port": self.http_port, "ws_port": self.ws_port})
        if self.mdns is not None:
            try:
                await self.mdns.start(self.ctx)
            except (OSError, XiaozhiError) as exc:
                log.warning("mDNS disabled: %s (devices can still use the OTA URL)", exc)
                self.mdns = None

    async def stop(self) -> None:
        await self.ws.close("server shutting down")
        if self.http is not None:
            await self.http.close()
        if self.mdns is not None:
            await self.mdns.stop()
        await self.pairing.close()

    async def run_until_signal(self, on_ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                log.warning("second signal: exiting now")
                os._exit(1)
            log.info("stopping (a second signal exits at once)")
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        await self.start()
        if on_ready is not None:
            on_ready()
        try:
            await stop.wait()
        finally:
            try:
                await asyncio.wait_for(self.stop(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("clean shutdown took over %.0f s; exiting anyway", STOP_TIMEOUT_S)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
