"""The dashboard's own small SQLite file: alarm transitions seen on MQTT (so "recent alarms"
survives a restart) and acknowledgements (who, when, an optional note).

An acknowledgement belongs to one alarm *instance*: its device, its ``key`` (kind or
kind:channel) and its ``since`` — an alarm that clears and is raised again is a new
instance and needs a new acknowledgement. Alarm messages are retained, so the same events
arrive again after a reconnect; they are stored once (unique on device, key, action, ts).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_events (
    enterprise TEXT NOT NULL, gateway TEXT NOT NULL, device TEXT NOT NULL,
    key TEXT NOT NULL, kind TEXT NOT NULL, channel TEXT, action TEXT NOT NULL,
    ts_ns INTEGER NOT NULL, since_ns INTEGER NOT NULL, reason TEXT NOT NULL,
    severity TEXT NOT NULL,
    UNIQUE (enterprise, gateway, device, key, action, ts_ns)
);
CREATE INDEX IF NOT EXISTS alarm_events_ts ON alarm_events (ts_ns);
CREATE TABLE IF NOT EXISTS acks (
    enterprise TEXT NOT NULL, gateway TEXT NOT NULL, device TEXT NOT NULL,
    key TEXT NOT NULL, since_ns INTEGER NOT NULL,
    who TEXT NOT NULL, at_ns INTEGER NOT NULL, note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (enterprise, gateway, device, key, since_ns)
);
"""


class AlarmLogError(GatewayError):
    """The alarm log cannot be opened or written."""


class AlarmLog:
    """Alarm events and acknowledgements in ``path`` (created with its directory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False, timeout=10.0)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise AlarmLogError(f"alarm log {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def record_events(self, events: list[dict[str, Any]]) -> None:
        rows = [(e["enterprise"], e["gateway"], e["device"], e["key"], e["kind"],
                 e.get("channel"), e["action"], int(e["ts"]), int(e["since"]),
                 str(e["reason"]), str(e["severity"])) for e in events]
        if not rows:
            return
        with self._lock:
            self._conn.executemany(
                "INSERT OR IGNORE INTO alarm_events VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def recent(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute(
                "SELECT enterprise, gateway, device, key, kind, channel, action, ts_ns, "
                "since_ns, reason, severity FROM alarm_events ORDER BY ts_ns DESC LIMIT ?",
                (limit,))
            rows = cur.fetchall()
        return [{"enterprise": r[0], "gateway": r[1], "device": r[2], "key": r[3],
                 "kind": r[4], "channel": r[5], "action": r[6], "ts": r[7], "since": r[8],
                 "reason": r[9], "severity": r[10]} for r in rows]

    def acknowledge(self, enterprise: str, gateway: str, device: str, key: str,
                    since_ns: int, who: str, at_ns: int, note: str = "") -> dict[str, Any]:
        """Record an acknowledgement (a second one of the same instance replaces nothing:
        the first who/when stands) and return the one on record."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO acks VALUES (?,?,?,?,?,?,?,?)",
                (enterprise, gateway, device, key, since_ns, who, at_ns, note))
            row = self._conn.execute(
                "SELECT who, at_ns, note FROM acks WHERE enterprise=? AND gateway=? AND "
                "device=? AND key=? AND since_ns=?",
                (enterprise, gateway, device, key, since_ns)).fetchone()
        return {"who": row[0], "at": row[1], "note": row[2]}

    def acks(self) -> list[tuple[str, str, int, dict[str, Any]]]:
        """Every acknowledgement: ``(device key, alarm key, since, {who, at, note})``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT enterprise, gateway, device, key, since_ns, who, at_ns, note "
                "FROM acks").fetchall()
        return [(f"{r[0]}/{r[1]}/{r[2]}", r[3], r[4], {"who": r[5], "at": r[6], "note": r[7]})
                for r in rows]
