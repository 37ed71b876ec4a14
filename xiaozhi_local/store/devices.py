"""The device registry: which devices may talk to the assistant, and which are waiting to be paired.

Two tables (component ``"devices"``, see :mod:`.db` for migrations):

* ``devices``: one row per device the owner admitted (``state = 'paired'``) or shut out
  (``'revoked'``), keyed by the device id (the Wi-Fi MAC, lower case). It keeps the Client-Id the
  device was paired with, board, firmware, name, first/last seen, last address, the SHA-256 of
  its current (and previous) WebSocket token, and a pairing *generation* that grows with every
  approval. Other components that keep per-device data reference ``devices(id)`` with
  ``ON DELETE CASCADE`` so that :meth:`DeviceRegistry.forget` removes it too.
* ``pairing_requests``: one row per (device id, Client-Id) that asked to be paired and got a
  6-digit code; rows expire (``expires_at``) and are then dropped. A device that is not in
  ``devices`` but has a request is *pending*.

Only hashes of tokens are stored; the plaintext token exists only in the OTA reply that carries
it. Every read-modify-write runs in one ``BEGIN IMMEDIATE`` transaction, so ``xiaozhi serve`` and
``xiaozhi device …`` (separate processes) can change the registry at the same time. Times are
Unix seconds from an injectable clock.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from ..errors import XiaozhiError
from .db import Database, Migration, connect, immediate, register_migrations

__all__ = [
    "DeviceInfo",
    "DeviceRecord",
    "DeviceRegistry",
    "PairingRequest",
    "PendingLimitError",
    "RegistryError",
    "random_challenge",
    "random_code",
]

PAIRED: Final = "paired"
REVOKED: Final = "revoked"
PENDING: Final = "pending"
"""Not a ``devices`` state: a device that has only a pairing request."""

_V1: Final = """
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL DEFAULT '',
    name TEXT,
    state TEXT NOT NULL CHECK (state IN ('paired', 'revoked')),
    board TEXT,
    firmware TEXT,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_address TEXT,
    token_hash TEXT,
    prev_token_hash TEXT,
    generation INTEGER NOT NULL DEFAULT 1,
    paired_at REAL,
    paired_via TEXT,
    revoked_at REAL,
    activation_version TEXT,
    serial_number TEXT
);
CREATE TABLE pairing_requests (
    code TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    client_id TEXT NOT NULL DEFAULT '',
    challenge TEXT NOT NULL,
    board TEXT,
    firmware TEXT,
    address TEXT,
    activation_version TEXT,
    serial_number TEXT,
    hmac TEXT,
    hmac_challenge_ok INTEGER,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    expires_at REAL NOT NULL,
    UNIQUE (device_id, client_id)
);
CREATE INDEX pairing_requests_expires ON pairing_requests (expires_at);
CREATE INDEX pairing_requests_address ON pairing_requests (address)
"""

register_migrations("devices", [Migration(1, "devices and pairing_requests tables", _V1)])


class RegistryError(XiaozhiError):
    """A registry operation the caller asked for cannot be done (unknown device, bad code …)."""


class PendingLimitError(RegistryError):
    """Too many devices are waiting for pairing (in total, or from one address)."""


def random_code() -> str:
    """A uniformly random 6-digit code (leading zeros kept: the device speaks digits)."""
    return f"{secrets.randbelow(1_000_000):06d}"


def random_challenge() -> str:
    """128 random bits as hex: the nonce a v2 device signs with its efuse key (§1.6)."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a device told us about itself on a check-in."""

    client_id: str = ""
    board: str | None = None
    firmware: str | None = None
    activation_version: str | None = None
    serial_number: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: str
    client_id: str
    name: str | None
    state: str
    board: str | None
    firmware: str | None
    first_seen: float
    last_seen: float
    last_address: str | None
    token_hash: str | None
    prev_token_hash: str | None
    generation: int
    paired_at: float | None
    paired_via: str | None
    revoked_at: float | None
    activation_version: str | None
    serial_number: str | None

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``: everything except the token hashes."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.endswith("token_hash")}
        data["has_token"] = self.token_hash is not None
        return data


@dataclass(frozen=True, slots=True)
class PairingRequest:
    code: str
    device_id: str
    client_id: str
    challenge: str
    board: str | None
    firmware: str | None
    address: str | None
    activation_version: str | None
    serial_number: str | None
    hmac: str | None
    hmac_challenge_ok: bool | None
    created_at: float
    last_seen: float
    expires_at: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _device(row: dict[str, Any]) -> DeviceRecord:
    return DeviceRecord(**{f.name: row[f.name] for f in fields(DeviceRecord)})


def _request(row: dict[str, Any]) -> PairingRequest:
    values = {f.name: row[f.name] for f in fields(PairingRequest)}
    ok = values["hmac_challenge_ok"]
    values["hmac_challenge_ok"] = None if ok is None else bool(ok)
    return PairingRequest(**values)


class DeviceRegistry:
    """The registry over one open :class:`~sqlite_utils.Database` (used by one thread at a time)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time,
                 new_code: Callable[[], str] = random_code, new_challenge: Callable[[], str] = random_challenge):
        self.db = db
        self.clock = clock
        self.new_code = new_code
        self.new_challenge = new_challenge

    @classmethod
    def open(cls, path: Path | str, clock: Callable[[], float] = time.time) -> DeviceRegistry:
        """Open (and migrate) the database at ``path``; ``":memory:"`` for a private one."""
        return cls(connect(path), clock)

    def close(self) -> None:
        self.db.close()

    # ---- reads ----------------------------------------------------------------------------
    def get(self, device_id: str) -> DeviceRecord | None:
        rows = list(self.db.query("SELECT * FROM devices WHERE id = ?", [device_id]))
        return _device(rows[0]) if rows else None

    def devices(self) -> list[DeviceRecord]:
        return [_device(r) for r in self.db.query("SELECT * FROM devices ORDER BY first_seen, id")]

    def requests(self) -> list[PairingRequest]:
        """Pairing requests whose code has not expired, oldest first."""
        rows = self.db.query("SELECT * FROM pairing_requests WHERE expires_at > ? ORDER BY created_at, code",
                             [self.clock()])
        return [_request(r) for r in rows]

    def request_for(self, device_id: str, client_id: str) -> PairingRequest | None:
        rows = list(self.db.query(
            "SELECT * FROM pairing_requests WHERE device_id = ? AND client_id = ? AND expires_at > ?",
            [device_id, client_id, self.clock()]))
        return _request(rows[0]) if rows else None

    def states(self, device_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """device id → (state, generation) for those that are in ``devices``."""
        ids = sorted(set(device_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT id, state, generation FROM devices WHERE id IN ({marks})", ids)
        return {row[0]: (row[1], int(row[2])) for row in rows.fetchall()}

    def find(self, text: str) -> list[DeviceRecord]:
        """Devices whose id is ``text`` or, failing that, whose name is ``text`` (any case)."""
        record = self.get(text)
        if record is not None:
            return [record]
        rows = self.db.query("SELECT * FROM devices WHERE lower(name) = lower(?) ORDER BY id", [text])
        return [_device(r) for r in rows]

    # ---- pairing requests -----------------------------------------------------------------
    def open_request(self, device_id: str, info: DeviceInfo, address: str, *, ttl_s: float, max_pending: int,
                     max_per_address: int) -> tuple[PairingRequest, bool]:
        """The live request of (``device_id``, ``info.client_id``), creating one with a fresh code
        when there is none; returns it and whether it is new. Raises :class:`PendingLimitError`
        when creating it would exceed ``max_pending`` or ``max_per_address``."""
        with immediate(self.db):
            now = self.clock()
            self.db.execute("DELETE FROM pairing_requests WHERE expires_at <= ?", [now])
            rows = list(self.db.query("SELECT * FROM pairing_requests WHERE device_id = ? AND client_id = ?",
                                      [device_id, info.client_id]))
            if rows:
                self.db.execute(
                    "UPDATE pairing_requests SET last_seen = ?, address = ?, board = coalesce(?, board),"
                    " firmware = coalesce(?, firmware), activation_version = coalesce(?, activation_version),"
                    " serial_number = coalesce(?, serial_number) WHERE code = ?",
                    [now, address, info.board, info.firmware, info.activation_version, info.serial_number,
                     rows[0]["code"]])
                return self._request_by_code(rows[0]["code"]), False
            total = self.db.execute("SELECT count(*) FROM pairing_requests").fetchone()[0]
            if total >= max_pending:
                raise PendingLimitError(f"{total} devices are already waiting for pairing (pairing.max_pending)")
            mine = self.db.execute("SELECT count(*) FROM pairing_requests WHERE address = ?", [address]).fetchone()[0]
            if mine >= max_per_address:
                raise PendingLimitError(f"{mine} devices from {address} are already waiting for pairing "
                                        "(pairing.max_pending_per_address)")
            code = self._unused_code()
            self.db.execute(
                "INSERT INTO pairing_requests (code, device_id, client_id, challenge, board, firmware, address,"
                " activation_version, serial_number, created_at, last_seen, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [code, device_id, info.client_id, self.new_challenge(), info.board, info.firmware, address,
                 info.activation_version, info.serial_number, now, now, now + ttl_s])
            return self._request_by_code(code), True

    def _unused_code(self) -> str:
        used = {row[0] for row in self.db.execute("SELECT code FROM pairing_requests").fetchall()}
        for _ in range(1000):
            code = self.new_code()
            if code not in used:
                return code
        raise RegistryError("could not find an unused pairing code")

    def _request_by_code(self, code: str) -> PairingRequest:
        return _request(next(iter(self.db.query("SELECT * FROM pairing_requests WHERE code = ?", [code]))))

    def record_activation(self, device_id: str, client_id: str, *, serial_number: str | None,
                          hmac: str | None, challenge: str | None) -> None:
        """Keep what a v2 device sent to ``/activate`` (never used as authentication, see README)."""
        if hmac is None:
            return
        with immediate(self.db):
            rows = list(self.db.query("SELECT code, challenge FROM pairing_requests WHERE device_id = ? AND "
                                      "client_id = ?", [device_id, client_id]))
            if rows:
                self.db.execute(
                    "UPDATE pairing_requests SET hmac = ?, hmac_challenge_ok = ?,"
                    " serial_number = coalesce(?, serial_number) WHERE code = ?",
                    [hmac, int(challenge == rows[0]["challenge"]), serial_number, rows[0]["code"]])

    def approve(self, code: str) -> DeviceRecord:
        """Pair the device waiting with ``code``: it becomes (or stays) ``paired`` with the requesting
        Client-Id, its old tokens stop working and its generation grows (re-pairing rotates)."""
        with immediate(self.db):
            now = self.clock()
            rows = list(self.db.query("SELECT * FROM pairing_requests WHERE code = ? AND expires_at > ?",
                                      [code, now]))
            if not rows:
                raise RegistryError(f"no device is waiting with code {code} (codes expire; the device shows a "
                                    "new one on its next check-in: see `xiaozhi device list`)")
            req = _request(rows[0])
            values = [req.client_id, req.board, req.firmware, now, req.address, now, req.activation_version,
                      req.serial_number]
            if self.get(req.device_id) is None:
                self.db.execute(
                    "INSERT INTO devices (client_id, board, firmware, last_seen, last_address, paired_at,"
                    " activation_version, serial_number, id, state, first_seen, generation, paired_via)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'paired', ?, 1, 'code')",
                    [*values, req.device_id, req.created_at])
            else:
                self.db.execute(
                    "UPDATE devices SET client_id = ?, board = coalesce(?, board), firmware = coalesce(?, firmware),"
                    " last_seen = ?, last_address = ?, paired_at = ?,"
                    " activation_version = coalesce(?, activation_version),"
                    " serial_number = coalesce(?, serial_number), state = 'paired', token_hash = NULL,"
                    " prev_token_hash = NULL, generation = generation + 1, paired_via = 'code', revoked_at = NULL"
                    " WHERE id = ?", [*values, req.device_id])
            self.db.execute("DELETE FROM pairing_requests WHERE device_id = ?", [req.device_id])
        record = self.get(req.device_id)
        assert record is not None
        return record

    # ---- admitted devices -----------------------------------------------------------------
    def admit_open(self, device_id: str, info: DeviceInfo, address: str) -> DeviceRecord:
        """Open mode: record ``device_id`` as paired (``paired_via = 'open'``) unless it is known;
        a revoked device stays revoked."""
        with immediate(self.db):
            now = self.clock()
            if self.get(device_id) is None:
                self.db.execute(
                    "INSERT INTO devices (id, client_id, state, board, firmware, first_seen, last_seen, last_address,"
                    " generation, paired_at, paired_via, activation_version, serial_number)"
                    " VALUES (?, ?, 'paired', ?, ?, ?, ?, ?, 1, ?, 'open', ?, ?)",
                    [device_id, info.client_id, info.board, info.firmware, now, now, address, now,
                     info.activation_version, info.serial_number])
        record = self.get(device_id)
        assert record is not None
        return record

    def issue_token(self, device_id: str, token_hash: str, info: DeviceInfo, address: str, *,
                    require_client_id: bool = True) -> bool:
        """Store the hash of the token an OTA reply is about to carry; False (nothing stored) when
        the device is not paired, or, with ``require_client_id``, no longer paired with
        ``info.client_id`` (e.g. re-paired meanwhile). Without it (open mode) the Client-Id is
        updated. The previous token stays valid until the new one is first used (a lost reply
        must not lock the device out)."""
        condition = " AND client_id = ?" if require_client_id else ""
        cursor = self.db.execute(
            "UPDATE devices SET prev_token_hash = token_hash, token_hash = ?, client_id = ?, last_seen = ?,"
            " last_address = ?, board = coalesce(?, board), firmware = coalesce(?, firmware),"
            " activation_version = coalesce(?, activation_version), serial_number = coalesce(?, serial_number)"
            f" WHERE id = ? AND state = 'paired'{condition}",
            [token_hash, info.client_id, self.clock(), address, info.board, info.firmware, info.activation_version,
             info.serial_number, device_id, *([info.client_id] if require_client_id else [])])
        return cursor.rowcount == 1

    def note_connect(self, device_id: str, address: str, *, retire_previous_token: bool) -> None:
        """A session was admitted: last seen/address; once the newest token is in use the previous one
        is retired."""
        retire = ", prev_token_hash = NULL" if retire_previous_token else ""
        self.db.execute(f"UPDATE devices SET last_seen = ?, last_address = ?{retire} WHERE id = ?",
                        [self.clock(), address, device_id])

    def rename(self, device_id: str, name: str | None) -> DeviceRecord:
        cursor = self.db.execute("UPDATE devices SET name = ? WHERE id = ?", [name, device_id])
        if cursor.rowcount != 1:
            raise RegistryError(f"no paired or revoked device {device_id} (see `xiaozhi device list`)")
        record = self.get(device_id)
        assert record is not None
        return record

    def revoke(self, device_id: str) -> DeviceRecord:
        """Shut the device out: its tokens stop working and a running server closes its sessions."""
        cursor = self.db.execute(
            "UPDATE devices SET state = 'revoked', revoked_at = ?, token_hash = NULL, prev_token_hash = NULL"
            " WHERE id = ?", [self.clock(), device_id])
        if cursor.rowcount != 1:
            raise RegistryError(f"no paired device {device_id} (see `xiaozhi device list`)")
        record = self.get(device_id)
        assert record is not None
        return record

    def forget(self, device_id: str) -> tuple[bool, int]:
        """Remove the device, its pairing requests and (by cascade) every row other components keep
        for it. Returns (a device row was removed, pairing requests removed)."""
        with immediate(self.db):
            requests = self.db.execute("DELETE FROM pairing_requests WHERE device_id = ?", [device_id]).rowcount
            removed = self.db.execute("DELETE FROM devices WHERE id = ?", [device_id]).rowcount
        return removed == 1, requests

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM pairing_requests WHERE expires_at > ?",
                                   [self.clock()]).fetchone()[0])
