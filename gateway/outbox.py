"""The durable outbox: every message is committed to SQLite before it is published and
leaves only when the broker has acknowledged it (QoS 1).

WAL mode with ``synchronous=NORMAL``: a committed message survives the process being killed
(the WAL is in the OS page cache); a power cut may lose the last commits (documented in
docs/durability.md). Used from one thread only (the gateway's event loop thread).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path


class Outbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL,"
            " payload BLOB NOT NULL,"
            " retain INTEGER NOT NULL DEFAULT 0)"
        )

    def put_many(self, messages: Sequence[tuple[str, bytes]], *, retain: bool = False) -> None:
        """Commit messages durably, in one transaction (``retain``: to be published with
        the MQTT retain flag, e.g. a device's alarm state)."""
        if not messages:
            return
        with self._db:  # BEGIN … COMMIT
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO outbox(topic, payload, retain) VALUES (?, ?, ?)",
                                 [(t, p, int(retain)) for t, p in messages])

    def pending(self, after_id: int, limit: int) -> list[tuple[int, str, bytes, bool]]:
        """Messages not yet acknowledged with id > after_id, oldest first:
        (id, topic, payload, retain)."""
        cur = self._db.execute(
            "SELECT id, topic, payload, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [(i, t, p, bool(r)) for i, t, p, r in cur.fetchall()]

    def ack(self, ids: Iterable[int]) -> None:
        """Remove acknowledged messages."""
        rows = [(i,) for i in ids]
        if rows:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM outbox WHERE id = ?", rows)

    def count(self) -> int:
        n: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        return n

    def close(self) -> None:
        self._db.close()
