"""Pairing, the server side: the :class:`DeviceGate` of the HTTP API, the WebSocket ``admit`` hook
and the watcher that ends sessions of revoked devices. The decisions are in :mod:`.pairing_rules`
(pure); this module reads and writes the registry and logs.

The registry is SQLite (:mod:`xiaozhi_local.store.devices`); every call runs on one dedicated
worker thread, so a slow disk never stalls the event loop (and audio pacing with it).

**How a revocation reaches live sessions.** ``xiaozhi device revoke`` is another process: it only
changes the shared database. While sessions are open, :meth:`DevicePairing.watch` looks up the
state of their devices once a second (one indexed query for at most ``max_sessions`` ids) and
closes a session whose device was revoked ("device revoked"), forgotten ("device removed") or
paired again since it was admitted, with close code 1008. So a revocation takes effect within
about a second, needs no port or credential for the CLI, and works whatever address the server
listens on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Protocol, TypeVar

from ..config import AppConfig, PairingSettings
from ..protocol.ota import ActivateRequest, Activation, OtaRequest
from ..store.devices import REVOKED, DeviceInfo, DeviceRecord, DeviceRegistry, PairingRequest, PendingLimitError
from .context import LiveSession
from .http_api import GateRefusal, OtaDecision
from .pairing_rules import (
    Mode,
    OtaVerdict,
    activation_admitted,
    clean_text,
    new_token,
    normalize_client_id,
    normalize_device_id,
    ota_verdict,
    revoked_reason,
    session_refusal,
    token_hash,
    token_slot,
)
from .ratelimit import is_loopback

__all__ = ["OPEN_MODE_WARNING", "Candidate", "DevicePairing"]

log = logging.getLogger(__name__)

T = TypeVar("T")

POLICY_VIOLATION: Final = 1008
PENDING_RETRY_S: Final = 60
OPEN_MODE_WARNING: Final = (
    "pairing is OFF (open mode): any device on the network can use the assistant; "
    "use it only on a trusted LAN ([pairing] mode = \"paired\" turns it back on)"
)


class Candidate(Protocol):
    """What the admit hook needs of a WebSocket session that is not running yet."""

    session_id: str
    device_id: str
    client_id: str | None
    token: str | None
    address: str


def _info(req: OtaRequest) -> DeviceInfo:
    return DeviceInfo(client_id=normalize_client_id(req.client_id),
                      board=clean_text(req.board_type or req.board_name), firmware=clean_text(req.current_version, 32),
                      activation_version=clean_text(req.activation_version, 32),
                      serial_number=clean_text(req.serial_number, 64))


class DevicePairing:
    """Default-deny admission backed by the device registry (``mode = "open"`` admits everyone)."""

    def __init__(self, registry: DeviceRegistry, settings: PairingSettings | None = None, *,
                 poll_interval_s: float = 1.0, exempt_loopback: bool = True):
        self.registry = registry
        self.settings = settings or PairingSettings()
        self.poll_interval_s = poll_interval_s
        self.exempt_loopback = exempt_loopback  # no per-address pending limit for clients on this machine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xiaozhi-db")
        self._admitted: dict[str, int] = {}  # session id -> pairing generation at admission
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: AppConfig, *, force_open: bool = False) -> DevicePairing:
        """The registry in the configured database; ``force_open`` is ``serve --open``."""
        settings = config.settings.pairing
        if force_open:
            settings = settings.model_copy(update={"mode": "open"})
        return cls(DeviceRegistry.open(config.db_path), settings,
                   exempt_loopback=config.settings.limits.exempt_loopback)

    @classmethod
    def in_memory(cls, settings: PairingSettings | None = None) -> DevicePairing:
        """A private, empty registry (tests, embedding): nothing is paired until told so."""
        return cls(DeviceRegistry.open(":memory:"), settings)

    @property
    def mode(self) -> Mode:
        return self.settings.mode

    async def _db(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # ---- HTTP: OTA check-in and activation (protocol.md §1.6, §1.7) -----------------------
    async def on_ota(self, req: OtaRequest, address: str) -> OtaDecision:
        assert req.device_id is not None
        device_id = normalize_device_id(req.device_id)
        info = _info(req)
        record = await self._db(self.registry.get, device_id)
        verdict = ota_verdict(record, info.client_id, self.mode)
        if verdict is OtaVerdict.RECORD_AND_TOKEN:
            record = await self._db(self.registry.admit_open, device_id, info, address)
            log.info("open mode: device %s (%s) from %s admitted without pairing", device_id,
                     info.board or "?", address)
            verdict = OtaVerdict.TOKEN if record.state != REVOKED else OtaVerdict.PAIRING_CODE
        if verdict is OtaVerdict.TOKEN:
            token = new_token()
            if await self._db(self.registry.issue_token, device_id, token_hash(token), info, address,
                              require_client_id=self.mode == "paired"):
                return OtaDecision(token=token)
            record = await self._db(self.registry.get, device_id)  # revoked or re-paired meanwhile
        return OtaDecision(activation=await self._pairing_code(device_id, info, address, record is not None
                                                               and record.state == REVOKED))

    async def _pairing_code(self, device_id: str, info: DeviceInfo, address: str, revoked: bool) -> Activation:
        settings = self.settings
        per_address = settings.max_pending_per_address
        if self.exempt_loopback and is_loopback(address):
            per_address = settings.max_pending
        try:
            request, new = await self._db(self.registry.open_request, device_id, info, address,
                                          ttl_s=settings.code_ttl_s, max_pending=settings.max_pending,
                                          max_per_address=per_address)
        except PendingLimitError as exc:
            raise GateRefusal(429, f"too many devices are waiting for pairing: {exc}; pair or wait for their "
                                   "codes to expire", retry_after_s=PENDING_RETRY_S) from None
        if new:
            known = " (revoked earlier)" if revoked else ""
            log.warning("device %s%s (%s, firmware %s) from %s wants to be paired: code %s; approve it with "
                        "`xiaozhi device pair %s`", device_id, known, info.board or "?", info.firmware or "?",
                        address, request.code, request.code)
        remaining_ms = max(0, int((request.expires_at - self.registry.clock()) * 1000))
        return Activation(code=request.code, challenge=request.challenge,
                          message=f"Pair on the server:\nxiaozhi device pair {request.code}", timeout_ms=remaining_ms)

    async def on_activate(self, req: OtaRequest, body: ActivateRequest, address: str) -> bool:
        assert req.device_id is not None
        device_id = normalize_device_id(req.device_id)
        client_id = normalize_client_id(req.client_id)
        if body.is_v2:  # recorded for the owner; never authentication (see the README)
            await self._db(self.registry.record_activation, device_id, client_id,
                           serial_number=clean_text(body.serial_number, 64), hmac=body.hmac,
                           challenge=clean_text(body.challenge, 128))
        record = await self._db(self.registry.get, device_id)
        return activation_admitted(record, client_id, self.mode)

    # ---- WebSocket admission (§2.1) -------------------------------------------------------
    async def admit(self, session: Candidate) -> str | None:
        """The close reason for a session that may not run, or None (it is then watched)."""
        device_id = normalize_device_id(session.device_id)
        record = await self._db(self.registry.get, device_id)
        if record is None and self.mode == "open":
            record = await self._db(self.registry.admit_open, device_id,
                                    DeviceInfo(client_id=normalize_client_id(session.client_id)), session.address)
            log.info("open mode: device %s from %s admitted without pairing", device_id, session.address)
        refusal = session_refusal(record, session.token, self.mode)
        if refusal is not None:
            return refusal
        assert record is not None
        slot = token_slot(record, session.token)
        await self._db(self.registry.note_connect, device_id, session.address,
                       retire_previous_token=slot == "current")
        self._admitted[session.session_id] = record.generation
        return None

    # ---- the owner's side, in process (the CLI uses the registry directly) -----------------
    async def approve(self, code: str) -> DeviceRecord:
        """Pair the device waiting with ``code`` (what ``xiaozhi device pair CODE`` does)."""
        return await self._db(self.registry.approve, code)

    async def pending(self) -> list[PairingRequest]:
        return await self._db(self.registry.requests)

    async def revoke(self, device_id: str) -> DeviceRecord:
        return await self._db(self.registry.revoke, normalize_device_id(device_id))

    # ---- revocation of live sessions ------------------------------------------------------
    async def check_sessions(self, sessions: Mapping[str, LiveSession]) -> list[str]:
        """One pass of the watcher: close every admitted session whose device lost its right to
        talk; returns their session ids."""
        live = dict(sessions)
        for session_id in [s for s in self._admitted if s not in live]:
            del self._admitted[session_id]
        watched = {sid: s for sid, s in live.items() if sid in self._admitted}
        if not watched:
            return []
        keys = {sid: normalize_device_id(s.device_id) for sid, s in watched.items()}
        states = await self._db(self.registry.states, keys.values())
        closed: list[str] = []
        for sid, session in watched.items():
            reason = revoked_reason(self._admitted.get(sid), states.get(keys[sid]), self.mode)
            if reason is None:
                continue
            log.warning("closing session %s of device %s from %s: %s", sid[:8], session.device_id,
                        session.address, reason)
            self._admitted.pop(sid, None)
            closed.append(sid)
            try:
                await session.shutdown(POLICY_VIOLATION, reason)
            except Exception:  # the socket may already be gone
                log.debug("session %s: close failed", sid[:8], exc_info=True)
        return closed

    async def watch(self, sessions: Mapping[str, LiveSession]) -> None:
        """Run :meth:`check_sessions` every ``poll_interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.check_sessions(sessions)
            except Exception:
                log.exception("checking live sessions against the device registry failed")

    def start(self, sessions: Mapping[str, LiveSession]) -> None:
        if self.mode == "open":
            log.warning(OPEN_MODE_WARNING)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self.watch(sessions), name="pairing-watch")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        await self._db(self.registry.close)
        self._executor.shutdown(wait=True)
