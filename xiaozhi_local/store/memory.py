"""What the assistant remembers: conversations, their messages, facts and voiceprints (component ``"memory"``).

Four tables in the project's one database (see :mod:`.db`), meant to be read with ``sqlite-utils`` or
Datasette as well as by this code:

* ``conversations``: one row per device session that had at least one turn: ``device_id``,
  ``session_id``, ``started_at``/``ended_at``, the number of ``turns``, and ``distilled_through``,
  the id of the last message the LLM has already distilled into facts.
* ``messages``: what was said, one row per user utterance and per assistant reply, with the
  ``turn`` number, ``role``, ``text``, the ``speaker`` (the enrolled name, NULL when unknown or for
  the assistant), how it came in (``source``: voice, text, wake), a built-in ``intent`` if it was one,
  and on the assistant's row the turn's ``outcome`` and latency figures (``e2e_ms`` column, every stage
  in the ``latency_ms`` JSON). ``audio_file`` names the kept WAV when ``[memory] keep_audio`` is on.
* ``memories``: facts, each owned by a speaker (``owner_kind = 'speaker'``, ``owner_id`` = the name)
  or, for unknown voices, by a device (``'device'``, the device id), with the ``source_conversation_id``
  it was learnt in and ``created_at``/``updated_at`` (updated when a later conversation confirms or
  corrects it). Owner ids and speaker names compare in any case.
* ``voiceprints``: one row per enrolled ``name`` (unique, any case): the per-clip embeddings as a
  BLOB of little-endian float32, ``clips`` × ``dims``, the speaker ``model_id`` and the
  ``preprocessing`` version they were computed with (others are not compared), and where they came
  from (``source``: cli or voice).

Times are Unix seconds. Forgetting a device (``xiaozhi device forget``) deletes its conversations and
device facts too (a trigger on ``devices``; ``messages`` cascade from ``conversations``). Every method
takes the store's lock, so one store may be shared by the event loop and worker threads; every write is
one transaction.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from ..errors import VoiceprintError
from .db import Database, Migration, connect, immediate, register_migrations

__all__ = ["Conversation", "Fact", "FactChange", "MemoryStore", "Message", "Owner", "TurnRecord", "Voiceprint"]

OwnerKind = Literal["speaker", "device"]

_V1: Final = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    turns INTEGER NOT NULL DEFAULT 0,
    distilled_through INTEGER
);
CREATE INDEX conversations_device ON conversations (device_id, started_at);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    turn INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text TEXT NOT NULL,
    speaker TEXT COLLATE NOCASE,
    source TEXT,
    intent TEXT,
    created_at REAL NOT NULL,
    outcome TEXT,
    e2e_ms REAL,
    latency_ms TEXT,
    audio_file TEXT
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_speaker ON messages (speaker);
CREATE TABLE memories (
    id INTEGER PRIMARY KEY,
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('speaker', 'device')),
    owner_id TEXT NOT NULL COLLATE NOCASE,
    fact TEXT NOT NULL,
    source_conversation_id INTEGER REFERENCES conversations (id) ON DELETE SET NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX memories_owner ON memories (owner_kind, owner_id, updated_at);
CREATE TABLE voiceprints (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    embeddings BLOB NOT NULL,
    clips INTEGER NOT NULL,
    dims INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    preprocessing TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""

_FORGET_DEVICE_TRIGGER: Final = """
CREATE TRIGGER devices_forget_memory AFTER DELETE ON devices BEGIN
    DELETE FROM conversations WHERE device_id = OLD.id;
    DELETE FROM memories WHERE owner_kind = 'device' AND owner_id = OLD.id;
END
"""


def _v1(db: Database) -> None:
    Migration(1, "", _V1).run(db)
    db.execute(_FORGET_DEVICE_TRIGGER)


register_migrations("memory", [Migration(1, "conversations, messages, memories and voiceprints", _v1)])


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose a fact is: an enrolled speaker (by name) or a device (by id)."""

    kind: OwnerKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    device_id: str
    session_id: str
    started_at: float
    ended_at: float | None
    turns: int
    distilled_through: int | None


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    conversation_id: int
    turn: int
    role: str
    text: str
    speaker: str | None
    source: str | None
    intent: str | None
    created_at: float
    outcome: str | None
    e2e_ms: float | None
    latency_ms: str | None
    audio_file: str | None


@dataclass(frozen=True, slots=True)
class Fact:
    id: int
    owner_kind: str
    owner_id: str
    fact: str
    source_conversation_id: int | None
    created_at: float
    updated_at: float

    @property
    def owner(self) -> Owner:
        return Owner("speaker" if self.owner_kind == "speaker" else "device", self.owner_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Voiceprint:
    name: str
    embeddings: npt.NDArray[np.float32]
    """(clips, dims): one unit embedding per enrollment clip."""
    model_id: str
    preprocessing: str
    source: str
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        """Metadata only (``--json``, export): the embeddings themselves stay in the database."""
        return {"name": self.name, "clips": int(self.embeddings.shape[0]), "dims": int(self.embeddings.shape[1]),
                "model_id": self.model_id, "preprocessing": self.preprocessing, "source": self.source,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True)
class TurnRecord:
    """One finished turn, as :meth:`MemoryStore.add_turn` stores it."""

    turn: int
    user_text: str
    reply: str
    speaker: str | None
    source: str
    outcome: str
    intent: str | None = None
    e2e_ms: float | None = None
    latency: dict[str, Any] = field(default_factory=dict)
    audio_file: str | None = None


@dataclass(frozen=True)
class FactChange:
    """A step of merging distilled facts: ``replace`` (an existing fact id) with ``text``, or add it."""

    text: str
    replace: int | None = None


def _blob(embeddings: npt.NDArray[np.floating]) -> bytes:
    return np.ascontiguousarray(embeddings, dtype="<f4").tobytes()


def _voiceprint(row: dict[str, Any]) -> Voiceprint:
    clips, dims = int(row["clips"]), int(row["dims"])
    vectors = np.frombuffer(row["embeddings"], dtype="<f4")
    if vectors.size != clips * dims:
        raise VoiceprintError(f"the voiceprint of {row['name']!r} is damaged ({vectors.size} values, expected "
                              f"{clips}×{dims}); remove it with `xiaozhi voice rm` and enroll again")
    return Voiceprint(row["name"], vectors.reshape(clips, dims).astype(np.float32), row["model_id"],
                      row["preprocessing"], row["source"], row["created_at"], row["updated_at"])


class MemoryStore:
    """The memory tables over one open database; thread-safe (a lock around every call)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path | str, clock: Callable[[], float] = time.time) -> MemoryStore:
        """Open (and migrate) the database at ``path``; ``":memory:"`` for a private one."""
        return cls(connect(path), clock)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    @contextmanager
    def _write(self) -> Iterator[Database]:
        with self._lock, immediate(self.db) as db:
            yield db

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, list(params)))

    # ---- conversations and messages ----------------------------------------------------------
    def start_conversation(self, device_id: str, session_id: str) -> int:
        with self._write() as db:
            cursor = db.execute("INSERT INTO conversations (device_id, session_id, started_at) VALUES (?, ?, ?)",
                                [device_id, session_id, self.clock()])
            return int(cursor.lastrowid or 0)

    def end_conversation(self, conversation_id: int) -> None:
        with self._write() as db:
            db.execute("UPDATE conversations SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
                       [self.clock(), conversation_id])

    def close_stale_conversations(self) -> int:
        """Conversations a crashed server left open end at their last message. Returns how many."""
        with self._write() as db:
            return db.execute(
                "UPDATE conversations SET ended_at = coalesce((SELECT max(created_at) FROM messages"
                " WHERE conversation_id = conversations.id), started_at) WHERE ended_at IS NULL").rowcount

    def add_turn(self, conversation_id: int, record: TurnRecord) -> list[int]:
        """Store a turn's user message and reply (either may be empty: then it is not stored)."""
        now = self.clock()
        ids: list[int] = []
        with self._write() as db:
            if record.user_text:
                ids.append(int(db.execute(
                    "INSERT INTO messages (conversation_id, turn, role, text, speaker, source, intent, created_at,"
                    " audio_file) VALUES (?, ?, 'user', ?, ?, ?, ?, ?, ?)",
                    [conversation_id, record.turn, record.user_text, record.speaker, record.source, record.intent,
                     now, record.audio_file]).lastrowid or 0))
            if record.reply:
                ids.append(int(db.execute(
                    "INSERT INTO messages (conversation_id, turn, role, text, source, intent, created_at, outcome,"
                    " e2e_ms, latency_ms) VALUES (?, ?, 'assistant', ?, ?, ?, ?, ?, ?, ?)",
                    [conversation_id, record.turn, record.reply, record.source, record.intent, now, record.outcome,
                     record.e2e_ms, json.dumps(record.latency) if record.latency else None]).lastrowid or 0))
            db.execute("UPDATE conversations SET turns = max(turns, ?) WHERE id = ?", [record.turn, conversation_id])
        return ids

    def conversation(self, conversation_id: int) -> Conversation | None:
        rows = self._rows("SELECT * FROM conversations WHERE id = ?", [conversation_id])
        return Conversation(**rows[0]) if rows else None

    def conversations(self, device_id: str | None = None, limit: int | None = None) -> list[Conversation]:
        where, params = ("WHERE device_id = ?", [device_id]) if device_id else ("", [])
        tail = f" LIMIT {int(limit)}" if limit else ""
        return [Conversation(**r) for r in self._rows(f"SELECT * FROM conversations {where} ORDER BY started_at DESC,"
                                                       f" id DESC{tail}", params)]

    def messages(self, conversation_id: int, after_id: int | None = None) -> list[Message]:
        rows = self._rows("SELECT * FROM messages WHERE conversation_id = ? AND id > ? ORDER BY id",
                          [conversation_id, after_id or 0])
        return [Message(**r) for r in rows]

    def mark_distilled(self, conversation_id: int, through_message_id: int) -> None:
        with self._write() as db:
            db.execute("UPDATE conversations SET distilled_through = max(coalesce(distilled_through, 0), ?)"
                       " WHERE id = ?", [through_message_id, conversation_id])

    def undistilled(self) -> list[int]:
        """Ended conversations with messages not yet distilled, oldest first."""
        rows = self._rows(
            "SELECT c.id FROM conversations c WHERE c.ended_at IS NOT NULL AND EXISTS (SELECT 1 FROM messages m"
            " WHERE m.conversation_id = c.id AND m.id > coalesce(c.distilled_through, 0)) ORDER BY c.started_at")
        return [int(r["id"]) for r in rows]

    def audio_files(self, older_than: float) -> list[tuple[int, str]]:
        """(message id, file) of kept utterance audio recorded before ``older_than``."""
        rows = self._rows("SELECT id, audio_file FROM messages WHERE audio_file IS NOT NULL AND created_at < ?",
                          [older_than])
        return [(int(r["id"]), str(r["audio_file"])) for r in rows]

    def referenced_audio(self) -> set[str]:
        rows = self._rows("SELECT audio_file FROM messages WHERE audio_file IS NOT NULL")
        return {str(r["audio_file"]) for r in rows}

    def clear_audio_file(self, message_ids: Sequence[int]) -> None:
        with self._write() as db:
            for message_id in message_ids:
                db.execute("UPDATE messages SET audio_file = NULL WHERE id = ?", [message_id])

    # ---- facts --------------------------------------------------------------------------------
    def facts(self, owner: Owner | None = None, limit: int | None = None) -> list[Fact]:
        """An owner's facts (or everyone's), most recently confirmed first."""
        where, params = ("WHERE owner_kind = ? AND owner_id = ?", [owner.kind, owner.id]) if owner else ("", [])
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self._rows(f"SELECT * FROM memories {where} ORDER BY updated_at DESC, id DESC{tail}", params)
        return [Fact(**r) for r in rows]

    def fact(self, fact_id: int) -> Fact | None:
        rows = self._rows("SELECT * FROM memories WHERE id = ?", [fact_id])
        return Fact(**rows[0]) if rows else None

    def owners(self) -> list[tuple[Owner, int]]:
        """Every owner with facts, and how many."""
        rows = self._rows("SELECT owner_kind, owner_id, count(*) AS n FROM memories GROUP BY owner_kind, owner_id"
                          " ORDER BY owner_kind DESC, owner_id")
        return [(Owner(r["owner_kind"], r["owner_id"]), int(r["n"])) for r in rows]

    def apply_facts(self, owner: Owner, changes: Sequence[FactChange], conversation_id: int | None,
                    max_facts: int) -> list[int]:
        """Replace or add facts in one transaction, then drop the owner's least recently updated facts
        beyond ``max_facts``. Returns the ids of the facts written."""
        now = self.clock()
        written: list[int] = []
        with self._write() as db:
            for change in changes:
                if change.replace is not None:
                    cursor = db.execute(
                        "UPDATE memories SET fact = ?, updated_at = ?, source_conversation_id = coalesce(?,"
                        " source_conversation_id) WHERE id = ? AND owner_kind = ? AND owner_id = ?",
                        [change.text, now, conversation_id, change.replace, owner.kind, owner.id])
                    if cursor.rowcount == 1:
                        written.append(change.replace)
                        continue
                written.append(int(db.execute(
                    "INSERT INTO memories (owner_kind, owner_id, fact, source_conversation_id, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", [owner.kind, owner.id, change.text, conversation_id, now, now]
                ).lastrowid or 0))
            db.execute(
                "DELETE FROM memories WHERE owner_kind = ? AND owner_id = ? AND id NOT IN (SELECT id FROM memories"
                " WHERE owner_kind = ? AND owner_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?)",
                [owner.kind, owner.id, owner.kind, owner.id, max_facts])
        return written

    def forget_fact(self, fact_id: int) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM memories WHERE id = ?", [fact_id]).rowcount == 1

    def owner_counts(self, owner: Owner) -> tuple[int, int]:
        """(facts, messages) that :meth:`forget_owner` would delete."""
        facts = self._rows("SELECT count(*) AS n FROM memories WHERE owner_kind = ? AND owner_id = ?",
                           [owner.kind, owner.id])[0]["n"]
        turns, params = self._owner_turns(owner)
        messages = self._rows(f"SELECT count(*) AS n FROM messages WHERE (conversation_id, turn) IN ({turns})",
                              params)[0]["n"]
        return int(facts), int(messages)

    @staticmethod
    def _owner_turns(owner: Owner) -> tuple[str, list[Any]]:
        """SQL selecting (conversation_id, turn) of the turns in which ``owner`` spoke."""
        if owner.kind == "speaker":
            return "SELECT conversation_id, turn FROM messages WHERE role = 'user' AND speaker = ?", [owner.id]
        return ("SELECT m.conversation_id, m.turn FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                " WHERE m.role = 'user' AND m.speaker IS NULL AND c.device_id = ?", [owner.id])

    def forget_owner(self, owner: Owner) -> tuple[int, int]:
        """Forget everything learnt about ``owner``: their facts, and the messages they were learnt
        from (a speaker's turns; for a device, its turns by unknown voices), so that nothing is
        distilled again. Returns (facts, messages) deleted."""
        turns, params = self._owner_turns(owner)
        with self._write() as db:
            facts = db.execute("DELETE FROM memories WHERE owner_kind = ? AND owner_id = ?",
                               [owner.kind, owner.id]).rowcount
            messages = db.execute(f"DELETE FROM messages WHERE (conversation_id, turn) IN ({turns})", params).rowcount
        return facts, messages

    def forget_device(self, device_id: str) -> tuple[int, int]:
        """A device's facts and all its conversations. Returns (facts, conversations) deleted."""
        with self._write() as db:
            facts = db.execute("DELETE FROM memories WHERE owner_kind = 'device' AND owner_id = ?",
                               [device_id]).rowcount
            conversations = db.execute("DELETE FROM conversations WHERE device_id = ?", [device_id]).rowcount
        return facts, conversations

    def forget_everything(self) -> tuple[int, int]:
        """Every fact and conversation (voiceprints stay). Returns (facts, conversations) deleted."""
        with self._write() as db:
            facts = db.execute("DELETE FROM memories").rowcount
            conversations = db.execute("DELETE FROM conversations").rowcount
        return facts, conversations

    # ---- voiceprints --------------------------------------------------------------------------
    def voiceprints(self) -> list[Voiceprint]:
        return [_voiceprint(r) for r in self._rows("SELECT * FROM voiceprints ORDER BY name COLLATE NOCASE")]

    def voiceprint(self, name: str) -> Voiceprint | None:
        rows = self._rows("SELECT * FROM voiceprints WHERE name = ? COLLATE NOCASE", [name])
        return _voiceprint(rows[0]) if rows else None

    def voiceprints_version(self) -> tuple[int, float, int]:
        """Changes whenever a voiceprint is added, replaced or removed (cheap; for caches)."""
        with self._lock:
            row = self.db.execute("SELECT count(*), coalesce(max(updated_at), 0), coalesce(sum(id), 0)"
                                  " FROM voiceprints").fetchone()
        return int(row[0]), float(row[1]), int(row[2])

    def save_voiceprint(self, name: str, embeddings: npt.NDArray[np.floating], *, model_id: str,
                        preprocessing: str, source: str) -> Voiceprint:
        """Create ``name``'s voiceprint or replace its embeddings (the name keeps its spelling)."""
        rows = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if rows.shape[0] == 0 or not np.all(np.isfinite(rows)):
            raise VoiceprintError("a voiceprint needs at least one finite embedding")
        now = self.clock()
        with self._write() as db:
            db.execute(
                "INSERT INTO voiceprints (name, embeddings, clips, dims, model_id, preprocessing, source, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " embeddings = excluded.embeddings, clips = excluded.clips, dims = excluded.dims,"
                " model_id = excluded.model_id, preprocessing = excluded.preprocessing, source = excluded.source,"
                " updated_at = excluded.updated_at",
                [name, _blob(rows), rows.shape[0], rows.shape[1], model_id, preprocessing, source, now, now])
        saved = self.voiceprint(name)
        assert saved is not None
        return saved

    def remove_voiceprint(self, name: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM voiceprints WHERE name = ? COLLATE NOCASE", [name]).rowcount == 1

    # ---- overview and export ------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per table: conversations, messages, memories, voiceprints."""
        with self._lock:
            return {t: int(self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                    for t in ("conversations", "messages", "memories", "voiceprints")}

    def export(self) -> dict[str, Any]:
        """Everything stored, as JSON-ready data (voiceprints without their embeddings)."""
        with self._lock:
            conversations = []
            for conv in self.conversations():
                data = asdict(conv)
                data["messages"] = [asdict(m) for m in self.messages(conv.id)]
                for message in data["messages"]:
                    message["latency_ms"] = json.loads(message["latency_ms"]) if message["latency_ms"] else None
                conversations.append(data)
            return {"voiceprints": [v.to_dict() for v in self.voiceprints()],
                    "memories": [f.to_dict() for f in self.facts()],
                    "conversations": conversations}
