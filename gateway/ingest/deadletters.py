"""Dead letters: messages the ingest will never store, kept with the reason for a person.

A message lands here when it is not a valid daq message (malformed, forged topic, out of
range: :func:`daq.payload.decode_data` says why) or when the storage refuses it for good
(HTTP 4xx such as a field type conflict). Each is kept alone with its reason, so one bad
message never takes good ones with it. SQLite, one table, appended from the writer thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DeadLetters"]


class DeadLetters:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS dead_letter ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " received_ns INTEGER NOT NULL,"
            " topic TEXT NOT NULL,"
            " payload BLOB NOT NULL,"
            " reason TEXT NOT NULL)"
        )

    def put_many(self, messages: Sequence[tuple[str, bytes]], reason: str) -> None:
        """Keep messages with the one reason they share, in one transaction."""
        if not messages:
            return
        now = time.time_ns()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO dead_letter(received_ns, topic, payload, reason) VALUES (?,?,?,?)",
                [(now, t, p, reason[:1000]) for t, p in messages])

    def rows(self, limit: int = 1000) -> list[tuple[int, str, bytes, str]]:
        """The oldest kept messages: (received_ns, topic, payload, reason)."""
        cur = self._db.execute(
            "SELECT received_ns, topic, payload, reason FROM dead_letter ORDER BY id LIMIT ?",
            (limit,))
        return [(int(n), str(t), bytes(p), str(r)) for n, t, p, r in cur.fetchall()]

    def count(self) -> int:
        n: int = self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
        return n

    def close(self) -> None:
        self._db.close()
