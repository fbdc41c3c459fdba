"""The journal of a calibration session: one SQLite file (WAL, ``synchronous=FULL``) per
session, written reading by reading so that a killed session loses nothing it recorded and
resumes at its first unfinished setpoint.

Tables: ``meta`` (session id, the procedure's text as run, DUT and reference ids, options,
status, certificate id), ``attempts`` (one per try of a setpoint: a resumed setpoint is tried
again from settling, and the earlier, interrupted attempt's readings stay), ``readings``
(every raw reading as read, append-only: triggers refuse UPDATE and DELETE), ``points`` (the
attempt that finished each setpoint and its result as JSON) and ``events`` (commands sent,
prompts answered, warnings).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.errors import GatewayError

__all__ = ["JournalError", "RawReading", "SessionJournal"]

Role = Literal["dut", "ref"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, setpoint INTEGER NOT NULL, started_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY,
    attempt INTEGER NOT NULL REFERENCES attempts(id),
    setpoint INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('dut', 'ref')),
    idx INTEGER NOT NULL,
    t_ns INTEGER NOT NULL,
    value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    setpoint INTEGER PRIMARY KEY, attempt INTEGER NOT NULL REFERENCES attempts(id),
    finished_at TEXT NOT NULL, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, text TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS readings_no_update BEFORE UPDATE ON readings
    BEGIN SELECT RAISE(ABORT, 'raw readings are append-only'); END;
CREATE TRIGGER IF NOT EXISTS readings_no_delete BEFORE DELETE ON readings
    BEGIN SELECT RAISE(ABORT, 'raw readings are append-only'); END;
"""


class JournalError(GatewayError):
    """The journal file is missing, not a session journal, or already exists."""


@dataclass(frozen=True, slots=True)
class RawReading:
    seq: int
    attempt: int
    setpoint: int
    role: Role
    idx: int
    t_ns: int
    value: float


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class SessionJournal:
    """Open with :meth:`create` (a new session) or :meth:`open` (resume, inspect)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def _connect(cls, path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        return conn

    @classmethod
    def create(cls, path: str | Path, meta: dict[str, str]) -> SessionJournal:
        p = Path(path)
        if p.exists():
            raise JournalError(f"{p}: a session journal already exists (resume it instead)")
        p.parent.mkdir(parents=True, exist_ok=True)
        journal = cls(p, cls._connect(p))
        with journal._conn:
            journal._conn.execute("BEGIN")
            for key, value in {**meta, "created_at": _now(), "status": "running"}.items():
                journal._conn.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
        return journal

    @classmethod
    def open(cls, path: str | Path) -> SessionJournal:
        p = Path(path)
        if not p.is_file():
            raise JournalError(f"{p}: no such session journal")
        try:
            conn = cls._connect(p)
            conn.execute("SELECT value FROM meta WHERE key = 'session_id'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{p}: not a session journal ({exc})") from exc
        journal = cls(p, conn)
        if journal.get("session_id") is None:
            raise JournalError(f"{p}: not a session journal (no session id)")
        return journal

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SessionJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta --------------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise JournalError(f"{self.path}: no {key!r} in the journal")
        return value

    def set(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- recording ---------------------------------------------------------------------------
    def start_attempt(self, setpoint: int) -> int:
        cur = self._conn.execute("INSERT INTO attempts (setpoint, started_at) VALUES (?, ?)",
                                 (setpoint, _now()))
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def add_reading(self, attempt: int, setpoint: int, role: Role, idx: int, value: float,
                    t_ns: int | None = None) -> None:
        """Append one raw reading; committed (and fsynced) before this returns."""
        self._conn.execute(
            "INSERT INTO readings (attempt, setpoint, role, idx, t_ns, value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (attempt, setpoint, role, idx, time.time_ns() if t_ns is None else t_ns, value))

    def finish_point(self, setpoint: int, attempt: int, result: dict[str, Any]) -> None:
        self._conn.execute("INSERT INTO points VALUES (?, ?, ?, ?)",
                           (setpoint, attempt, _now(), json.dumps(result, allow_nan=False)))

    def event(self, text: str) -> None:
        self._conn.execute("INSERT INTO events (at, text) VALUES (?, ?)", (_now(), text))

    # -- reading back ------------------------------------------------------------------------
    def finished(self) -> dict[int, int]:
        """Finished setpoints → the attempt that finished them."""
        rows = self._conn.execute("SELECT setpoint, attempt FROM points").fetchall()
        return {int(s): int(a) for s, a in rows}

    def results(self) -> dict[int, dict[str, Any]]:
        rows = self._conn.execute("SELECT setpoint, result FROM points").fetchall()
        return {int(s): json.loads(r) for s, r in rows}

    def next_setpoint(self, count: int) -> int | None:
        done = self.finished()
        return next((i for i in range(count) if i not in done), None)

    def readings(self, *, attempt: int | None = None) -> list[RawReading]:
        sql = "SELECT seq, attempt, setpoint, role, idx, t_ns, value FROM readings"
        args: tuple[int, ...] = ()
        if attempt is not None:
            sql += " WHERE attempt = ?"
            args = (attempt,)
        return [RawReading(*r) for r in self._conn.execute(sql + " ORDER BY seq", args)]

    def point_readings(self, setpoint: int) -> tuple[list[float], list[float]]:
        """(DUT, reference) raw readings of the attempt that finished ``setpoint``."""
        attempt = self.finished().get(setpoint)
        if attempt is None:
            raise JournalError(f"setpoint {setpoint} is not finished")
        rows = self.readings(attempt=attempt)
        return ([r.value for r in rows if r.role == "dut"],
                [r.value for r in rows if r.role == "ref"])

    def events(self) -> list[tuple[str, str]]:
        return [(str(a), str(t)) for a, t in
                self._conn.execute("SELECT at, text FROM events ORDER BY seq")]
