"""The database layer: WAL, versioned migrations per component, concurrent openers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from xiaozhi_local.store import connect
from xiaozhi_local.store.db import (
    Database,
    Migration,
    StoreError,
    applied_migrations,
    migrate,
    register_migrations,
    registered_components,
)


def test_connect_creates_a_wal_database_with_the_devices_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "xiaozhi.db"
    db = connect(path)
    assert path.exists()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert {"devices", "pairing_requests", "schema_migrations"} <= set(db.table_names())
    assert applied_migrations(db)["devices"] == 1
    db.close()


def test_migrations_run_once_in_order_and_are_recorded(tmp_path: Path) -> None:
    calls: list[int] = []

    def step(n: int):
        def apply(db: Database) -> None:
            calls.append(n)
            db.execute(f"CREATE TABLE t{n} (x INTEGER)")
        return apply

    components = {"demo": (Migration(1, "t1", step(1)), Migration(2, "t2", step(2)),
                           Migration(3, "t3 by sql", "CREATE TABLE t3 (y TEXT); CREATE INDEX t3y ON t3 (y)"))}
    db = connect(tmp_path / "x.db", migrate_schema=False)
    assert migrate(db, components) == ["demo 1: t1", "demo 2: t2", "demo 3: t3 by sql"]
    assert migrate(db, components) == []  # idempotent
    assert calls == [1, 2]
    assert {"t1", "t2", "t3"} <= set(db.table_names())
    rows = db.execute("SELECT component, version, name FROM schema_migrations WHERE component = 'demo' "
                      "ORDER BY version").fetchall()
    assert rows == [("demo", 1, "t1"), ("demo", 2, "t2"), ("demo", 3, "t3 by sql")]


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    def bad(db: Database) -> None:
        db.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("boom")

    db = connect(tmp_path / "x.db", migrate_schema=False)
    with pytest.raises(RuntimeError):
        migrate(db, {"demo": (Migration(1, "bad", bad),)})
    assert "half" not in db.table_names()
    assert "demo" not in applied_migrations(db)


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db", migrate_schema=False)
    migrate(db, {"demo": (Migration(1, "a", "CREATE TABLE a (x)"), Migration(2, "b", "CREATE TABLE b (x)"))})
    with pytest.raises(StoreError, match="newer xiaozhi-local"):
        migrate(db, {"demo": (Migration(1, "a", "CREATE TABLE a (x)"),)})


def test_register_migrations_validates_versions() -> None:
    with pytest.raises(ValueError, match="without gaps"):
        register_migrations("gappy", [Migration(1, "a", "SELECT 1"), Migration(3, "c", "SELECT 1")])
    with pytest.raises(ValueError, match="component"):
        register_migrations("bad name;", [Migration(1, "a", "SELECT 1")])
    assert "gappy" not in registered_components()
    assert "devices" in registered_components()


def test_other_components_can_cascade_on_device_removal(tmp_path: Path) -> None:
    """How the memory/voiceprint tables are meant to hang off devices."""
    db = connect(tmp_path / "x.db")
    migrate(db, {"notes": (Migration(1, "notes", "CREATE TABLE notes (device_id TEXT NOT NULL "
                                                 "REFERENCES devices(id) ON DELETE CASCADE, text TEXT)"),)})
    db.execute("INSERT INTO devices (id, state, first_seen, last_seen) VALUES ('d1', 'paired', 0, 0)")
    db.execute("INSERT INTO notes VALUES ('d1', 'likes tea')")
    db.execute("DELETE FROM devices WHERE id = 'd1'")
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 0


def test_two_processes_worth_of_connections_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            connect(path).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations WHERE component = 'devices'").fetchone()[0] == 1


def test_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the data directory"):
        connect(blocker / "x.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the database"):
        connect(garbage)
