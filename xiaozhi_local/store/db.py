"""The project's one SQLite database (``AppConfig.db_path``), opened with sqlite-utils.

Every process that uses it (``xiaozhi serve``, ``xiaozhi device pair`` …) calls :func:`connect`,
which:

* opens the file in **WAL** mode, so readers never wait for a writer and the CLI can change the
  registry while the server runs; ``synchronous=FULL`` so that a committed transaction survives a
  crash or power cut; a **busy timeout** so that two writers queue instead of failing; foreign
  keys on (``ON DELETE CASCADE`` works);
* brings the schema up to date by running every **registered migration** not yet recorded in
  the ``schema_migrations`` table.

Migrations are grouped by *component* (``"devices"``, later ``"memory"``, ``"voiceprints"`` …);
each component numbers its own migrations 1, 2, 3 … and never edits one that has shipped.
A module that owns tables declares them once, at import time::

    from xiaozhi_local.store.db import Migration, register_migrations

    def _v1(db: Database) -> None:
        db["memories"].create({"id": int, "device_id": str, "text": str}, pk="id",
                              foreign_keys=[("device_id", "devices", "id")])

    register_migrations("memory", [Migration(1, "memories table", _v1)])

and is imported from :mod:`xiaozhi_local.store` (its ``__init__``), so that every process sees
every component. A migration is a callable taking the :class:`sqlite_utils.Database` (or a SQL
string, run with ``executescript``-like semantics); it runs inside one ``BEGIN IMMEDIATE``
transaction together with its ``schema_migrations`` row, so a crash leaves it either fully
applied or not at all, and two processes starting at once apply it exactly once. A database
that already has a *newer* migration than this code knows is refused with a clear message
(an older xiaozhi-local must not write to a newer schema).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlite_utils
from sqlite_utils import Database

from ..errors import XiaozhiError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "Database",
    "Migration",
    "StoreError",
    "applied_migrations",
    "connect",
    "immediate",
    "migrate",
    "register_migrations",
    "registered_components",
]

BUSY_TIMEOUT_MS: Final = 5000
"""How long a writer waits for another process's write transaction before giving up."""

MIGRATIONS_TABLE: Final = "schema_migrations"


class StoreError(XiaozhiError):
    """The database cannot be opened or migrated; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step of one component: ``version`` 1, 2, 3 … in order, never edited once shipped."""

    version: int
    name: str
    apply: Callable[[Database], None] | str
    """A function of the database, or plain SQL statements separated by ``;`` (no triggers: a
    ``;`` inside a statement would split it; use a function for those)."""

    def run(self, db: Database) -> None:
        if callable(self.apply):
            self.apply(db)
            return
        for statement in self.apply.split(";"):
            if statement.strip():
                db.execute(statement)


_REGISTRY: dict[str, tuple[Migration, ...]] = {}


def register_migrations(component: str, migrations: Iterable[Migration]) -> None:
    """Declare ``component``'s migrations (call once, at import time of the owning module).

    Versions must be 1..n without gaps. Registering the same component again replaces its list
    (harmless on re-import).
    """
    steps = tuple(sorted(migrations, key=lambda m: m.version))
    if not component or not component.replace("_", "").isalnum():
        raise ValueError(f"bad component name {component!r}")
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise ValueError(f"{component}: migration versions must be 1..n without gaps")
    _REGISTRY[component] = steps


def registered_components() -> dict[str, tuple[Migration, ...]]:
    return dict(_REGISTRY)


@contextlib.contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """A write transaction that takes the write lock at once (``BEGIN IMMEDIATE``).

    Use it for read-then-write logic: a plain deferred transaction that reads first can fail
    with "database is locked" when it later tries to write after another process committed.
    """
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")


def _ensure_migrations_table(db: Database) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
        " component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
        " applied_at REAL NOT NULL, PRIMARY KEY (component, version))"
    )


def applied_migrations(db: Database) -> dict[str, int]:
    """component → highest applied version."""
    _ensure_migrations_table(db)
    rows = db.execute(f"SELECT component, MAX(version) FROM {MIGRATIONS_TABLE} GROUP BY component").fetchall()
    return {component: int(version) for component, version in rows}


def migrate(db: Database, components: dict[str, tuple[Migration, ...]] | None = None) -> list[str]:
    """Apply every pending migration; returns ``["devices 1: devices table", …]`` for what ran."""
    components = registered_components() if components is None else components
    ran: list[str] = []
    _ensure_migrations_table(db)
    for component, steps in sorted(components.items()):
        known = len(steps)
        with immediate(db):
            current = applied_migrations(db).get(component, 0)
            if current > known:
                raise StoreError(
                    f"the database was written by a newer xiaozhi-local ({component} schema version {current}, "
                    f"this one knows {known}); upgrade xiaozhi-local"
                )
            for step in steps[current:]:
                step.run(db)
                db.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
                    (component, step.version, step.name, time.time()),
                )
                ran.append(f"{component} {step.version}: {step.name}")
    return ran


def connect(path: Path | str, *, migrate_schema: bool = True, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Database:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date.

    ``":memory:"`` gives a private in-memory database (tests). The connection may be used from a
    thread other than the one that opened it, but by one thread at a time.
    """
    memory = str(path) == ":memory:"
    if not memory:
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {target.parent}: {exc.strerror or exc}") from None
    try:
        conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        db = sqlite_utils.Database(conn, execute_plugins=False)
        if not memory:
            db.enable_wal()
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if migrate_schema:
            migrate(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from None
    return db
