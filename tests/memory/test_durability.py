"""kill -9 during memory writes loses nothing committed: a separate process stores turns, facts and
voiceprints as fast as it can and reports each commit; it is killed with SIGKILL mid-stream; the
database then passes ``PRAGMA integrity_check`` and holds every row that was reported."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO
from xiaozhi_local.store.memory import MemoryStore, Owner

WRITER = r"""
import json, sys
import numpy as np
from xiaozhi_local.store.memory import FactChange, MemoryStore, Owner, TurnRecord

store = MemoryStore.open(sys.argv[1])
owner = Owner("speaker", "Sam")
conversation = store.start_conversation("aa:bb:cc:00:00:01", "sess-1")
print(json.dumps({"conversation": conversation}), flush=True)
for turn in range(1, 1_000_000):
    ids = store.add_turn(conversation, TurnRecord(turn, f"user says {turn}", f"reply {turn}", "Sam", "voice", "ok",
                                                  e2e_ms=float(turn), latency={"asr": 1.0}))
    facts = store.apply_facts(owner, [FactChange(f"The user has told us {turn} things.")], conversation, 1000)
    if turn % 10 == 0:
        store.save_voiceprint(f"Voice{turn}", np.full((3, 256), turn, np.float32), model_id="m",
                              preprocessing="p", source="cli")
    print(json.dumps({"turn": turn, "messages": ids, "facts": facts}), flush=True)
"""

ENOUGH = 60
"""Commits to see before the kill (the writer is killed while it is still writing)."""


def test_kill_9_during_writes_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "xiaozhi.db"
    MemoryStore.open(db).close()  # migrate first, so the writer only writes data
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert writer.stdout is not None
    reports = []
    deadline = time.monotonic() + 120
    try:
        for line in writer.stdout:
            reports.append(json.loads(line))
            if len(reports) > ENOUGH or time.monotonic() > deadline:
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL and len(reports) > ENOUGH

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    store = MemoryStore.open(db)
    conversation = reports[0]["conversation"]
    turns = reports[1:]
    messages = {m.id: m for m in store.messages(conversation)}
    facts = {f.id for f in store.facts(Owner("speaker", "Sam"))}
    for report in turns:
        assert all(i in messages for i in report["messages"]), report
        assert all(i in facts for i in report["facts"]), report
    last = turns[-1]["turn"]
    assert messages[turns[-1]["messages"][0]].text == f"user says {last}"
    names = {v.name for v in store.voiceprints()}
    assert {f"Voice{t}" for t in range(10, last + 1, 10)} <= names
    # the rows are whole: a turn is there with both of its messages, or not at all
    by_turn: dict[int, list[str]] = {}
    for m in messages.values():
        by_turn.setdefault(m.turn, []).append(m.role)
    assert all(sorted(roles) == ["assistant", "user"] for roles in by_turn.values())
    store.close()
