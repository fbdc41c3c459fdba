"""The durable outbox: every message is committed to SQLite before it is published and
leaves only when it is confirmed: by storage's end-to-end acknowledgement (the gateway's
default) or by the broker's PUBACK (``delivery: broker``; the ingest's spool uses it that way
too). A row's id is its sequence number, and ``epoch`` names the file: the pair identifies a
message across restarts (ids are never reused: ``AUTOINCREMENT``).

WAL mode with ``synchronous=NORMAL``: a committed message survives the process being killed
(the WAL is in the OS page cache); a power cut may lose the last commits (documented in
docs/durability.md). Used from one thread only (the gateway's event loop thread).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterable, Sequence
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
        self._db.execute("CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY,"
                         " value TEXT NOT NULL)")
        self._db.execute("INSERT OR IGNORE INTO outbox_meta VALUES ('epoch', ?)",
                         (secrets.token_hex(8),))
        self.epoch: str = self._db.execute(
            "SELECT value FROM outbox_meta WHERE key = 'epoch'").fetchone()[0]

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

    def put(self, make: Callable[[int], tuple[str, bytes]]) -> int:
        """Commit one message whose payload depends on its own id (a sequenced, signed batch):
        ``make(id)`` returns (topic, payload). Returns the id."""
        with self._db:
            self._db.execute("BEGIN")
            cur = self._db.execute("INSERT INTO outbox(topic, payload) VALUES ('', x'')")
            row_id = int(cur.lastrowid or 0)
            topic, payload = make(row_id)
            self._db.execute("UPDATE outbox SET topic = ?, payload = ? WHERE id = ?",
                             (topic, payload, row_id))
        return row_id

    def ack_ranges(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Remove the messages whose ids lie in the inclusive ranges; how many were there."""
        removed = 0
        with self._db:
            self._db.execute("BEGIN")
            for first, last in ranges:
                removed += self._db.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?",
                                            (first, last)).rowcount
        return removed

    def first_id(self) -> int | None:
        row = self._db.execute("SELECT MIN(id) FROM outbox").fetchone()
        return None if row[0] is None else int(row[0])

    def count(self) -> int:
        n: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        return n

    def close(self) -> None:
        self._db.close()
