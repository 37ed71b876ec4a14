"""The memory tables in a real SQLite file: schema, turns, facts (bounded), forgetting, voiceprints, export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from xiaozhi_local.errors import VoiceprintError
from xiaozhi_local.store import connect
from xiaozhi_local.store.devices import DeviceInfo, DeviceRegistry
from xiaozhi_local.store.memory import FactChange, MemoryStore, Owner, TurnRecord

SAM = Owner("speaker", "Sam")
DEVICE = Owner("device", "aa:bb:cc:00:00:01")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> MemoryStore:
    return MemoryStore(connect(tmp_path / "xiaozhi.db"), Clock())


def test_the_schema_is_readable_with_foreign_keys_and_indexes(tmp_path: Path) -> None:
    MemoryStore.open(tmp_path / "x.db").close()
    conn = sqlite3.connect(tmp_path / "x.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"conversations", "messages", "memories", "voiceprints", "devices"} <= tables
    assert conn.execute("SELECT version FROM schema_migrations WHERE component = 'memory'").fetchall() == [(1,)]
    fks = {(r[2], r[3], r[6]) for r in conn.execute("PRAGMA foreign_key_list(messages)")}
    assert ("conversations", "conversation_id", "CASCADE") in fks
    fks = {(r[2], r[3], r[6]) for r in conn.execute("PRAGMA foreign_key_list(memories)")}
    assert ("conversations", "source_conversation_id", "SET NULL") in fks
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"messages_conversation", "messages_speaker", "memories_owner", "conversations_device"} <= indexes
    columns = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
    assert {"role", "text", "speaker", "created_at", "e2e_ms", "latency_ms", "audio_file"} <= columns


def test_a_turn_is_stored_as_two_messages_with_the_speaker_and_latency(store: MemoryStore) -> None:
    conversation = store.start_conversation(DEVICE.id, "sess-1")
    record = TurnRecord(turn=1, user_text="hello", reply="Hi!", speaker="Sam", source="voice", outcome="ok",
                        e2e_ms=812.5, latency={"asr": 120.0, "llm_first_token": 300.0})
    user_id, reply_id = store.add_turn(conversation, record)
    store.add_turn(conversation, TurnRecord(turn=2, user_text="", reply="Goodbye!", speaker=None, source="text",
                                            outcome="goodbye"))
    messages = store.messages(conversation)
    assert [(m.id, m.role, m.text, m.speaker) for m in messages[:2]] == [(user_id, "user", "hello", "Sam"),
                                                                        (reply_id, "assistant", "Hi!", None)]
    assert messages[1].e2e_ms == 812.5 and json.loads(messages[1].latency_ms or "") == record.latency
    assert [m.role for m in messages] == ["user", "assistant", "assistant"]
    assert store.conversation(conversation).turns == 2  # type: ignore[union-attr]


def test_conversations_left_open_by_a_crash_are_closed_and_then_distilled(store: MemoryStore) -> None:
    conversation = store.start_conversation(DEVICE.id, "sess-1")
    store.add_turn(conversation, TurnRecord(1, "I like tea.", "Nice.", None, "text", "ok"))
    assert store.undistilled() == []  # still open: not yet
    assert store.close_stale_conversations() == 1
    assert store.undistilled() == [conversation]
    last = store.messages(conversation)[-1]
    assert store.conversation(conversation).ended_at == last.created_at  # type: ignore[union-attr]
    store.mark_distilled(conversation, last.id)
    assert store.undistilled() == []


def test_facts_are_replaced_added_and_bounded_per_owner(store: MemoryStore) -> None:
    first = store.apply_facts(SAM, [FactChange(f"The user likes fact number {i}.") for i in range(5)], None, 3)
    kept = store.facts(SAM)
    assert [f.id for f in kept] == first[:-4:-1]  # the 3 newest, newest first
    store.apply_facts(SAM, [FactChange("The user likes tea.", replace=kept[0].id)], None, 3)
    assert store.fact(kept[0].id).fact == "The user likes tea."  # type: ignore[union-attr]
    store.apply_facts(DEVICE, [FactChange("The user has a cat.")], None, 3)
    assert len(store.facts(SAM)) == 3 and len(store.facts(DEVICE)) == 1
    store.apply_facts(SAM, [FactChange("A fact for someone else.", replace=store.facts(DEVICE)[0].id)], None, 3)
    assert store.facts(DEVICE)[0].fact == "The user has a cat."  # replace never crosses owners
    assert len(store.facts(SAM)) == 3


def test_forgetting_a_speaker_removes_their_facts_and_turns_but_not_others(store: MemoryStore) -> None:
    conversation = store.start_conversation(DEVICE.id, "sess-1")
    store.add_turn(conversation, TurnRecord(1, "My dog is Max.", "Nice.", "Sam", "voice", "ok"))
    store.add_turn(conversation, TurnRecord(2, "I live in Paris.", "Lovely.", None, "voice", "ok"))
    store.apply_facts(SAM, [FactChange("The user has a dog called Max.")], conversation, 10)
    store.apply_facts(DEVICE, [FactChange("The user lives in Paris.")], conversation, 10)
    assert store.forget_owner(Owner("speaker", "sam")) == (1, 2)  # names match in any case
    assert [m.text for m in store.messages(conversation)] == ["I live in Paris.", "Lovely."]
    assert [f.fact for f in store.facts()] == ["The user lives in Paris."]
    assert store.forget_owner(DEVICE) == (1, 2)
    assert store.messages(conversation) == []


def test_forgetting_a_device_or_everything(store: MemoryStore) -> None:
    ours = store.start_conversation(DEVICE.id, "sess-1")
    other = store.start_conversation("11:22:33:44:55:66", "sess-2")
    for conversation in (ours, other):
        store.add_turn(conversation, TurnRecord(1, "hi", "hello", None, "text", "ok"))
    store.apply_facts(DEVICE, [FactChange("The user has a cat.")], ours, 10)
    store.apply_facts(SAM, [FactChange("The user likes tea.")], ours, 10)
    assert store.forget_device(DEVICE.id) == (1, 1)
    assert [c.id for c in store.conversations()] == [other]
    assert store.facts(SAM)[0].source_conversation_id is None  # its conversation is gone; the fact stays
    assert store.forget_everything() == (1, 1)
    assert store.counts() == {"conversations": 0, "messages": 0, "memories": 0, "voiceprints": 0}


def test_forgetting_a_device_in_the_registry_forgets_its_memory(tmp_path: Path) -> None:
    db = connect(tmp_path / "xiaozhi.db")
    registry, store = DeviceRegistry(db), MemoryStore(db)
    registry.admit_open(DEVICE.id, DeviceInfo(client_id="c"), "127.0.0.1")
    conversation = store.start_conversation(DEVICE.id, "sess-1")
    store.add_turn(conversation, TurnRecord(1, "hi", "hello", None, "text", "ok"))
    store.apply_facts(DEVICE, [FactChange("The user has a cat.")], conversation, 10)
    store.apply_facts(SAM, [FactChange("The user likes tea.")], conversation, 10)
    assert registry.forget(DEVICE.id) == (True, 0)
    assert store.counts() == {"conversations": 0, "messages": 0, "memories": 1, "voiceprints": 0}


def test_voiceprints_round_trip_as_float32_blobs(store: MemoryStore, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(4, 256)).astype(np.float32)
    saved = store.save_voiceprint("Sam", clips, model_id="ge2e-resemblyzer", preprocessing="p1", source="cli")
    np.testing.assert_array_equal(saved.embeddings, clips)
    assert store.voiceprint("SAM").name == "Sam"  # type: ignore[union-attr]
    version = store.voiceprints_version()
    store.save_voiceprint("sam", clips[:2], model_id="ge2e-resemblyzer", preprocessing="p1", source="voice")
    again = store.voiceprint("Sam")
    assert again is not None and again.name == "Sam" and again.embeddings.shape == (2, 256)
    assert store.voiceprints_version() != version
    raw = sqlite3.connect(tmp_path / "xiaozhi.db").execute("SELECT embeddings, clips, dims FROM voiceprints").fetchone()
    assert len(raw[0]) == 2 * 256 * 4 and raw[1:] == (2, 256)
    with pytest.raises(VoiceprintError):
        store.save_voiceprint("Bad", np.full((1, 256), np.nan), model_id="m", preprocessing="p", source="cli")
    assert store.remove_voiceprint("sam") and not store.remove_voiceprint("sam")


def test_a_damaged_voiceprint_is_a_clear_error(store: MemoryStore) -> None:
    store.save_voiceprint("Sam", np.ones((2, 256), np.float32), model_id="m", preprocessing="p", source="cli")
    store.db.execute("UPDATE voiceprints SET clips = 3")
    with pytest.raises(VoiceprintError, match=r"damaged.*voice rm"):
        store.voiceprints()


def test_export_is_json_with_everything_but_the_embeddings(store: MemoryStore) -> None:
    conversation = store.start_conversation(DEVICE.id, "sess-1")
    store.add_turn(conversation, TurnRecord(1, "I like tea.", "Nice.", "Sam", "voice", "ok", latency={"asr": 1.0}))
    store.apply_facts(SAM, [FactChange("The user likes tea.")], conversation, 10)
    store.save_voiceprint("Sam", np.ones((3, 256), np.float32), model_id="m", preprocessing="p", source="cli")
    data = json.loads(json.dumps(store.export()))
    assert data["voiceprints"][0]["clips"] == 3 and "embeddings" not in data["voiceprints"][0]
    assert data["memories"][0]["fact"] == "The user likes tea."
    (exported,) = data["conversations"]
    assert [m["text"] for m in exported["messages"]] == ["I like tea.", "Nice."]
    assert exported["messages"][1]["latency_ms"] == {"asr": 1.0}
