"""`xiaozhi device pair|list|revoke|rename|forget`: the owner's side of pairing.

Each command opens the shared SQLite registry directly, so it works while `xiaozhi serve` runs
(the server reads the same database: a paired device is admitted on its next check-in, a revoked
one loses its live sessions within about a second).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.prompt import Prompt
from rich.table import Table
from rich.text import Text

from ..errors import XiaozhiError
from ..server.pairing_rules import normalize_device_id
from ..store.devices import PENDING, DeviceRecord, DeviceRegistry, PairingRequest
from .common import JSON_OPTION, err, guarded, out, print_json, state

__all__ = ["forget", "list_devices", "pair", "rename", "revoke"]

_CODE = re.compile(r"\d{6}")
MAX_NAME = 40
POLL_S = 1.0


@contextmanager
def _registry(ctx: typer.Context) -> Iterator[DeviceRegistry]:
    registry = DeviceRegistry.open(state(ctx).config.db_path)
    try:
        yield registry
    finally:
        registry.close()


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    seconds = max(0.0, now - ts)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def _left(ts: float, now: float) -> str:
    seconds = max(0.0, ts - now)
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _request_note(registry: DeviceRegistry, req: PairingRequest) -> str:
    record = registry.get(req.device_id)
    notes = []
    if record is not None:
        label = f"{record.name!r}" if record.name else "this device"
        notes.append(f"{label} is {record.state}; approving pairs this (new) identity"
                     if record.state != "revoked" else "revoked earlier; approving pairs it again")
    if req.hmac is not None:
        notes.append(f"serial {req.serial_number or '?'} (HMAC recorded, not verified)")
    return "; ".join(notes)


def _requests_table(registry: DeviceRegistry, requests: list[PairingRequest], *, numbered: bool) -> Table:
    now = registry.clock()
    table = Table(title=None, show_lines=False)
    if numbered:
        table.add_column("#", justify="right")
    table.add_column("code", no_wrap=True)
    table.add_column("device", no_wrap=True)
    for column in ("board", "address", "asked", "expires in", "note"):
        table.add_column(column)
    for i, req in enumerate(requests, start=1):
        row = [req.code, req.device_id, _board(req.board, req.firmware), req.address or "?",
               _ago(req.created_at, now), _left(req.expires_at, now), _request_note(registry, req)]
        table.add_row(*([str(i)] if numbered else []), *row)
    return table


def _approved(record: DeviceRecord, as_json: bool) -> None:
    if as_json:
        print_json(record.to_dict())
        return
    err.print(f"[bold green]paired[/] {record.id} ({record.board or 'unknown board'}, firmware "
              f"{record.firmware or '?'}) from {record.last_address or '?'}", highlight=False)
    err.print("It is admitted on its next check-in: a device showing its code retries every few seconds.",
              highlight=False)


def _waiting_view(requests: list[PairingRequest], registry: DeviceRegistry, waited: float) -> RenderableType:
    head = Text(f"Waiting for devices to ask for pairing ({waited:.0f} s; Ctrl-C to stop). A new device "
                "shows and speaks a 6-digit code after it checks in with this server.")
    return Group(head, _requests_table(registry, requests, numbered=False)) if requests else head


def _wait_for_requests(registry: DeviceRegistry, timeout: float | None) -> list[PairingRequest]:
    start = time.monotonic()
    requests = registry.requests()
    if requests:
        return requests
    with Live(_waiting_view([], registry, 0), console=err, transient=True, refresh_per_second=4) as live:
        while not requests:
            waited = time.monotonic() - start
            if timeout is not None and waited >= timeout:
                raise XiaozhiError(f"no device asked to be paired within {timeout:g} s. Is the device pointed at "
                                   "this server's OTA URL, and is `xiaozhi serve` running?")
            time.sleep(POLL_S)
            requests = registry.requests()
            live.update(_waiting_view(requests, registry, time.monotonic() - start))
    return requests


def _choose(registry: DeviceRegistry, timeout: float | None) -> PairingRequest | None:
    """Interactive choice among the waiting devices; None = the owner quit."""
    requests = _wait_for_requests(registry, timeout)
    while True:
        out.print(_requests_table(registry, requests, numbered=True))
        answer = Prompt.ask(f"Approve which device? [bold]1-{len(requests)}[/] or its code, "
                            "[bold]r[/] to look again, [bold]q[/] to quit", console=err).strip().lower()
        if answer in ("q", "quit"):
            return None
        if answer in ("r", ""):
            requests = _wait_for_requests(registry, timeout)
            continue
        by_code = [r for r in requests if r.code == answer]
        if by_code:
            return by_code[0]
        if answer.isdigit() and 1 <= int(answer) <= len(requests):
            return requests[int(answer) - 1]
        err.print(f"[yellow]{answer!r} is not one of the choices[/]", highlight=False)


@guarded
def pair(
    ctx: typer.Context,
    code: str = typer.Argument(None, help="The 6-digit code the device shows and speaks. Without it: wait for "
                                          "devices and choose one."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Without CODE: approve the only waiting device without "
                                                        "asking (an error when several are waiting)."),
    timeout: float = typer.Option(None, "--timeout", min=0, help="Without CODE: give up after this many seconds "
                                                                 "if no device asks (default: wait until Ctrl-C)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Approve a device that asks to be paired, so that it may talk to the assistant.

    A device the server does not know gets a 6-digit code when it checks in; it shows the code and speaks the digits.

    `xiaozhi device pair 123456` approves that device; `xiaozhi device pair` waits for devices to appear and lets you pick one. Both work while `xiaozhi serve` runs, and print the device's MAC, board and address.

    Pairing a device again (e.g. after its settings were erased) gives it a new token; the old one stops working.
    """  # noqa: E501
    with _registry(ctx) as registry:
        if code is not None:
            digits = re.sub(r"[\s-]", "", code)
            if not _CODE.fullmatch(digits):
                raise XiaozhiError(f"{code!r} is not a pairing code: codes are 6 digits, e.g. 123456 (see "
                                   "`xiaozhi device list` for the devices waiting)")
            _approved(registry.approve(digits), as_json)
            return
        if not yes and not sys.stdin.isatty():
            raise XiaozhiError("no terminal to ask on: give the CODE (`xiaozhi device pair 123456`) or --yes")
        try:
            if yes:
                requests = _wait_for_requests(registry, timeout)
                if len(requests) > 1:
                    codes = ", ".join(f"{r.code} ({r.device_id} from {r.address or '?'})" for r in requests)
                    raise XiaozhiError(f"{len(requests)} devices are waiting: {codes}; approve one with "
                                       "`xiaozhi device pair CODE`")
                chosen: PairingRequest | None = requests[0]
            else:
                chosen = _choose(registry, timeout)
        except KeyboardInterrupt:
            err.print("stopped; nothing approved")
            raise typer.Exit(130) from None
        if chosen is None:
            err.print("nothing approved")
            raise typer.Exit(1)
        _approved(registry.approve(chosen.code), as_json)


def _board(board: str | None, firmware: str | None) -> str:
    return f"{board or '?'} {firmware or ''}".strip()


def _device_row(record: DeviceRecord, now: float) -> list[str]:
    via = {"code": "by code", "open": "open mode"}.get(record.paired_via or "", "")
    return [record.id, record.name or "", record.state, _board(record.board, record.firmware),
            _ago(record.last_seen, now), record.last_address or "?", via]


@guarded
def list_devices(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List paired and revoked devices and those waiting for pairing (with their codes)."""
    with _registry(ctx) as registry:
        devices, requests, now = registry.devices(), registry.requests(), registry.clock()
        if as_json:
            print_json({"devices": [d.to_dict() for d in devices], "pending": [r.to_dict() for r in requests]})
            return
        if not devices and not requests:
            err.print("No devices yet. Point a device at the OTA URL `xiaozhi serve` prints; it then shows a "
                      "code to approve with `xiaozhi device pair CODE`.", highlight=False)
            return
        table = Table()
        table.add_column("device", no_wrap=True)
        for column in ("name", "state", "board", "last seen", "address", "note"):
            table.add_column(column)
        for record in devices:
            style = "red" if record.state == "revoked" else None
            table.add_row(*_device_row(record, now), style=style)
        for req in requests:
            note = "; ".join(n for n in (f"code {req.code} ({_left(req.expires_at, now)} left)",
                                         _request_note(registry, req)) if n)
            table.add_row(req.device_id, "", PENDING, _board(req.board, req.firmware), _ago(req.last_seen, now),
                          req.address or "?", note, style="yellow")
        out.print(table)


def _resolve(registry: DeviceRegistry, text: str) -> DeviceRecord:
    """A device by MAC (any notation) or by name; a clear error otherwise."""
    found = registry.find(normalize_device_id(text))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise XiaozhiError(f"{len(found)} devices are named {text!r}; use the device id (MAC) instead")
    waiting = [r for r in registry.requests() if r.device_id == normalize_device_id(text)]
    if waiting:
        raise XiaozhiError(f"device {waiting[0].device_id} is waiting for pairing (code {waiting[0].code}), not "
                           f"paired yet: `xiaozhi device pair {waiting[0].code}` approves it")
    raise XiaozhiError(f"no device {text!r} (see `xiaozhi device list`)")


def _label(record: DeviceRecord) -> str:
    return f"{record.id} ({record.name})" if record.name else record.id


@guarded
def revoke(ctx: typer.Context, device: str = typer.Argument(..., help="Device id (MAC) or name."),
           as_json: bool = JSON_OPTION) -> None:
    """Shut a device out: its token stops working and a running server closes its sessions at once.

    On its next check-in the device gets a new pairing code; `xiaozhi device pair` can admit it again.
    """
    with _registry(ctx) as registry:
        record = _resolve(registry, device)
        already = record.state == "revoked"
        record = registry.revoke(record.id)
        if as_json:
            print_json(record.to_dict())
        elif already:
            err.print(f"{_label(record)} was already revoked", highlight=False)
        else:
            err.print(f"[bold]revoked[/] {_label(record)}; a running `xiaozhi serve` closes its sessions within "
                      "a second", highlight=False)


@guarded
def rename(ctx: typer.Context, device: str = typer.Argument(..., help="Device id (MAC) or current name."),
           name: str = typer.Argument(..., help=f"The new name (at most {MAX_NAME} characters).")) -> None:
    """Give a device a name to recognise it by (in `xiaozhi device list`, and instead of its MAC)."""
    clean = " ".join(name.split())
    if not clean or len(clean) > MAX_NAME or not clean.isprintable():
        raise XiaozhiError(f"a name is 1 to {MAX_NAME} printable characters, got {name!r}")
    with _registry(ctx) as registry:
        record = _resolve(registry, device)
        others = [r for r in registry.find(clean) if r.id != record.id]
        if others:
            raise XiaozhiError(f"{others[0].id} is already named {clean!r}")
        record = registry.rename(record.id, clean)
        err.print(f"{record.id} is now called {clean!r}", highlight=False)


@guarded
def forget(ctx: typer.Context, device: str = typer.Argument(..., help="Device id (MAC) or name."),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Remove a device and everything stored for it (its pairing, name, and any data kept per device).

    Its live sessions end at once. If it checks in again, it is a new device that must be paired.
    """
    with _registry(ctx) as registry:
        key = normalize_device_id(device)
        found = registry.find(key)
        if len(found) > 1:
            raise XiaozhiError(f"{len(found)} devices are named {device!r}; use the device id (MAC) instead")
        target = found[0].id if found else key
        if not found and not any(r.device_id == key for r in registry.requests()):
            raise XiaozhiError(f"no device {device!r} (see `xiaozhi device list`)")
        label = _label(found[0]) if found else target
        if not yes:
            if not sys.stdin.isatty():
                raise XiaozhiError("forgetting a device needs confirmation: add --yes")
            if not typer.confirm(f"Forget {label} and everything stored for it?", default=False, err=True):
                err.print("nothing changed")
                raise typer.Exit(1)
        removed, requests = registry.forget(target)
        what: list[str] = []
        if removed:
            what.append("the device")
        if requests:
            what.append(f"{requests} pairing request(s)")
        err.print(f"forgot {label}: removed {' and '.join(what) or 'nothing'}", highlight=False)
