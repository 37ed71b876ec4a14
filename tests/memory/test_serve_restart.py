"""`xiaozhi serve` as a real process, restarted: a fact told to the first server (simulated device, test
models, greedy LLM) is distilled before it exits on SIGTERM, and the second server puts it into the
prompt of the same device's next session."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.memory.conftest import TEST_LLM, models_dir
from xiaozhi_local.sim.identity import DeviceIdentity
from xiaozhi_local.sim.runner import SessionOptions, run_session
from xiaozhi_local.store.memory import MemoryStore, Owner

pytestmark = pytest.mark.models

CONFIG = """
[pipeline]
language = "en"
temperature = 0.0
seed = 7
max_reply_tokens = 24
"""


class Serve:
    """One `xiaozhi serve --open` process; its log lines are collected as they come."""

    def __init__(self, home: Path):
        env = {**os.environ, "XIAOZHI_HOME": str(home), "PYTHONUNBUFFERED": "1",
               "XIAOZHI_MODELS__DIR": str(models_dir()), "XIAOZHI_MODELS__LLM": TEST_LLM}
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "cli.py"), "serve", "--open", "--host", "127.0.0.1", "--http-port", "0",
             "--ws-port", "0", "--no-mdns"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
            cwd=REPO)
        self.lines: list[str] = []
        self.ota_url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                found = re.search(r"OTA URL for the device's Wi-Fi portal: (\S+)", line)
                if found:
                    self.ota_url = found.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(300) or not self.ota_url:
            self.proc.kill()
            raise AssertionError("serve did not start:\n" + "".join(self.lines))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)

    def log(self) -> str:
        time.sleep(0.2)
        return "".join(self.lines)


def test_a_fact_survives_a_real_server_restart(isolated_env: Path) -> None:
    isolated_env.mkdir(parents=True, exist_ok=True)
    (isolated_env / "config.toml").write_text(CONFIG)
    device = DeviceIdentity.create()
    server = Serve(isolated_env)
    try:
        result = asyncio.run(run_session(server.ota_url, device, SessionOptions(text="My dog is called Max.",
                                                                                reply_timeout_s=90)))
        assert result.ok, result.error
    finally:
        assert server.stop() == 0, server.log()
    store = MemoryStore.open(isolated_env / "xiaozhi.db")
    facts = [f.fact for f in store.facts(Owner("device", device.mac))]
    store.close()
    assert facts and any("Max" in f for f in facts), server.log()

    server = Serve(isolated_env)
    try:
        result = asyncio.run(run_session(server.ota_url, device, SessionOptions(text="What is my dog called?",
                                                                                reply_timeout_s=90)))
        assert result.ok, result.error
    finally:
        assert server.stop() == 0
    assert re.search(rf"the prompt carries {len(facts)} remembered fact\(s\) of device {device.mac}", server.log())
