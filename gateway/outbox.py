"""The durable outbox: every message is committed to SQLite before it is published and
leaves only when it is confirmed: by storage's end-to-end acknowledgement (the gateway's
default) or by the broker's PUBACK (``delivery: broker``; the ingest's spool uses it that way
too). A row's id is its sequence number, and ``epoch`` names the file: the pair identifies a
message across restarts (ids are never reused: ``AUTOINCREMENT``).

WAL mode with ``synchronous=NORMAL``: a committed message survives the process being killed
(the WAL is in the OS page cache); a power cut may lose the last commits (documented in
docs/durability.md). Used from one thread only (the gateway's event loop thread).

Errors: a write or delete that the file system refuses (disk full, read-only, I/O error)
raises :class:`OutboxWriteError` after the transaction was rolled back, so the caller can
keep what it had and try again later; a file that cannot be opened for writing raises
:class:`OutboxOpenError` with one line saying why. Space: ``auto_vacuum=INCREMENTAL`` and
:meth:`Outbox.shrink` give the pages of confirmed rows back to the file system, and the WAL is
truncated after a checkpoint (docs/durability.md, "A full or read-only disk").
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from gateway.errors import GatewayError

__all__ = ["Outbox", "OutboxError", "OutboxOpenError", "OutboxReadError", "OutboxWriteError"]

_WAL_LIMIT_BYTES = 1 << 20  # the WAL is truncated to this after a checkpoint
_CONVERT_MAX_ROWS = 1000  # an old file without auto_vacuum is converted when this small


class OutboxError(GatewayError):
    """The outbox's file cannot be used as asked."""


class OutboxOpenError(OutboxError):
    """The outbox cannot be opened for writing (a read-only directory, a bad file)."""


class OutboxWriteError(OutboxError):
    """A write or delete was refused by the file system (full, read-only, I/O error); nothing
    of it was committed. Worth trying again later."""


class OutboxReadError(OutboxError):
    """A read failed (an I/O error of the file system). Worth trying again later."""


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    try:
        yield
    except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
        raise OutboxReadError(f"{what}: {exc}") from exc


@contextlib.contextmanager
def _writing(db: sqlite3.Connection, what: str) -> Iterator[None]:
    """Turn a refused write into :class:`OutboxWriteError`, rolled back: a COMMIT that fails
    (SQLITE_FULL) leaves its transaction open, and every later BEGIN would fail too."""
    try:
        yield
    except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
        raise OutboxWriteError(f"{what}: {exc}") from exc


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = self._db = sqlite3.connect(path, isolation_level=None,
                                            check_same_thread=False)
            self._open()
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise OutboxOpenError(
                f"outbox {path}: cannot be opened for writing: {exc}") from exc

    def _open(self) -> None:
        db = self._db
        new = not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox'").fetchone()
        if new:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
        db.execute("PRAGMA wal_autocheckpoint=256")  # 1 MiB: a small volume is not all WAL
        db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL,"
            " payload BLOB NOT NULL,"
            " retain INTEGER NOT NULL DEFAULT 0,"
            " legal INTEGER NOT NULL DEFAULT 0,"  # holds readings that are never dropped
            " readings INTEGER NOT NULL DEFAULT 0,"
            " created_ns INTEGER NOT NULL DEFAULT 0)"
        )
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        for column in ("legal", "readings", "created_ns"):  # a file of an earlier version
            if column not in columns:
                db.execute(f"ALTER TABLE outbox ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        db.execute("CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY,"
                   " value TEXT NOT NULL)")
        db.execute("INSERT OR IGNORE INTO outbox_meta VALUES ('epoch', ?)",
                   (secrets.token_hex(8),))
        self.epoch: str = db.execute(
            "SELECT value FROM outbox_meta WHERE key = 'epoch'").fetchone()[0]
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2 and \
                self.count() <= _CONVERT_MAX_ROWS:  # an earlier version's file, small: convert
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("VACUUM")

    def put_many(self, messages: Sequence[tuple[str, bytes]], *, retain: bool = False) -> None:
        """Commit messages durably, in one transaction (``retain``: to be published with
        the MQTT retain flag, e.g. a device's alarm state)."""
        if not messages:
            return
        now = time.time_ns()
        with _writing(self._db, "outbox write"), self._db:  # BEGIN … COMMIT
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO outbox(topic, payload, retain, created_ns) VALUES (?, ?, ?, ?)",
                [(t, p, int(retain), now) for t, p in messages])

    def pending(self, after_id: int, limit: int) -> list[tuple[int, str, bytes, bool]]:
        """Messages not yet acknowledged with id > after_id, oldest first:
        (id, topic, payload, retain)."""
        with _reading("outbox read"):
            cur = self._db.execute(
                "SELECT id, topic, payload, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            )
            return [(i, t, p, bool(r)) for i, t, p, r in cur.fetchall()]

    def ack(self, ids: Iterable[int]) -> None:
        """Remove acknowledged messages (:class:`OutboxWriteError` if the disk refuses)."""
        rows = [(i,) for i in ids]
        if rows:
            with _writing(self._db, "outbox delete"), self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM outbox WHERE id = ?", rows)

    def put(self, make: Callable[[int], tuple[str, bytes]], *, legal: bool = False,
            readings: int = 0) -> int:
        """Commit one message whose payload depends on its own id (a sequenced, signed batch):
        ``make(id)`` returns (topic, payload). Returns the id. ``legal``: it holds readings
        that the cap never drops (:meth:`drop_oldest`); ``readings``: how many it holds."""
        with _writing(self._db, "outbox write"), self._db:
            self._db.execute("BEGIN")
            cur = self._db.execute(
                "INSERT INTO outbox(topic, payload, legal, readings, created_ns)"
                " VALUES ('', x'', ?, ?, ?)", (int(legal), readings, time.time_ns()))
            row_id = int(cur.lastrowid or 0)
            topic, payload = make(row_id)
            self._db.execute("UPDATE outbox SET topic = ?, payload = ? WHERE id = ?",
                             (topic, payload, row_id))
        return row_id

    def ack_ranges(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Remove the messages whose ids lie in the inclusive ranges; how many were there
        (:class:`OutboxWriteError` if the disk refuses)."""
        removed = 0
        with _writing(self._db, "outbox delete"), self._db:
            self._db.execute("BEGIN")
            for first, last in ranges:
                removed += self._db.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?",
                                            (first, last)).rowcount
        return removed

    def first_id(self) -> int | None:
        with _reading("outbox read"):
            row = self._db.execute("SELECT MIN(id) FROM outbox").fetchone()
        return None if row[0] is None else int(row[0])

    def count(self) -> int:
        with _reading("outbox read"):
            n: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        return n

    # space ---------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes the rows occupy (pages in use, free pages not counted): what the cap limits."""
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * page

    def file_bytes(self) -> int:
        """What the outbox takes on disk now: the database file and its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    def oldest_created_ns(self, *, legal: bool | None = None) -> int | None:
        """When the oldest row (of that ``legal`` status) was created; ids follow creation, so
        this reads from the start of the table, not the whole of it."""
        where = "" if legal is None else f" WHERE legal = {int(legal)}"
        with _reading("outbox read"):
            row = self._db.execute(
                f"SELECT created_ns FROM outbox{where} ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def drop_oldest(self, *, rows: int = 0, older_than_ns: int | None = None
                    ) -> tuple[int, int]:
        """Delete the oldest rows that hold no legal readings: ``rows`` of them, and every one
        created before ``older_than_ns``. Returns (rows, readings) deleted
        (:class:`OutboxWriteError` if the disk refuses)."""
        where = ("legal = 0 AND (created_ns < ? OR id IN (SELECT id FROM outbox WHERE legal = 0"
                 " ORDER BY id LIMIT ?))")
        args = (-1 if older_than_ns is None else older_than_ns, rows)
        with _writing(self._db, "outbox drop"), self._db:
            self._db.execute("BEGIN")
            n, readings = self._db.execute(
                f"SELECT COUNT(*), TOTAL(readings) FROM outbox WHERE {where}", args).fetchone()
            self._db.execute(f"DELETE FROM outbox WHERE {where}", args)
        return int(n), int(readings)

    def shrink(self) -> int:
        """Give free pages back to the file system and truncate the WAL; the bytes released.
        (:class:`OutboxWriteError` if the disk refuses: it needs WAL space too.)"""
        before = self.file_bytes()
        with _writing(self._db, "outbox shrink"):
            # sqlite3_exec steps it to the end; execute() would free one page only (a
            # statement without result columns is stepped once)
            self._db.executescript("PRAGMA incremental_vacuum;")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return before - self.file_bytes()

    def checkpoint(self) -> None:
        """Copy the WAL into the file and truncate it: on a full disk the WAL can hold all
        the data while the file is nearly empty, and only this gives its space back (tried
        before writing again, :class:`OutboxWriteError` if the disk still refuses)."""
        with _writing(self._db, "outbox checkpoint"):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def free_bytes(self) -> int:
        """Bytes of free pages in the file (what :meth:`shrink` can give back)."""
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        return page * int(self._db.execute("PRAGMA freelist_count").fetchone()[0])

    def close(self) -> None:
        self._db.close()
