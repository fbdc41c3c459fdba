"""The embedded historian: readings in one SQLite file, the default storage.

One table, keyed by ``(enterprise, gateway, device, channel, ts_ns)``; ``INSERT OR REPLACE``
makes a redelivered reading overwrite itself, the same rule as InfluxDB's "same series,
same timestamp". WAL mode with ``synchronous=NORMAL``: a committed write survives a crash of
the process (not necessarily of the machine) and readers never block the writer.

Values are stored as in line protocol: a number as REAL in ``value`` (an int widened to
float), a string in ``text``; ``raw`` only when numeric. ±inf are stored as such; NaN is
stored as NULL (SQLite has no NaN) and comes back as NaN, since a reading that is not bad
cannot lack a value.

Threads: the storage owns one connection, used by :meth:`HistorianStorage.write` (one
transaction per call) and guarded by a lock, so it may be opened in one thread and written
from another. The query helpers (:meth:`~HistorianStorage.latest`,
:meth:`~HistorianStorage.series`, :meth:`~HistorianStorage.count`) open a connection of their
own per call, so they can run in any thread, concurrently with the writer (WAL); the
module-level :func:`open_reader` gives a read-only connection for other readers.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from daq.model import Quality, Reading
from gateway.storage.base import StorageError

__all__ = ["SCHEMA_VERSION", "HistorianStorage", "open_reader"]

SCHEMA_VERSION = 3  # 2: cert and verification; 3: u renamed u_std (older ones migrated on open)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    enterprise TEXT NOT NULL,
    gateway    TEXT NOT NULL,
    device     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    ts_ns      INTEGER NOT NULL,
    quantity   TEXT NOT NULL,
    unit       TEXT NOT NULL,
    value      REAL,
    text       TEXT,
    raw        REAL,
    quality    TEXT NOT NULL,
    reason     TEXT,
    u_std      REAL,
    k          REAL,
    cert       TEXT,
    verification TEXT,
    PRIMARY KEY (enterprise, gateway, device, channel, ts_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_device_channel_ts ON readings (device, channel, ts_ns);
"""

_INSERT = (
    "INSERT OR REPLACE INTO readings (enterprise, gateway, device, channel, ts_ns, quantity, "
    "unit, value, text, raw, quality, reason, u_std, k, cert, verification) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_COLUMNS = ("ts_ns, enterprise, gateway, device, channel, quantity, unit, value, text, raw, "
            "quality, reason, u_std, k, cert, verification")
_MIGRATIONS = {  # from version n to n + 1
    1: ("ALTER TABLE readings ADD COLUMN cert TEXT",
        "ALTER TABLE readings ADD COLUMN verification TEXT"),
    # InfluxDB 3's SQL folds unquoted names: u and U would collide; one name everywhere
    2: ("ALTER TABLE readings RENAME COLUMN u TO u_std",),
}


def _finite(x: float | int | str | None) -> float | None:
    if x is None or isinstance(x, str):
        return None
    f = float(x)
    return None if math.isnan(f) else f


def _row(r: Reading) -> tuple[Any, ...]:
    v = r.value
    # a number as REAL (±inf included; SQLite stores NaN as NULL), a string as text
    num, text = (None, v) if isinstance(v, str) else (_finite(v), None)
    return (r.enterprise, r.gateway, r.device, r.channel, r.ts_ns, r.quantity, r.unit, num,
            text, _finite(r.raw), str(r.quality), r.reason, _finite(r.u), _finite(r.k), r.cert,
            r.verification)


def _reading(row: tuple[Any, ...]) -> Reading:
    (ts_ns, enterprise, gateway, device, channel, quantity, unit, value, text, raw, quality,
     reason, u, k, cert, verification) = row
    q = Quality(quality)
    v: float | str | None = value if value is not None else text
    if v is None and q is not Quality.BAD:
        v = math.nan  # stored NaN
    return Reading(ts_ns=ts_ns, enterprise=enterprise, gateway=gateway, device=device,
                   channel=channel, quantity=quantity, unit=unit, value=v, raw=raw, quality=q,
                   reason=reason, u=u, k=k, cert=cert, verification=verification)


def open_reader(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to a historian file (for any thread; close it when done)."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    conn.execute("PRAGMA query_only = ON")
    return conn


class HistorianStorage:
    """Readings in a SQLite file (created with its directory if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._conn.executescript(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                version = SCHEMA_VERSION
            while version in _MIGRATIONS:
                with self._conn:
                    self._conn.execute("BEGIN IMMEDIATE")
                    for statement in _MIGRATIONS[version]:
                        self._conn.execute(statement)
                    version += 1
                    self._conn.execute(f"PRAGMA user_version = {version}")
            if version != SCHEMA_VERSION:
                raise StorageError(f"{self.path}: historian schema {version}, this code "
                                   f"knows {SCHEMA_VERSION}", retryable=False)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"historian {self.path}: {exc}", retryable=False) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def write(self, readings: Sequence[Reading]) -> None:
        """Insert or replace readings in one transaction."""
        if not readings:
            return
        rows = [_row(r) for r in readings]
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StorageError(f"{self!r} is closed", retryable=False)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_INSERT, rows)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # locked, busy, disk I/O, disk full
                raise StorageError(f"historian {self.path}: {exc}", retryable=True) from exc
            except sqlite3.Error as exc:
                raise StorageError(f"historian {self.path}: {exc}", retryable=False) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> HistorianStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries (each on its own connection) -----------------------------------------

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(open_reader(self.path)) as conn:
                yield conn
        except sqlite3.Error as exc:
            raise StorageError(f"historian {self.path}: {exc}", retryable=False) from exc

    def latest(self, device: str | None = None) -> list[Reading]:
        """The newest reading of every channel (of one device), ordered by device, channel."""
        where, args = ("WHERE device = ?", [device]) if device is not None else ("", [])
        sql = (
            f"SELECT {_COLUMNS} FROM readings AS r JOIN ("
            f" SELECT enterprise, gateway, device, channel, MAX(ts_ns) AS ts_ns FROM readings"
            f" {where} GROUP BY enterprise, gateway, device, channel"
            f") USING (enterprise, gateway, device, channel, ts_ns)"
            f" ORDER BY device, channel, enterprise, gateway"
        )
        with self._reader() as conn:
            return [_reading(row) for row in conn.execute(sql, args)]

    def series(self, device: str, channel: str, start_ns: int | None = None,
               end_ns: int | None = None) -> list[Reading]:
        """Readings of one channel with ``start_ns <= ts_ns < end_ns``, oldest first."""
        where, args = self._where(device, channel, start_ns, end_ns)
        sql = f"SELECT {_COLUMNS} FROM readings {where} ORDER BY ts_ns"
        with self._reader() as conn:
            return [_reading(row) for row in conn.execute(sql, args)]

    def count(self, device: str | None = None, channel: str | None = None,
              start_ns: int | None = None, end_ns: int | None = None) -> int:
        """How many readings match (``start_ns <= ts_ns < end_ns``)."""
        where, args = self._where(device, channel, start_ns, end_ns)
        with self._reader() as conn:
            n: int = conn.execute(f"SELECT COUNT(*) FROM readings {where}", args).fetchone()[0]
            return n

    @staticmethod
    def _where(device: str | None, channel: str | None, start_ns: int | None,
               end_ns: int | None) -> tuple[str, list[Any]]:
        conds: list[str] = []
        args: list[Any] = []
        for cond, val in (("device = ?", device), ("channel = ?", channel),
                          ("ts_ns >= ?", start_ns), ("ts_ns < ?", end_ns)):
            if val is not None:
                conds.append(cond)
                args.append(val)
        return ("WHERE " + " AND ".join(conds) if conds else ""), args
