"""`xiaozhi memory`: show, forget and export what the assistant remembers.

Facts belong to an enrolled speaker (by name) or, for voices nobody enrolled, to a device. The
commands open the shared database directly, so they work while `xiaozhi serve` runs; a forgotten
fact is gone from the very next turn's prompt.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from ..errors import XiaozhiError
from ..memory.audio import AudioKeeper
from ..server.pairing_rules import normalize_device_id
from ..store.devices import DeviceRegistry
from ..store.memory import Fact, MemoryStore, Owner
from .common import JSON_OPTION, err, guarded, out, print_json, state

app = typer.Typer(help="What the assistant remembers about each speaker and device: show, forget, export.",
                  no_args_is_help=True)


@contextmanager
def _store(ctx: typer.Context) -> Iterator[MemoryStore]:
    store = MemoryStore.open(state(ctx).config.db_path)
    try:
        yield store
    finally:
        store.close()


def _device_id(store: MemoryStore, text: str) -> str:
    """A device by MAC (any notation) or by its name in the device registry."""
    found = DeviceRegistry(store.db).find(normalize_device_id(text))
    if len(found) > 1:
        raise XiaozhiError(f"{len(found)} devices are named {text!r}; use the device id (MAC) instead")
    return found[0].id if found else normalize_device_id(text)


def _owner(store: MemoryStore, speaker: str | None, device: str | None) -> Owner | None:
    if speaker and device:
        raise XiaozhiError("give --speaker or --device, not both")
    if speaker:
        voiceprint = store.voiceprint(speaker)
        return Owner("speaker", voiceprint.name if voiceprint else speaker)
    return Owner("device", _device_id(store, device)) if device else None


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@app.command()
@guarded
def show(
    ctx: typer.Context,
    speaker: str = typer.Option(None, "--speaker", help="Only what is remembered about this enrolled person."),
    device: str = typer.Option(None, "--device", help="Only what is remembered from unknown voices on this device "
                                                      "(id or name)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the remembered facts (newest first), with their ids for `memory forget ID`."""
    with _store(ctx) as store:
        owner = _owner(store, speaker, device)
        facts = store.facts(owner)
        counts = store.counts()
    if as_json:
        print_json({"memories": [f.to_dict() for f in facts], "counts": counts})
        return
    if not facts:
        who = f" about {owner}" if owner else ""
        err.print(f"Nothing remembered{who}.", highlight=False)
    else:
        table = Table()
        for column in ("id", "owner", "fact", "updated", "learnt in"):
            table.add_column(column, overflow="fold")
        for f in facts:
            source = f"conversation {f.source_conversation_id}" if f.source_conversation_id else "-"
            table.add_row(str(f.id), f"{f.owner_kind} {f.owner_id}", f.fact, _when(f.updated_at), source)
        out.print(table)
    err.print(f"stored: {counts['conversations']} conversation(s), {counts['messages']} message(s), "
              f"{counts['memories']} fact(s), {counts['voiceprints']} voiceprint(s) in {state(ctx).config.db_path}",
              highlight=False)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise XiaozhiError("forgetting needs confirmation: add --yes")
    if not typer.confirm(question, default=False, err=True):
        err.print("nothing changed")
        raise typer.Exit(1)


@app.command()
@guarded
def forget(
    ctx: typer.Context,
    fact_id: int = typer.Argument(None, help="The id of one fact (see `xiaozhi memory show`)."),
    speaker: str = typer.Option(None, "--speaker", help="Everything learnt about this person (their voiceprint "
                                                        "stays: `xiaozhi voice rm`)."),
    device: str = typer.Option(None, "--device", help="The device's facts and all its conversations."),
    everything: bool = typer.Option(False, "--all", help="Every fact and every conversation (voiceprints stay)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Forget one fact, a person, a device, or everything (asks first unless --yes)."""
    targets = [fact_id is not None, bool(speaker), bool(device), everything]
    if sum(targets) != 1:
        raise XiaozhiError("say what to forget: a fact ID, --speaker NAME, --device ID or --all")
    config = state(ctx).config
    with _store(ctx) as store:
        if fact_id is not None:
            fact: Fact | None = store.fact(fact_id)
            if fact is None:
                raise XiaozhiError(f"no fact with id {fact_id} (see `xiaozhi memory show`)")
            _confirm(f"Forget fact {fact_id} of {fact.owner_kind} {fact.owner_id}: {fact.fact!r}?", yes)
            store.forget_fact(fact_id)
            message = f"forgot fact {fact_id}"
        elif everything:
            _confirm("Forget every fact and every conversation?", yes)
            facts, conversations = store.forget_everything()
            message = f"forgot {facts} fact(s) and {conversations} conversation(s)"
        elif speaker:
            owner = _owner(store, speaker, None)
            assert owner is not None
            _confirm(f"Forget everything learnt about {owner.id} (facts and the turns they said)?", yes)
            facts, messages = store.forget_owner(owner)
            message = f"forgot {facts} fact(s) and {messages} message(s) of {owner.id}"
        else:
            device_id = _device_id(store, device)
            _confirm(f"Forget the facts and every conversation of device {device_id}?", yes)
            facts, conversations = store.forget_device(device_id)
            message = f"forgot {facts} fact(s) and {conversations} conversation(s) of device {device_id}"
        if config.settings.memory.keep_audio:
            AudioKeeper(config.data_dir / "utterances", config.settings.memory.audio_retention_days,
                        orphan_grace_s=0).sweep(store)
    err.print(message, highlight=False)


@app.command()
@guarded
def export(
    ctx: typer.Context,
    out_file: Path = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout.", dir_okay=False),
) -> None:
    """Export everything stored as JSON: facts, conversations with their messages, voiceprint metadata."""
    with _store(ctx) as store:
        data = store.export()
    if out_file is None:
        print_json(data)
        return
    out_file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    err.print(f"wrote {len(data['memories'])} fact(s), {len(data['conversations'])} conversation(s) and "
              f"{len(data['voiceprints'])} voiceprint(s) to {out_file}", highlight=False)
