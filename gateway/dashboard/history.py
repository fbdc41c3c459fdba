"""Stored readings for the dashboard: a channel's trend and an energy register's samples.

From the embedded historian (read-only SQLite connection per query, concurrent with the
ingest writing) or from InfluxDB 1.x through InfluxQL ``/query`` (measurement = quantity,
tags enterprise/gateway/device/channel). InfluxDB v2 (Flux) is not supported here: the
dashboard then shows live values without trends and energy (:class:`HistoryUnavailable`).
Blocking calls: run them in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Protocol

from daq.config import Historian, InfluxV1, LoadedConfig
from gateway.energy.accounting import Sample
from gateway.errors import GatewayError
from gateway.storage.base import StorageError
from gateway.storage.historian import open_reader
from gateway.storage.influx_v1 import InfluxV1Storage, quote_ident

NS = 1_000_000_000


class HistoryUnavailable(GatewayError):
    """The storage cannot answer (not configured for queries, unreachable, no file yet)."""


@dataclass(frozen=True, slots=True)
class Where:
    enterprise: str
    gateway: str
    device: str
    channel: str
    quantity: str


class History(Protocol):
    name: str

    def trend(self, w: Where, start_ns: int, end_ns: int,
              points: int) -> list[tuple[int, float]]: ...

    def samples(self, w: Where, start_ns: int, end_ns: int) -> list[Sample]: ...

    def close(self) -> None: ...


class HistorianHistory:
    name = "historian"

    def __init__(self, path: str) -> None:
        self.path = path

    def _rows(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """One query on a read-only connection of its own (any thread, beside the writer)."""
        try:
            with closing(open_reader(self.path)) as conn:
                return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise HistoryUnavailable(f"historian {self.path}: {exc}") from exc

    def trend(self, w: Where, start_ns: int, end_ns: int,
              points: int) -> list[tuple[int, float]]:
        bucket = max(1, (end_ns - start_ns) // max(1, points))
        rows = self._rows(
            "SELECT MIN(ts_ns), AVG(value) FROM readings WHERE enterprise=? AND gateway=? "
            "AND device=? AND channel=? AND ts_ns >= ? AND ts_ns < ? AND value IS NOT NULL "
            "GROUP BY (ts_ns - ?) / ? ORDER BY 1",
            (w.enterprise, w.gateway, w.device, w.channel, start_ns, end_ns, start_ns, bucket))
        return [(int(t), float(v)) for t, v in rows]

    def samples(self, w: Where, start_ns: int, end_ns: int) -> list[Sample]:
        rows = self._rows(
            "SELECT ts_ns, value FROM readings WHERE enterprise=? AND gateway=? AND "
            "device=? AND channel=? AND ts_ns >= ? AND ts_ns <= ? AND value IS NOT NULL "
            "AND quality != 'bad' ORDER BY ts_ns",
            (w.enterprise, w.gateway, w.device, w.channel, start_ns, end_ns))
        return [Sample(int(t), float(v)) for t, v in rows]

    def close(self) -> None:
        pass


def _lit(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxV1History:
    name = "influxdb_v1"

    def __init__(self, storage: InfluxV1Storage) -> None:
        self.storage = storage

    def _where(self, w: Where, start_ns: int, end_ns: int, inclusive: bool = False) -> str:
        return (f"enterprise = {_lit(w.enterprise)} AND gateway = {_lit(w.gateway)} AND "
                f"device = {_lit(w.device)} AND channel = {_lit(w.channel)} AND "
                f"time >= {start_ns} AND time {'<=' if inclusive else '<'} {end_ns}")

    def _series(self, q: str) -> list[list[Any]]:
        try:
            doc = self.storage.query(q)
        except StorageError as exc:
            raise HistoryUnavailable(str(exc)) from exc
        out: list[list[Any]] = []
        for result in doc.get("results", []):
            for s in result.get("series", []) or []:
                out.extend(s.get("values", []))
        return out

    def trend(self, w: Where, start_ns: int, end_ns: int,
              points: int) -> list[tuple[int, float]]:
        bucket_s = max(1, (end_ns - start_ns) // max(1, points) // NS)
        q = (f"SELECT mean(value) FROM {quote_ident(w.quantity)} WHERE "
             f"{self._where(w, start_ns, end_ns)} GROUP BY time({bucket_s}s) fill(none)")
        return [(int(t), float(v)) for t, v in self._series(q)
                if v is not None]

    def samples(self, w: Where, start_ns: int, end_ns: int) -> list[Sample]:
        q = (f"SELECT value FROM {quote_ident(w.quantity)} WHERE "
             f"{self._where(w, start_ns, end_ns, inclusive=True)} AND quality != 'bad'")
        return [Sample(int(t), float(v)) for t, v in self._series(q)
                if v is not None]

    def close(self) -> None:
        self.storage.close()


class NoHistory:
    def __init__(self, why: str) -> None:
        self.name = "none"
        self.why = why

    def trend(self, w: Where, start_ns: int, end_ns: int,
              points: int) -> list[tuple[int, float]]:
        raise HistoryUnavailable(self.why)

    def samples(self, w: Where, start_ns: int, end_ns: int) -> list[Sample]:
        raise HistoryUnavailable(self.why)

    def close(self) -> None:
        pass


def open_history(loaded: LoadedConfig) -> History:
    st = loaded.config.storage
    if isinstance(st, Historian):
        return HistorianHistory(str(loaded.resolve(st.path)))
    if isinstance(st, InfluxV1):
        return InfluxV1History(InfluxV1Storage(
            st.url, database=st.database, retention_policy=st.retention_policy,
            username=st.username, password=loaded.secret(st.password, st.password_file),
            create_database=False,
            ca_file=str(loaded.resolve(st.ca_file)) if st.ca_file else None,
            timeout_s=st.timeout_s))
    return NoHistory(f"storage kind {st.kind!r}: trends and energy need the historian or "
                     "InfluxDB 1.x (InfluxQL); live values still work")
