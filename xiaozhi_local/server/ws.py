"""The device WebSocket endpoint (protocol.md §2.1), on the ``websockets`` library.

The path is ``/xiaozhi/v1/`` (anything else: HTTP 404 before the upgrade). The device's
identity comes from the ``Device-Id``/``Client-Id``/``Authorization``/``Protocol-Version``
headers, or, for browsers that cannot set headers, from the ``device-id``, ``client-id``
and ``authorization`` query parameters. Problems after the upgrade are answered with a close
code and a reason a person can read; each session runs isolated from the others.

Admission: connects are rate-limited per client address (HTTP 429 before the upgrade, with
``Retry-After``); then the ``admit`` hook (pairing) decides, and a refusal is a close with code
1008 and its reason ("device not paired, run `xiaozhi device pair`", "device revoked",
"authentication failed"), logged once with the address. There is no default hook: pass
:class:`~.pairing.DevicePairing`'s ``admit``, or :func:`admit_all` where admission is not the point.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .. import __version__
from ..audio.clock import Clock
from ..pipeline.conversation import ConversationFactory
from .context import ServerContext
from .ratelimit import AddressLimits
from .session import Session

log = logging.getLogger(__name__)

PATHS = ("/xiaozhi/v1/", "/xiaozhi/v1")
_DEVICE_ID = re.compile(r"[\x21-\x7e]{1,64}")

Admit = Callable[[Session], Awaitable[str | None]]
"""The admission hook: a close reason to refuse the session, or None to run it."""


async def admit_all(session: Session) -> str | None:
    """Admit every device (open mode without a registry: tests of the session protocol)."""
    return None


def _identity(request: Request) -> dict[str, str | None]:
    query = parse_qs(urlsplit(request.path).query)

    def pick(header: str, param: str) -> str | None:
        value = request.headers.get(header) or (query.get(param) or [None])[0]
        return value.strip() if value and value.strip() else None

    return {
        "device_id": pick("Device-Id", "device-id"),
        "client_id": pick("Client-Id", "client-id"),
        "authorization": pick("Authorization", "authorization"),
        "protocol_version": pick("Protocol-Version", "protocol-version"),
    }


def bearer_token(authorization: str | None) -> str | None:
    """``Bearer <token>`` → token (the firmware adds ``Bearer `` unless the token has a space)."""
    if not authorization:
        return None
    scheme, _, rest = authorization.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest.strip() else authorization.strip()


class DeviceSocketServer:
    def __init__(self, ctx: ServerContext, factory: ConversationFactory, clock: Clock | None = None, *,
                 admit: Admit):
        self.ctx = ctx
        self.factory = factory
        self.clock = clock
        self.admit = admit  # pairing hook: returns a rejection reason, or None to admit
        self.limits = AddressLimits({"websocket": ctx.limits.websocket_per_minute},
                                    exempt_loopback=ctx.limits.exempt_loopback)
        self.server: Server | None = None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        address = str(connection.remote_address[0]) if connection.remote_address else "?"
        if path not in PATHS:
            log.info("websocket %s from %s: 404", path[:60], address)
            return connection.respond(HTTPStatus.NOT_FOUND, "The device WebSocket is at /xiaozhi/v1/\n")
        limit = self.limits.check("websocket", address)
        if limit is not None:
            if limit.log:
                log.warning("rate limit: websocket connects from %s refused with 429 (more in the next minute "
                            "are not logged)", address)
            response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS,
                                          f"too many connections; retry in {limit.retry_after_s} s\n")
            response.headers["Retry-After"] = str(limit.retry_after_s)
            return response
        return None

    def _too_many_from(self, address: str) -> bool:
        if self.limits.exempt(address):
            return False
        mine = sum(1 for s in self.ctx.sessions.values() if s.address == address)
        return mine >= self.ctx.limits.sessions_per_address

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        ident = _identity(ws.request)
        address = str(ws.remote_address[0]) if ws.remote_address else "?"
        device_id = ident["device_id"]
        if device_id is None or not _DEVICE_ID.fullmatch(device_id):
            log.warning("websocket from %s: no usable Device-Id; closing", address)
            await ws.close(1008, "missing or bad Device-Id header (or device-id query parameter)")
            return
        if len(self.ctx.sessions) >= self.ctx.settings.max_sessions:
            log.warning("websocket from %s: %d sessions already; closing", address, len(self.ctx.sessions))
            await ws.close(1013, "server busy: too many sessions, try again later")
            return
        if self._too_many_from(address):
            log.warning("websocket from %s: %d sessions from that address already; closing", address,
                        self.ctx.limits.sessions_per_address)
            await ws.close(1013, "too many sessions from your address, try again later")
            return
        session = Session(ws, self.ctx, self.factory, device_id=device_id.lower(),
                          client_id=ident["client_id"], token=bearer_token(ident["authorization"]),
                          header_version=ident["protocol_version"], clock=self.clock)
        try:
            refusal = await self.admit(session)
        except Exception:
            log.exception("websocket device %s from %s: admission check failed", device_id, address)
            await ws.close(1011, "internal error")
            return
        if refusal:
            log.warning("websocket device %s from %s refused: %s", device_id, address, refusal)
            await ws.close(1008, refusal[:120])
            return
        self.ctx.sessions[session.session_id] = session
        try:
            await session.run()
        finally:
            self.ctx.sessions.pop(session.session_id, None)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self.server = await serve(
            self._handler, host, port,
            process_request=self._process_request,
            max_size=self.ctx.settings.max_frame_bytes,
            max_queue=64,
            ping_interval=20, ping_timeout=20, close_timeout=3,
            server_header=f"xiaozhi-local/{__version__}",
        )
        sockets = list(self.server.sockets)
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self, reason: str = "server shutting down") -> None:
        for session in list(self.ctx.sessions.values()):
            await session.shutdown(1001, reason)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
