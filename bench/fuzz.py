"""Fuzz the server's LAN-facing parsers and endpoints: 100,000+ cases, crashes and hangs counted,
while a paired device keeps a live session and talks through the whole run.

    python bench/fuzz.py                       # 210,000 parser cases + 6,000 network cases
    python bench/fuzz.py --cases 200000 --seed 7 --out bench/fuzz-report.json

What runs:

* **parsers** (in a worker process, so that even a native crash in libopus is caught and
  reported): mutated binary frames v1/v2/v3, device JSON messages, OTA requests (headers and
  body), ``/activate`` bodies, ``Authorization`` headers, device MCP replies, Opus packets. A
  *crash* is any exception outside the parser's documented typed error or a broken contract
  (see ``tests/fuzz/targets.py``); a *hang* is a case that takes over 2 s.
* **network**, against a real ``xiaozhi serve --echo`` child process in paired mode: raw HTTP
  requests with mutated headers and bodies to OTA/activate/health, and WebSocket sessions
  (half with the paired device's valid token, so the hostile frames reach the session code)
  sending mutated hellos, JSON and binary frames. A *crash* is an HTTP 5xx, a WebSocket close
  1011, an ``ERROR`` line or traceback in the server log, or the server process dying; a
  *hang* is a case without an answer for 20 s (a stalled body is answered 408 after 10 s).
* **the live session**: a paired device connected for the whole run, doing a text turn every
  second; every turn must complete.

The report (stdout and ``--out``) gives the cases per target, crashes, hangs, and the live
session's turns. Exit code 0 only when crashes = hangs = 0 and every live turn completed.
Inputs derive from ``--seed``; a crash lists the target, seed and case index to reproduce it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake  # noqa: E402

from tests.fuzz import targets  # noqa: E402
from tests.fuzz.mutate import Mutator  # noqa: E402
from tests.helpers.pairing import pair_over_http  # noqa: E402

PARSER_TARGETS = ("frame", "message", "ota", "activate", "bearer", "mcp", "opus")
CASE_TIMEOUT_S = 2.0
NET_TIMEOUT_S = 20.0  # the server gives up on a stalled body after 10 s (408)
CHUNK = 4000
ALLOWED_CLOSES = {1000, 1002, 1003, 1007, 1008, 1009, 1013, None}
KEEPER_MAC = "a0:85:e3:f4:49:34"


@dataclass
class Finding:
    target: str
    seed: int
    index: int
    kind: str  # "crash" | "hang"
    detail: str


@dataclass
class Tally:
    cases: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    slowest_ms: dict[str, float] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        for k, v in other.cases.items():
            self.cases[k] = self.cases.get(k, 0) + v
        for k, v in other.slowest_ms.items():
            self.slowest_ms[k] = max(self.slowest_ms.get(k, 0.0), v)
        self.findings.extend(other.findings)


# ---- parsers (worker process) -------------------------------------------------------------------
class _Hang(Exception):
    pass


def _alarm(_signum: int, _frame: object) -> None:
    raise _Hang()


def _parser_case(target: str, m: Mutator) -> None:
    rng = m.rng
    if target == "frame":
        version = rng.choice((1, 2, 3))
        targets.check_frame(version, m.frame(version))
    elif target == "message":
        targets.check_message(m.message())
    elif target == "ota":
        targets.check_ota(m.headers(), m.ota_body(), rng.choice(("application/json", None, "text/plain")))
    elif target == "activate":
        targets.check_activate(m.activate_body())
    elif target == "bearer":
        targets.check_bearer(m.header_value(rng.choice(("Bearer " + "t" * 43, "bearer x", "Basic y"))))
    elif target == "mcp":
        targets.check_mcp(m.mcp_payload())
    else:
        targets.check_opus(m.frame(1))


def run_chunk(target: str, seed: int, start: int, count: int) -> Tally:
    """``count`` cases of ``target``; case ``i`` is generated from Random((seed, target, i))."""
    tally = Tally(cases={target: 0})
    signal.signal(signal.SIGALRM, _alarm)
    slowest = 0.0
    for i in range(start, start + count):
        m = Mutator(random.Random(f"{seed}:{target}:{i}"))
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
        try:
            _parser_case(target, m)
        except _Hang:
            tally.findings.append(Finding(target, seed, i, "hang", f"over {CASE_TIMEOUT_S} s"))
        except Exception as exc:
            last = traceback.format_exception(exc)[-1].strip()
            tally.findings.append(Finding(target, seed, i, "crash", f"{type(exc).__name__}: {last[:300]}"))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, (time.perf_counter() - t0) * 1000)
        tally.cases[target] += 1
    tally.slowest_ms[target] = slowest
    return tally


def run_parsers(total: int, seed: int) -> Tally:
    """All parser cases in chunks on one worker process (the server and the live session need
    the other core). A worker killed by a native crash is reported and replaced."""
    per_target = -(-total // len(PARSER_TARGETS))
    jobs = [(t, start, min(CHUNK, per_target - start)) for t in PARSER_TARGETS for start in range(0, per_target, CHUNK)]
    tally = Tally()
    while jobs:
        leftover: list[tuple[str, int, int]] = []
        culprit = False
        with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
            futures = [(job, pool.submit(run_chunk, job[0], seed, job[1], job[2])) for job in jobs]
            for (target, start, count), future in futures:  # one worker: they run in this order
                try:
                    tally.add(future.result())
                except concurrent.futures.process.BrokenProcessPool:
                    if culprit:
                        leftover.append((target, start, count))
                        continue
                    culprit = True
                    tally.findings.append(Finding(target, seed, start, "crash",
                                                  f"worker process died in cases {start}..{start + count - 1}"))
                    tally.cases[target] = tally.cases.get(target, 0) + count
        jobs = leftover
    return tally


# ---- the server under test ----------------------------------------------------------------------
class Server:
    def __init__(self, home: Path):
        self.home = home
        self.log_path = home / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ota_url = ""

    def start(self) -> None:
        env = {**os.environ, "XIAOZHI_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xiaozhi_local.cli", "serve", "--echo", "--host", "127.0.0.1",
             "--http-port", "0", "--ws-port", "0", "--no-mdns"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=REPO)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"OTA URL for the device's Wi-Fi portal: (\S+)", self.log())
            if match:
                self.ota_url = match.group(1)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit("xiaozhi serve did not start:\n" + self.log()[-3000:])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode


# ---- network fuzzing ----------------------------------------------------------------------------
async def raw_http(port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
        parts = status_line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    finally:
        writer.close()


def http_request(m: Mutator) -> bytes:
    rng = m.rng
    path = rng.choice(("/xiaozhi/ota/", "/xiaozhi/ota/activate", "/xiaozhi/ota", "/health", "/xiaozhi/ota/activate/"))
    body = m.activate_body() if "activate" in path else m.ota_body()
    method = rng.choice(("POST", "POST", "POST", "GET", "PUT"))
    length = len(body) if rng.random() < 0.95 else rng.choice((0, len(body) // 2, 10**9))
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Length: {length}"]
    head += [f"{k}: {v}" for k, v in m.headers().items()]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace") + body
    return m.bytes_(raw, max_len=70_000) if rng.random() < 0.05 else raw


async def ws_case(url: str, m: Mutator, headers: dict[str, str]) -> int | None:
    version = m.rng.choice((1, 2, 3))
    try:
        async with connect(url, additional_headers=headers | {"Protocol-Version": str(version)}, max_size=None,
                           open_timeout=5, close_timeout=2) as ws:
            if m.rng.random() < 0.85:
                await ws.send(json.dumps({"type": "hello", "version": version, "transport": "websocket"}))
            for _ in range(m.rng.randrange(1, 16)):
                await ws.send(m.message() if m.rng.random() < 0.5 else m.frame(version))
            await ws.send(json.dumps({"type": "ping"}))
            try:
                async with asyncio.timeout(1.5):
                    while True:
                        await ws.recv()
            except TimeoutError:
                return None
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except (InvalidHandshake, OSError):
        return None
    return None


@dataclass
class Keeper:
    turns: int = 0
    failures: list[str] = field(default_factory=list)
    slowest_s: float = 0.0


async def keep_talking(ws_url: str, token: str, stop: asyncio.Event, keeper: Keeper) -> None:
    headers = {"Device-Id": KEEPER_MAC, "Authorization": f"Bearer {token}"}
    try:
        async with connect(ws_url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "transport": "websocket"}))
            await ws.recv()
            while not stop.is_set():
                text = f"turn {keeper.turns}"
                t0 = time.monotonic()
                await ws.send(json.dumps({"type": "listen", "state": "detect", "text": text}))
                heard = None
                async with asyncio.timeout(20):
                    while True:
                        raw = await ws.recv()
                        if isinstance(raw, bytes):
                            continue
                        msg = json.loads(raw)
                        if msg.get("type") == "stt":
                            heard = msg.get("text")
                        if msg.get("type") == "tts" and msg.get("state") == "stop":
                            break
                if heard != text:
                    keeper.failures.append(f"turn {keeper.turns}: heard {heard!r}")
                keeper.turns += 1
                keeper.slowest_s = max(keeper.slowest_s, time.monotonic() - t0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
    except Exception as exc:  # the live session broke: that is a finding
        keeper.failures.append(f"live session ended: {type(exc).__name__}: {exc}")


async def run_network(server: Server, token: str, ws_url: str, http_cases: int, ws_cases: int, seed: int,
                      parsers: concurrent.futures.Future[Tally] | None, keeper: Keeper) -> Tally:
    tally = Tally(cases={"http": 0, "websocket": 0})
    port = int(server.ota_url.split(":")[2].split("/")[0])
    stop = asyncio.Event()
    talker = asyncio.create_task(keep_talking(ws_url, token, stop, keeper))
    good = {"Device-Id": KEEPER_MAC, "Authorization": f"Bearer {token}"}

    async def http_one(i: int) -> None:
        m = Mutator(random.Random(f"{seed}:http:{i}"))
        try:
            async with asyncio.timeout(NET_TIMEOUT_S):
                status = await raw_http(port, http_request(m))
            if status >= 500:
                tally.findings.append(Finding("http", seed, i, "crash", f"HTTP {status}"))
        except TimeoutError:
            tally.findings.append(Finding("http", seed, i, "hang", f"no answer in {NET_TIMEOUT_S} s"))
        except OSError as exc:
            tally.findings.append(Finding("http", seed, i, "crash", f"connection failed: {exc}"))
        tally.cases["http"] += 1

    async def ws_one(i: int) -> None:
        m = Mutator(random.Random(f"{seed}:ws:{i}"))
        headers = good if m.rng.random() < 0.5 else {k: v for k, v in m.headers().items()
                                                      if v.isascii() and v.isprintable()}
        try:
            async with asyncio.timeout(NET_TIMEOUT_S):
                code = await ws_case(ws_url, m, headers)
            if code not in ALLOWED_CLOSES:
                tally.findings.append(Finding("websocket", seed, i, "crash", f"close code {code}"))
        except TimeoutError:
            tally.findings.append(Finding("websocket", seed, i, "hang", f"no answer in {NET_TIMEOUT_S} s"))
        tally.cases["websocket"] += 1

    async def limited(sem: asyncio.Semaphore, case: Any) -> None:
        async with sem:
            await case

    # a few cases in flight at once, so that stalled ones (a body that never comes: 408 after
    # [limits] body_timeout_s) overlap instead of adding up
    http_sem, ws_sem = asyncio.Semaphore(8), asyncio.Semaphore(4)
    await asyncio.gather(*(limited(http_sem, http_one(i)) for i in range(http_cases)))
    await asyncio.gather(*(limited(ws_sem, ws_one(i)) for i in range(ws_cases)))
    if parsers is not None:  # keep the live session going until the parser phase is done too
        while not parsers.done():
            await asyncio.sleep(0.5)
    stop.set()
    await talker
    return tally


# ---- main -------------------------------------------------------------------------------------
def server_log_findings(log: str, seed: int) -> list[Finding]:
    bad = [line for line in log.splitlines() if " ERROR " in line or line.startswith("Traceback")]
    return [Finding("server-log", seed, i, "crash", line[:300]) for i, line in enumerate(bad)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--cases", type=int, default=210_000, help="parser cases in total (default 210000)")
    parser.add_argument("--http", type=int, default=5_000, help="raw HTTP cases against the server (default 5000)")
    parser.add_argument("--ws", type=int, default=1_000, help="hostile WebSocket sessions (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every generated input (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args()

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xiaozhi-fuzz-") as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            token, ws_url = pair_over_http(server.ota_url, server.home / "xiaozhi.db", KEEPER_MAC)
            keeper = Keeper()
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as runner:
                parsers = runner.submit(run_parsers, args.cases, args.seed)
                network = asyncio.run(run_network(server, token, ws_url, args.http, args.ws, args.seed, parsers,
                                                  keeper))
                tally = parsers.result()
            tally.add(network)
            alive = server.proc is not None and server.proc.poll() is None
            health_ok = alive and httpx.get(server.ota_url.replace("/xiaozhi/ota/", "/health"),
                                            trust_env=False, timeout=5).status_code == 200
        finally:
            exit_code = server.stop()
        tally.findings.extend(server_log_findings(server.log(), args.seed))
    if not alive:
        tally.findings.append(Finding("server", args.seed, 0, "crash", "the server process died"))
    crashes = [f for f in tally.findings if f.kind == "crash"]
    hangs = [f for f in tally.findings if f.kind == "hang"]
    report: dict[str, Any] = {
        "seed": args.seed,
        "cases": sum(tally.cases.values()),
        "cases_by_target": tally.cases,
        "crashes": len(crashes),
        "hangs": len(hangs),
        "findings": [asdict(f) for f in tally.findings[:200]],
        "slowest_case_ms": {k: round(v, 1) for k, v in tally.slowest_ms.items()},
        "live_session": {"turns": keeper.turns, "failures": keeper.failures,
                         "slowest_turn_s": round(keeper.slowest_s, 2)},
        "server": {"alive_at_end": alive, "health_ok": bool(health_ok), "exit_code_on_sigterm": exit_code},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    ok = not crashes and not hangs and not keeper.failures and keeper.turns > 0 and exit_code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
