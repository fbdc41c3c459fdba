"""Calibrated readings end to end: SCPI DMM simulators with injected gain and offset errors,
each calibrated the way a lab would (``tests/calibrated.py``), their certificates in a real
registry; the gateway corrects every reading, MQTT carries it, the ingest stores it in
InfluxDB with u, k, U and cert — and the corrected values agree with the simulators' truth
within their stated U about 95 % of the time. Then, without a restart: a new certificate is
picked up, and a certificate that is changed to have expired flags readings and raises a
retained alarm."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import uuid
from pathlib import Path
from typing import Any

import pytest

from calibration.records import Certificate
from calibration.registry import Registry
from daq.alarms import AlarmKind
from daq.config import load_config
from gateway.acquisition.service import GatewayService
from simulators.instruments import InstrumentModel, ScpiDmmSimulator
from simulators.lab import calibrate, chain
from tests.integration.pathrun import alarm_states, running, wait_for
from tests.services import influx_query

pytestmark = pytest.mark.services

NOISE_V = 2e-5  # the simulators' repeatability, stated in the instruments' records
DMMS = {  # id: (true value V, offset V, gain)
    "dmm-0": (-7.3, -1.5e-3, 2e-4),
    "dmm-1": (0.8, -8e-4, -1.5e-4),
    "dmm-2": (4.2, 2.2e-3, 5e-5),
    "dmm-3": (9.1, -1.1e-3, 3e-4),
}
POLLS = 300


def model(i: int, true_v: float, offset: float, gain: float) -> InstrumentModel:
    return InstrumentModel(true_v, "V", offset=offset, gain=gain, noise=NOISE_V, decimals=6,
                           seed=100 + i)


def min_polls(gw: GatewayService) -> int:
    return min(c.state.polls for c in gw.coordinators)


async def test_corrected_readings_cover_the_truth_at_95_percent(
        tmp_path: Path, mqtt_broker: Any, influx_db: Any) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    today = dt.datetime.now(dt.UTC).date()
    calibrations = {d: calibrate(model(i + 50, 0.0, o, g))  # calibrated earlier, same errors
                    for i, (d, (_, o, g)) in enumerate(DMMS.items())}
    records = chain(today, calibrations, instrument_extra={
        d: {"repeatability": NOISE_V} for d in DMMS})
    registry = tmp_path / "registry.sqlite"
    with Registry(registry) as reg:
        reg.import_records(records, "tester", "calibrated DMMs")
    sims = [ScpiDmmSimulator(model(i, *params)) for i, params in enumerate(DMMS.values())]
    async with contextlib.AsyncExitStack() as stack:
        buses = []
        for d, sim in zip(DMMS, sims, strict=True):
            await stack.enter_async_context(sim)
            _, port = await sim.start_tcp()
            buses.append(f"""
      - {{id: {d}-lan, protocol: instrument, host: 127.0.0.1, port: {port},
         devices: [{{id: {d}, profile: scpi-dmm-dcv, interval_ms: 20,
                     instruments: {{dcv: {d}}}}}]}}""")
        site = tmp_path / "site.yaml"
        site.write_text(f"""
enterprise: {{id: {ent}}}
calibration: {{registry: {registry}, reload_s: 0.2}}
gateways:
  - id: lab
    outbox: outbox.sqlite
    buses:{"".join(buses)}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
ingest: {{subscription: "daq/{ent}/#", spool: spool.sqlite, dead_letter: dead.sqlite,
          batch_interval_ms: 50}}
storage: {{kind: influxdb_v1, url: "{influx_db.url}", database: {influx_db.name}}}
""")
        async with running(load_config(site)) as (gw, _):
            polls_at_least = functools.partial(min_polls, gw)
            await wait_for(lambda: polls_at_least() >= POLLS, 60, "too few polls")
            # while it runs: dmm-0 is recalibrated; dmm-1's certificate turns out to have
            # expired (its interval corrected to 1 day)
            with Registry(registry) as reg:
                old0 = records.certificates[2]
                assert old0.instrument == "dmm-0"
                reg.put(Certificate.model_validate({
                    **old0.model_dump(mode="json", by_alias=True), "id": "LAB-dmm-0-2",
                    "calibration_date": today.isoformat()}), "tester", "recalibrated")
                old1 = records.certificates[3]
                reg.put(Certificate.model_validate({
                    **old1.model_dump(mode="json", by_alias=True), "interval_days": 1}),
                    "tester", "interval was entered wrongly")
            await asyncio.sleep(0.5)  # > reload_s
            before = polls_at_least()
            await wait_for(lambda: polls_at_least() >= before + 10, 30, "no polls after")

    doc = influx_query(influx_db.server, 'SELECT "value", "raw", "u_std", "k", "u_exp", "cert", '
                       '"quality", "reason", "device" FROM "voltage" WHERE time > 0',
                       db=influx_db.name)
    series = doc["results"][0]["series"][0]  # type: ignore[index]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert len(rows) == gw.acquired

    # phase 1: every reading corrected, with its uncertainty and certificate
    phase1 = [r for r in rows if r["cert"] in {f"LAB-{d}" for d in DMMS}
              and r["quality"] == "good"]
    assert len(phase1) >= POLLS * len(DMMS)
    inside = raw_inside = 0
    for r in phase1:
        truth = DMMS[r["device"]][0]
        assert r["u_exp"] == pytest.approx(r["u_std"] * r["k"])
        assert 1.9 < r["k"] < 2.6  # Student t at ν_eff ≥ 5 (the fit) for ≈95 %
        inside += abs(r["value"] - truth) <= r["u_exp"]
        raw_inside += abs(r["raw"] - truth) <= r["u_exp"]
    coverage = inside / len(phase1)
    # binomial sd at n = 1200 is 0.6 %; the calibrations' own (fixed) errors cost a little
    assert 0.925 <= coverage <= 0.98, f"coverage {coverage:.3f} of {len(phase1)} readings"
    assert raw_inside / len(phase1) < 0.05  # uncorrected, the injected errors are far off

    # phase 2, no restart: the new certificate applies; the expired one flags and alarms
    last = {r["device"]: r for r in rows}  # one series without GROUP BY: in time order
    assert last["dmm-0"]["cert"] == "LAB-dmm-0-2"
    assert (last["dmm-1"]["cert"], last["dmm-1"]["quality"], last["dmm-1"]["reason"]) == (
        "LAB-dmm-1", "uncertain", "calibration_expired")
    assert last["dmm-2"]["quality"] == "good"
    with alarm_states(mqtt_broker.host, mqtt_broker.port, f"daq/{ent}/+/+/alarms") as got:
        await wait_for(lambda: {s.device for s in got} >= set(DMMS), 5, "no retained alarms")
    alarms = {s.device: s for s in got}
    assert set(alarms) == set(DMMS)  # every device's state, an empty list included
    assert [a.kind for a in alarms["dmm-1"].alarms] == [AlarmKind.CALIBRATION_EXPIRED]
    assert alarms["dmm-1"].alarms[0].channel == "dcv"
    assert all(alarms[d].alarms == () for d in ("dmm-0", "dmm-2", "dmm-3"))
    # the alarm's event is stored too: measurement alarm, channel = the alarm's key
    doc = influx_query(influx_db.server, 'SELECT "value", "reason", "device", "channel" FROM '
                       '"alarm" WHERE time > 0', db=influx_db.name)
    series = doc["results"][0]["series"][0]  # type: ignore[index]
    events = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert [(e["device"], e["channel"], e["value"]) for e in events] == [
        ("dmm-1", "calibration_expired:dcv", 1.0)]
    assert "expired on" in events[0]["reason"]
