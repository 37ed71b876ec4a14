"""The server under test: a ``xiaozhi serve`` process the bench starts, or one given by URL.

A started server listens on 127.0.0.1 with free ports, no mDNS and no pairing (``--open``: only
this machine can reach it), with the caller's config (``--config`` / ``XIAOZHI_HOME`` pass
through); its log goes to ``server.log`` in the output folder, where the bench also finds the
OTA URL it prints when ready. Its memory and CPU are
sampled with psutil on the child pid; a server given by URL is sampled through the
``process`` block of its ``GET /health``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import psutil

from ..errors import XiaozhiError

__all__ = [
    "Sample",
    "Sampler",
    "ServerHandle",
    "ServerUrls",
    "fetch_health",
    "fetch_turns",
    "health_sampler",
    "parse_server_url",
    "process_sampler",
    "start_server",
    "stop_server",
]

OTA_PATH: Final = "/xiaozhi/ota/"
"""Where a xiaozhi-local server answers OTA checks (``server.http_api.OTA_PATH``)."""
_READY: Final = re.compile(r"OTA URL for the device's Wi-Fi portal: (\S+)")


@dataclass(frozen=True, slots=True)
class ServerUrls:
    ota_url: str
    """What the simulated devices are pointed at (``…/xiaozhi/ota/``)."""
    base_url: str
    """``http://host:port``: where ``/health`` and ``/turns`` live."""


@dataclass(slots=True)
class ServerHandle:
    urls: ServerUrls
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    startup_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the server process: monotonic time, resident memory, CPU seconds so far."""

    t: float
    rss_bytes: int
    cpu_s: float
    threads: int


def parse_server_url(url: str) -> ServerUrls:
    """``--server``: the OTA URL (``http://host:8003/xiaozhi/ota/``) or just ``http://host:8003``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise XiaozhiError(f"--server {url!r}: give the server's HTTP address, e.g. "
                           f"http://192.168.1.5:8003{OTA_PATH} (the bench also reads /health and /turns there)")
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path if parts.path not in ("", "/") else OTA_PATH
    return ServerUrls(ota_url=base + path, base_url=base)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def start_server(out_dir: Path, *, echo: bool, config_path: Path | None, timeout_s: float = 300.0) -> ServerHandle:
    """Start ``xiaozhi serve`` on loopback and wait until it prints its OTA URL (models loaded)."""
    log_path = out_dir / "server.log"
    cmd = [sys.executable, "-m", "xiaozhi_local.cli"]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    # --open: the simulated devices are admitted without pairing; safe, the server listens on loopback only
    cmd += ["serve", "--host", "127.0.0.1", "--http-port", "0", "--ws-port", "0", "--no-mdns", "--open"]
    if echo:
        cmd.append("--echo")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
    handle = ServerHandle(ServerUrls("", ""), proc, log_path)
    try:
        while time.monotonic() - started < timeout_s:
            match = _READY.search(log_path.read_text(encoding="utf-8", errors="replace"))
            if match:
                handle.urls = parse_server_url(match.group(1))
                handle.startup_s = round(time.monotonic() - started, 2)
                return handle
            if proc.poll() is not None:
                raise XiaozhiError(f"the server exited with code {proc.returncode} before it was ready; "
                                   f"its log ({log_path}) ends with:\n{_tail(log_path)}")
            time.sleep(0.1)
        raise XiaozhiError(f"the server was not ready after {timeout_s:.0f} s; see {log_path}")
    except BaseException:
        stop_server(handle)
        raise


def stop_server(handle: ServerHandle, timeout_s: float = 15.0) -> int | None:
    """SIGTERM the started server (then SIGKILL after ``timeout_s``); its exit code."""
    proc = handle.proc
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def fetch_health(client: httpx.AsyncClient, urls: ServerUrls) -> dict[str, Any]:
    """``GET /health``; XiaozhiError if the server cannot be reached."""
    url = urls.base_url + "/health"
    try:
        reply = await client.get(url)
        reply.raise_for_status()
        data = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise XiaozhiError(f"cannot reach the server at {url}: {exc}") from None
    if not isinstance(data, dict):
        raise XiaozhiError(f"{url} did not return a JSON object; is this a xiaozhi-local server?")
    return data


async def fetch_turns(client: httpx.AsyncClient, urls: ServerUrls, limit: int = 1000) -> dict[str, Any] | None:
    """``GET /turns?limit=…`` (the server's per-turn stage timings); None if it has no such endpoint."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        reply = await client.get(urls.base_url + "/turns", params={"limit": limit})
        if reply.status_code == 200:
            data = reply.json()
            if isinstance(data, dict) and isinstance(data.get("turns"), list):
                return data
    return None


Sampler = Callable[[], Awaitable[Sample | None]]


def process_sampler(pid: int) -> Sampler:
    """Read RSS / CPU time / threads of ``pid`` with psutil (None once it has exited)."""
    proc = psutil.Process(pid)

    async def sample() -> Sample | None:
        try:
            with proc.oneshot():
                cpu = proc.cpu_times()
                return Sample(time.monotonic(), proc.memory_info().rss, cpu.user + cpu.system, proc.num_threads())
        except psutil.Error:
            return None

    return sample


def health_sampler(client: httpx.AsyncClient, urls: ServerUrls) -> Sampler:
    """Read the ``process`` block of ``GET /health`` (None when the server does not report it)."""

    async def sample() -> Sample | None:
        try:
            data = await fetch_health(client, urls)
        except XiaozhiError:
            return None
        stats = data.get("process")
        if not isinstance(stats, dict):
            return None
        try:
            return Sample(time.monotonic(), int(stats["rss_bytes"]), float(stats["cpu_s"]),
                          int(stats.get("threads", 0)))
        except (KeyError, TypeError, ValueError):
            return None

    return sample
