"""Drive the benchmark turns through the simulator and collect what the server measured.

``concurrency`` simulated devices (distinct MACs) take turns from a shared list; each turn is
one short session (OTA → hello → one question → the reply → close) so that every turn can ask
a different question (the simulator sends the same speech on every turn of a session). Warm-up
turns run first, one at a time, and are left out of the figures. While the measured turns run,
the server process is sampled every ``sample_interval_s`` and its ``/turns`` log is read, so
turns are not lost when the server's ring of recent turns is smaller than the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import PairingRequiredError, XiaozhiError
from ..protocol.types import ListenMode
from ..sim.identity import DeviceIdentity
from ..sim.microphone import Frame, load_speech, split_frames
from ..sim.report import SessionResult
from ..sim.runner import SessionOptions, run_session
from .server import Sample, Sampler, ServerUrls, fetch_health, fetch_turns
from .utterances import SpokenUtterance

__all__ = ["PAIRING_HINT", "BenchOptions", "BenchRun", "TurnRecord", "run_bench"]


@dataclass(frozen=True, slots=True)
class BenchOptions:
    turns: int = 20
    warmup: int = 1
    concurrency: int = 1
    mode: ListenMode = ListenMode.AUTO
    reply_timeout_s: float = 120.0
    sample_interval_s: float = 0.5
    turns_poll_s: float = 5.0


@dataclass(slots=True)
class TurnRecord:
    """One turn as the device saw it (``result``) and as the server logged it (``server``)."""

    index: int
    device: int
    warmup: bool
    spoken: SpokenUtterance
    result: SessionResult
    server: dict[str, Any] | None = None


@dataclass(slots=True)
class BenchRun:
    records: list[TurnRecord]
    samples: list[Sample]
    health: dict[str, Any]
    wall_s: float
    server_turns_seen: int
    """Turns the server logged during the run (``/turns`` total after − before); −1 if unknown."""
    turns_endpoint: bool
    ready: Sample | None = None
    """The server before the first turn (models loaded, nothing asked yet)."""
    notes: list[str] = field(default_factory=list)


Progress = Callable[[TurnRecord], None]


def _key(turn: dict[str, Any]) -> tuple[str, str, int]:
    return (str(turn.get("session_id", "")), str(turn.get("device_id", "")), int(turn.get("turn", 0) or 0))


class _TurnLog:
    """Everything ``/turns`` reported during the run, without repeats."""

    def __init__(self, client: httpx.AsyncClient, urls: ServerUrls) -> None:
        self.client = client
        self.urls = urls
        self.turns: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.total: int | None = None
        self.available = False

    async def poll(self) -> None:
        data = await fetch_turns(self.client, self.urls)
        if data is None:
            return
        self.available = True
        self.total = int(data.get("total", 0) or 0)
        for turn in data["turns"]:
            if isinstance(turn, dict):
                self.turns[_key(turn)] = turn

    def match(self, session_id: str | None) -> dict[str, Any] | None:
        """The voice turn the server logged for ``session_id`` (one per bench session)."""
        if not session_id:
            return None
        mine = [t for t in self.turns.values()
                if t.get("session_id") == session_id and t.get("source", "voice") == "voice"]  # fmt: skip
        return min(mine, key=lambda t: int(t.get("turn", 0) or 0)) if mine else None


async def _every(interval_s: float, action: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await action()


PAIRING_HINT = (
    "the server wants the bench's simulated devices paired first (activation code {code}). Benchmark a "
    "server that admits every device: `xiaozhi serve --open` on a trusted network, or let `xiaozhi bench` "
    "start its own server on 127.0.0.1 (leave out --server)"
)


async def _one_turn(urls: ServerUrls, identity: DeviceIdentity, options: BenchOptions,
                    speech: list[Frame]) -> SessionResult:  # fmt: skip
    session = SessionOptions(mode=options.mode, turns=1, reply_timeout_s=options.reply_timeout_s)
    result = await run_session(urls.ota_url, identity, session, speech=speech)
    if result.error_kind == PairingRequiredError.__name__:
        raise XiaozhiError(PAIRING_HINT.format(code=result.pairing_code or "?"))
    return result


async def run_bench(
    urls: ServerUrls,
    plan: list[SpokenUtterance],
    options: BenchOptions,
    *,
    sampler: Sampler | None = None,
    progress: Progress | None = None,
) -> BenchRun:
    """Run ``options.warmup`` + ``len(plan)`` turns against the server at ``urls``."""
    speech = {s.utterance.id: split_frames(load_speech(s.wav)) for s in plan}
    workers = max(1, min(options.concurrency, len(plan)))
    identities: list[DeviceIdentity] = []
    while len(identities) < workers:
        candidate = DeviceIdentity.create()
        if all(candidate.mac != other.mac for other in identities):
            identities.append(candidate)
    records: list[TurnRecord] = []
    samples: list[Sample] = []
    async with httpx.AsyncClient(timeout=10.0) as client:
        health = await fetch_health(client, urls)
        log = _TurnLog(client, urls)
        ready = await sampler() if sampler is not None else None
        for i in range(options.warmup):
            spoken = plan[i % len(plan)]
            result = await _one_turn(urls, identities[0], options, speech[spoken.utterance.id])
            record = TurnRecord(-(options.warmup - i), 0, True, spoken, result)
            records.append(record)
            if progress is not None:
                progress(record)
        await log.poll()
        before = log.total

        async def take_sample() -> None:
            if sampler is not None and (sample := await sampler()) is not None:
                samples.append(sample)

        queue: asyncio.Queue[tuple[int, SpokenUtterance]] = asyncio.Queue()
        for item in enumerate(plan):
            queue.put_nowait(item)

        async def worker(device: int) -> None:
            while not queue.empty():
                index, spoken = queue.get_nowait()
                result = await _one_turn(urls, identities[device], options, speech[spoken.utterance.id])
                record = TurnRecord(index, device, False, spoken, result)
                records.append(record)
                if progress is not None:
                    progress(record)

        await take_sample()
        background = [asyncio.ensure_future(_every(options.sample_interval_s, take_sample)),
                      asyncio.ensure_future(_every(options.turns_poll_s, log.poll))]  # fmt: skip
        started = time.monotonic()
        try:
            async with asyncio.TaskGroup() as group:  # one failing worker (pairing) cancels the others
                for d in range(workers):
                    group.create_task(worker(d))
        except* XiaozhiError as errors:
            raise errors.exceptions[0] from None
        finally:
            wall_s = time.monotonic() - started
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await take_sample()
        await asyncio.sleep(0.2)  # the server logs a turn as it ends, which can trail the device's tts stop
        await log.poll()
    for record in records:
        record.server = log.match(record.result.session_id)
    seen = -1 if log.total is None or before is None else log.total - before
    records.sort(key=lambda r: r.index)
    return BenchRun(records, samples, health, round(wall_s, 3), seen, log.available, ready)
