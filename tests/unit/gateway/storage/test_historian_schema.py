"""The historian's schema: a version 1 file (before calibration fields) is migrated in
place on open and keeps its readings; cert and verification round-trip."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daq.model import Quality, Reading
from gateway.storage.historian import SCHEMA_VERSION, HistorianStorage

V1 = """
CREATE TABLE readings (
    enterprise TEXT NOT NULL, gateway TEXT NOT NULL, device TEXT NOT NULL,
    channel TEXT NOT NULL, ts_ns INTEGER NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    value REAL, text TEXT, raw REAL, quality TEXT NOT NULL, reason TEXT, u REAL, k REAL,
    PRIMARY KEY (enterprise, gateway, device, channel, ts_ns)) WITHOUT ROWID;
CREATE INDEX readings_device_channel_ts ON readings (device, channel, ts_ns);
INSERT INTO readings VALUES ('e', 'g', 'd', 'c', 1, 'voltage', 'V', 1.5, NULL, 15, 'good',
                             NULL, NULL, NULL);
PRAGMA user_version = 1;
"""


def test_version_1_is_migrated_and_keeps_its_readings(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1)
    conn.close()
    with HistorianStorage(path) as h:
        (old,) = h.series("d", "c")
        assert (old.value, old.raw, old.cert, old.verification) == (1.5, 15, None, None)
        h.write([Reading(2, "e", "g", "d", "c", "voltage", "V", 1.6, 16, Quality.UNCERTAIN,
                         "verification_overdue", u=1e-3, k=2.0, cert="C-1",
                         verification="overdue")])
        new = h.series("d", "c")[1]
        assert (new.u, new.k, new.cert, new.verification) == (1e-3, 2.0, "C-1", "overdue")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        columns = [row[1] for row in conn.execute("PRAGMA table_info(readings)")]
    conn.close()
    assert "u_std" in columns  # one name on every backend (InfluxDB 3 folds u and U)
    assert "u" not in columns
    HistorianStorage(path).close()  # opening a current file again changes nothing
