"""The device-facing HTTP API: OTA check-version, activation, health (protocol.md §1, §8 items 1-3).

Why aiohttp: the firmware's OTA check is a plain HTTP ``POST`` carrying a JSON body (§1.3), and
so is ``…/activate`` (§1.6). The ``websockets`` package that serves the device channel (§2) only
speaks the GET upgrade handshake and cannot read a request body, so HTTP gets its own small
aiohttp server with real body-size limits.

Routes:

* ``POST /xiaozhi/ota/`` (and without the slash): §1.3 in, §1.4/§1.5 out. The request is read
  tolerantly (:func:`~xiaozhi_local.protocol.ota.parse_ota_request` never raises); only a request
  with no usable device id is refused (400). The reply always has ``server_time``, a ``firmware``
  echoing the device's version (no update) and exactly one transport, ``websocket``, whose URL the
  device can reach (§1.5). ``activation`` comes from the :class:`DeviceGate` (§1.6, §1.7).
* ``GET /xiaozhi/ota/``: a line for a human with the URL to type in the Wi-Fi portal (§1.1).
* ``POST /xiaozhi/ota/activate`` (with or without the slash): 200 admitted, 202 pending (§1.6 3).
* ``GET /health``: :meth:`ServerContext.health`.

Both POST routes are rate-limited per client address (``[limits]``, :mod:`.ratelimit`): past the
limit the answer is 429 with ``Retry-After``, logged once per address per minute.

Every error is JSON ``{"error": "..."}`` with one log line naming the client; an unexpected
exception is a 500 ``{"error": "internal error"}`` (the traceback goes to the log only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, LooseHeaders

from ..config import ServerSettings
from ..errors import ActivationBodyError, XiaozhiError
from ..protocol.ota import (
    ActivateRequest,
    Activation,
    OtaRequest,
    build_ota_reply,
    is_loopback_url,
    parse_activate_body,
    parse_ota_request,
)
from .context import ServerContext
from .lan import is_loopback_address
from .ratelimit import AddressLimits

__all__ = [
    "OTA_PATH",
    "DeviceGate",
    "GateRefusal",
    "HttpServer",
    "OpenGate",
    "OtaDecision",
    "build_http_app",
    "local_tz_offset_min",
    "start_http",
]

log = logging.getLogger(__name__)

OTA_PATH: Final = "/xiaozhi/ota/"
MAX_DEVICE_ID_LEN: Final = 64
_EXAMPLE_MAC: Final = "a0:85:e3:f4:49:34"


@dataclass(frozen=True, slots=True)
class OtaDecision:
    """What the gate says about one OTA check: the WebSocket token and, while the device is not
    yet paired, the ``activation`` block (§1.6, §1.7)."""

    token: str = ""
    activation: Activation | None = None


class GateRefusal(XiaozhiError):
    """A gate refuses to answer an OTA check at all (e.g. too many devices waiting): HTTP
    ``status`` with ``{"error": message}`` and, when given, ``Retry-After``."""

    def __init__(self, status: int, message: str, *, retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class DeviceGate(Protocol):
    """Decides which devices are admitted (§1.7): :class:`~.pairing.DevicePairing` in the server."""

    async def on_ota(self, req: OtaRequest, address: str) -> OtaDecision:
        """Called for every OTA check that carries a valid device id; may raise GateRefusal."""
        ...

    async def on_activate(self, req: OtaRequest, body: ActivateRequest, address: str) -> bool:
        """``POST …/activate`` (``req`` holds the headers): True = admitted (HTTP 200), False =
        pending (HTTP 202)."""
        ...


class OpenGate:
    """Admits every device: no token, never an ``activation`` block (xinnan single-module, §1.7).
    For tests of the HTTP layer itself; the server uses :class:`~.pairing.DevicePairing`."""

    async def on_ota(self, req: OtaRequest, address: str) -> OtaDecision:
        return OtaDecision()

    async def on_activate(self, req: OtaRequest, body: ActivateRequest, address: str) -> bool:
        return True


class _Reject(Exception):
    """A request we refuse on purpose; the middleware turns it into JSON and (unless ``log`` is
    False) one log line."""

    def __init__(self, status: int, message: str, *, headers: LooseHeaders | None = None, log: bool = True):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.log = log


_CTX: Final = web.AppKey("xiaozhi_ctx", ServerContext)
_GATE: Final = web.AppKey[DeviceGate]("xiaozhi_gate")
_LIMITS: Final = web.AppKey("xiaozhi_limits", AddressLimits)


class _QuietMalformed(logging.Filter):
    """aiohttp logs every malformed request (bad header bytes, bad framing) at ERROR with a
    traceback, so one LAN client could fill the log. Instead: one INFO line per client per minute."""

    def __init__(self) -> None:
        super().__init__()
        self.limits = AddressLimits({}, exempt_loopback=False)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        peer = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        if not self.limits.worth_logging("malformed", peer):
            return False
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg = "malformed HTTP request from %s refused with 400: %s (more in the next minute are not logged)"
        record.args = (peer, _short(str(exc.message).splitlines()[0] if exc.message else type(exc).__name__))
        record.exc_info = record.exc_text = None
        return True


def _quiet_malformed_requests() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _QuietMalformed) for f in logger.filters):
        logger.addFilter(_QuietMalformed())


def _rate_limit(request: web.Request, kind: str) -> None:
    """429 with Retry-After once ``request.remote`` is past its ``kind`` rate (logged once a minute)."""
    address = _client(request)
    limit = request.app[_LIMITS].check(kind, address)
    if limit is None:
        return
    if limit.log:
        log.warning("rate limit: %s requests from %s refused with 429 (more in the next minute are not logged)",
                    kind, address)
    raise _Reject(429, f"too many {kind} requests from {address}; retry in {limit.retry_after_s} s",
                  headers={hdrs.RETRY_AFTER: str(limit.retry_after_s)}, log=False)


def local_tz_offset_min() -> int:
    """This machine's current UTC offset in minutes (e.g. 480 for UTC+8)."""
    offset = datetime.now().astimezone().utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def _tz_offset(settings: ServerSettings) -> int:
    configured = settings.timezone_offset_min
    return configured if configured is not None else local_tz_offset_min()


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _check_device_id(device_id: str | None) -> str:
    """A MAC or any printable ASCII id of at most 64 characters (§1.3, §1.7); else 400."""
    if device_id is None:
        raise _Reject(400, "no device id: send a Device-Id header (the device's Wi-Fi MAC, e.g. "
                           f"{_EXAMPLE_MAC}) or a mac_address field in the JSON body")
    if len(device_id) > MAX_DEVICE_ID_LEN or not (device_id.isascii() and device_id.isprintable()):
        raise _Reject(400, f"invalid Device-Id {_short(device_id, 24)!r}: use a MAC address like "
                           f"{_EXAMPLE_MAC} or printable ASCII of at most {MAX_DEVICE_ID_LEN} characters")
    return device_id


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes: a too-large Content-Length is refused before
    reading; a chunked body is cut off by ``client_max_size`` while it is read (413 either way).
    A client that does not send the body it announced within ``[limits] body_timeout_s`` gets
    408 (a slow or stalled body must not hold the connection forever)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    timeout = request.app[_CTX].limits.body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise _Reject(408, f"the request body did not arrive within {timeout:g} s") from None


def _oddities(req: OtaRequest, body: bytes, content_type: str | None) -> list[str]:
    odd: list[str] = []
    if req.body_error:
        odd.append(req.body_error)
    if body.strip():
        if not content_type:
            odd.append("no Content-Type")
        elif "json" not in content_type.lower() and not req.body_error:
            odd.append(f"Content-Type {_short(content_type, 40)!r} (parsed as JSON anyway)")
    elif not req.body_error:
        odd.append("empty body")
    return odd


async def _ota(request: web.Request) -> web.Response:
    """Check-version (§1.3 → §1.4)."""
    ctx = request.app[_CTX]
    gate = request.app[_GATE]
    address = _client(request)
    _rate_limit(request, "ota")
    body = await _read_body(request, ctx.settings.max_body_bytes)
    content_type = request.headers.get(hdrs.CONTENT_TYPE)
    req = parse_ota_request(request.headers, body, content_type, max_body_bytes=ctx.settings.max_body_bytes)
    odd = _oddities(req, body, content_type)
    if odd:
        log.info("OTA request from %s: %s", address, "; ".join(odd))
    device_id = _check_device_id(req.device_id)
    try:
        decision = await gate.on_ota(req, address)
    except GateRefusal as exc:
        retry = {hdrs.RETRY_AFTER: str(exc.retry_after_s)} if exc.retry_after_s is not None else None
        raise _Reject(exc.status, str(exc), headers=retry) from None
    endpoints = ctx.endpoints_for_request(request.headers.get(hdrs.HOST))
    reply = build_ota_reply(
        now_ms=int(time.time() * 1000),
        tz_offset_min=_tz_offset(ctx.settings),
        firmware_version=req.current_version or "0.0.0",
        websocket_url=endpoints.websocket_url,
        token=decision.token,
        protocol_version=ctx.settings.protocol_version or None,
        activation=decision.activation,
    )
    log.info("OTA check from %s: device %s, firmware %s, board %s -> %s%s", address, device_id,
             req.current_version or "?", req.board_type or req.board_name or "?", endpoints.websocket_url,
             " (activation pending)" if decision.activation else "")
    return web.json_response(reply)


async def _ota_page(request: web.Request) -> web.Response:
    """``GET`` on the OTA path: tell a human what to do with it (§1.1)."""
    ctx = request.app[_CTX]
    url = ctx.endpoints_for_request(request.headers.get(hdrs.HOST)).ota_url
    if is_loopback_url(url):  # reached from this box: a device needs the LAN address (§1.5)
        url = ctx.endpoints().ota_url
    text = (
        "This is the xiaozhi-local OTA endpoint. Devices POST their system info here.\n"
        "In the device's Wi-Fi setup portal (advanced options), set the OTA URL to:\n"
        f"\n    {url}\n\n"
        "then save and let the device reboot.\n"
    )
    return web.Response(text=text, content_type="text/plain")


async def _activate(request: web.Request) -> web.Response:
    """``POST …/activate`` (§1.6 item 3): 200 admitted, 202 pending, 400 bad body."""
    ctx = request.app[_CTX]
    gate = request.app[_GATE]
    address = _client(request)
    _rate_limit(request, "activate")
    body = await _read_body(request, ctx.settings.max_body_bytes)
    req = parse_ota_request(request.headers, None)
    device_id = _check_device_id(req.device_id)
    try:
        activate = parse_activate_body(body)
    except ActivationBodyError as exc:
        raise _Reject(exc.http_status, str(exc)) from None
    if await gate.on_activate(req, activate, address):
        log.info("activation of %s from %s: admitted", device_id, address)
        return web.json_response({"status": "activated"})
    log.debug("activation of %s from %s: pending", device_id, address)
    return web.json_response({"status": "pending", "message": "waiting for the pairing to be confirmed"},
                             status=202)


async def _health(request: web.Request) -> web.Response:
    return web.json_response(request.app[_CTX].health())


async def _turns(request: web.Request) -> web.Response:
    """Recent turn timings (``xiaozhi bench`` reads them). Transcripts only for loopback clients."""
    ctx = request.app[_CTX]
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise _Reject(400, "limit must be an integer") from None
    loopback = is_loopback_address(request.remote or "")
    turns = [t.to_dict(with_text=loopback) for t in ctx.turns.recent(max(1, min(limit, 1000)))]
    return web.json_response({"total": ctx.turns.total, "turns": turns})


def _message_for(request: web.Request, exc: web.HTTPException) -> str:
    path = _short(request.path)
    if exc.status == 404:
        return f"no such endpoint {path!r}; devices use POST {OTA_PATH}"
    if exc.status == 405:
        allowed = exc.headers.get(hdrs.ALLOW, "")
        return f"method {request.method} is not allowed on {path!r}" + (f"; use {allowed}" if allowed else "")
    if exc.status == 413:
        limit = request.app[_CTX].settings.max_body_bytes
        return f"request body is larger than {limit} bytes (server.max_body_bytes)"
    return exc.reason or f"HTTP {exc.status}"


def _rejected(request: web.Request, status: int, message: str, headers: LooseHeaders | None = None) -> web.Response:
    log.warning("rejected %s %r from %s: %d %s", request.method, _short(request.path), _client(request),
                status, message)
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes ``{"error": ...}`` JSON: never a traceback to the client."""
    try:
        return await handler(request)
    except _Reject as exc:
        if not exc.log:
            response = web.json_response({"error": exc.message}, status=exc.status, headers=exc.headers)
        else:
            response = _rejected(request, exc.status, exc.message, exc.headers)
        if exc.status == 408:  # the rest of a stalled body must not be waited for
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {hdrs.ALLOW: exc.headers[hdrs.ALLOW]} if hdrs.ALLOW in exc.headers else None
        return _rejected(request, exc.status, _message_for(request, exc), allow)
    except ConnectionError as exc:  # the client went away while we read its body
        log.info("%s %r from %s: connection lost (%s)", request.method, _short(request.path),
                 _client(request), exc)
        return web.json_response({"error": "connection lost"}, status=400)
    except Exception:
        log.exception("internal error on %s %r from %s", request.method, _short(request.path), _client(request))
        return web.json_response({"error": "internal error"}, status=500)


def build_http_app(ctx: ServerContext, devices: DeviceGate) -> web.Application:
    """The aiohttp application; ``devices`` decides who is admitted (no default: pass
    :class:`~.pairing.DevicePairing`, or :class:`OpenGate` in tests of the HTTP layer)."""
    app = web.Application(client_max_size=ctx.settings.max_body_bytes, middlewares=[_errors])
    app[_CTX] = ctx
    app[_GATE] = devices
    limits = ctx.limits
    app[_LIMITS] = AddressLimits({"ota": limits.ota_per_minute, "activate": limits.activate_per_minute},
                                 exempt_loopback=limits.exempt_loopback)
    _quiet_malformed_requests()
    for path in (OTA_PATH, OTA_PATH.rstrip("/")):
        app.router.add_post(path, _ota)
        app.router.add_get(path, _ota_page)
    for path in (OTA_PATH + "activate", OTA_PATH + "activate/"):
        app.router.add_post(path, _activate)
    app.router.add_get("/health", _health)
    app.router.add_get("/turns", _turns)
    return app


@dataclass
class HttpServer:
    """A running HTTP server; ``port`` is the bound port (useful with port 0)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_http(ctx: ServerContext, app: web.Application, host: str | None = None,
                     port: int | None = None) -> HttpServer:
    """Listen on ``host:port`` (defaults: ``server.host`` / ``server.http_port``; port 0 = any)."""
    host = ctx.settings.host if host is None else host
    port = ctx.settings.http_port if port is None else port
    # keepalive_timeout also closes a connection whose request headers never complete (slowloris);
    # lingering_time bounds how long the rest of an unread (refused or stalled) body is drained.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=ctx.limits.idle_http_s,
                           lingering_time=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise XiaozhiError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc}; another "
                           "program may be using the port (change [server] http_port)") from exc
    bound = runner.addresses[0][1] if runner.addresses else port
    server = HttpServer(runner, host, bound)
    log.info("HTTP API on %s (OTA URL for devices: %s)", server.base_url, ctx.endpoints().ota_url)
    return server
