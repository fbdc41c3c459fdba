"""The dashboard's stored-data queries give the same answers from the historian and from
InfluxDB 1.x (InfluxQL): an energy register's samples (bad readings left out), a trend, and
the interval consumption computed from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daq.config import load_config
from daq.model import Quality, Reading
from gateway.dashboard.history import History, HistoryUnavailable, Where, open_history
from gateway.energy.accounting import EnergyRules, IntervalStatus, account
from gateway.storage import open_storage

pytestmark = pytest.mark.services

NS = 1_000_000_000
T0 = 1_800_000_000 * NS  # a whole minute
WHERE = Where("e1", "gw-1", "m1", "energy_import", "active_energy")


def readings() -> list[Reading]:
    """A register at 36 kW (0.01 kWh/s) sampled every second for 10 min, with a 3-minute
    communication gap (bad readings) and one at minute 2 in the wrong place."""
    out = []
    for i in range(600):
        bad = 300 <= i < 480
        out.append(Reading(ts_ns=T0 + i * NS, enterprise="e1", gateway="gw-1", device="m1",
                           channel="energy_import", quantity="active_energy", unit="kWh",
                           value=None if bad else 5000.0 + 0.01 * i,
                           quality=Quality.BAD if bad else Quality.GOOD,
                           reason="timeout" if bad else None))
    # another device's register must not leak into m1's samples
    out.append(Reading(ts_ns=T0 + 120 * NS, enterprise="e1", gateway="gw-1", device="m2",
                       channel="energy_import", quantity="active_energy", unit="kWh",
                       value=1.0))
    return out


def site(tmp_path: Path, storage_yaml: str) -> Any:
    cfg = tmp_path / "site.yaml"
    cfg.write_text("enterprise: {id: e1}\ngateways: [{id: gw-1, buses: []}]\n"
                   f"storage: {storage_yaml}\n")
    return load_config(cfg)


def check(history: History) -> None:
    samples = history.samples(WHERE, T0, T0 + 600 * NS)
    assert len(samples) == 600 - 180
    assert samples[0].value == 5000.0
    assert all(s.ts_ns < T0 + 300 * NS or s.ts_ns >= T0 + 480 * NS for s in samples)
    edges = [T0 + m * 60 * NS for m in range(11)]
    series = account(samples, edges, EnergyRules(max_interpolate_s=3600))
    statuses = [i.status for i in series.intervals]
    assert statuses[:4] == [IntervalStatus.MEASURED] * 4
    assert statuses[5:8] == [IntervalStatus.INTERPOLATED] * 3  # the gap, flagged
    for i in series.intervals[:9]:
        assert i.kwh == pytest.approx(0.6, abs=1e-6)  # 36 kW for a minute
    assert series.intervals[9].status is IntervalStatus.MISSING  # after the last sample
    trend = history.trend(WHERE, T0, T0 + 600 * NS, 60)
    assert 40 <= len(trend) <= 61  # 10-s buckets, the gap has none
    assert trend[0][1] == pytest.approx(5000.045)  # mean of the first 10 s


def test_historian(tmp_path: Path) -> None:
    loaded = site(tmp_path, "{kind: historian, path: h.sqlite}")
    history = open_history(loaded)
    with pytest.raises(HistoryUnavailable):  # no file yet: a typed error, not a crash
        history.samples(WHERE, T0, T0 + NS)
    storage = open_storage(loaded)
    storage.write(readings())
    storage.close()
    check(history)


def test_influxdb_v1(tmp_path: Path, influx_db: Any) -> None:
    loaded = site(tmp_path, f"{{kind: influxdb_v1, url: '{influx_db.url}', "
                            f"database: {influx_db.name}}}")
    storage = open_storage(loaded)
    storage.write(readings())
    storage.close()
    history = open_history(loaded)
    try:
        check(history)
    finally:
        history.close()


def test_influxdb_v2_has_no_history(tmp_path: Path) -> None:
    loaded = site(tmp_path, "{kind: influxdb_v2, url: 'http://127.0.0.1:9'}")
    with pytest.raises(HistoryUnavailable, match=r"InfluxDB 1\.x"):
        open_history(loaded).trend(WHERE, T0, T0 + NS, 10)
