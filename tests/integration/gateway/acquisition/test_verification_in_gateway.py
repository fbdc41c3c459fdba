"""Mandatory verification in the gateway, end to end: an energy meter whose verification is
overdue is still polled, published and stored — every reading tagged ``verification:
overdue`` in InfluxDB and quality uncertain — and its alarm is retained on MQTT; importing a
new verification record clears the tag and the alarm without restarting anything."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from calibration.records import RecordSet
from calibration.registry import Registry
from daq.alarms import AlarmKind
from daq.config import load_config
from simulators.fleet import MeterFleet, MeterSpec
from tests.integration.pathrun import alarm_states, running, wait_for
from tests.services import influx_query

pytestmark = pytest.mark.services


def meter_records(today: dt.date) -> RecordSet:
    last = today - dt.timedelta(days=400)
    return RecordSet.model_validate({
        "instruments": [{
            "id": "em-001", "maker": "Eastron", "model": "SDM630", "serial": "E1",
            "quantity": "active_energy", "unit": "kWh", "range": {"min": 0.0, "max": 1e6},
            "resolution": 0.01, "accuracy": {"class": "1"}, "owner": "plant",
            "location": "main incomer", "role": "working", "mandatory_verification": True,
            "verification": {"mode": "periodic", "period_months": 12},
            "energy_type": "electricity", "measurement_level": "enterprise_boundary"}],
        "verifications": [{
            "instrument": "em-001", "date": last.isoformat(), "result": "pass",
            "authority": "city metrology institute", "record_number": "V-1",
            "next_due": (last + dt.timedelta(days=365)).isoformat()}],
    })


async def test_overdue_meter_is_tagged_alarmed_and_cleared_without_restart(
        tmp_path: Path, mqtt_broker: Any, influx_db: Any) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    today = dt.datetime.now(dt.UTC).date()
    registry = tmp_path / "registry.sqlite"
    with Registry(registry) as reg:
        reg.import_records(meter_records(today), "tester", "the plant's meter register")
    async with MeterFleet([MeterSpec("sdm630", name="incomer")]) as fleet:
        site = tmp_path / "site.yaml"
        site.write_text(f"""
enterprise: {{id: {ent}}}
calibration: {{registry: {registry}, reload_s: 0.2}}
gateways:
  - id: gw
    outbox: outbox.sqlite
    buses:
      - {{id: lan, protocol: modbus-tcp, host: 127.0.0.1, port: {fleet["incomer"].port},
         devices: [{{id: incomer, profile: sdm630, interval_ms: 100, instrument: em-001}}]}}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
ingest: {{subscription: "daq/{ent}/#", spool: spool.sqlite, dead_letter: dead.sqlite,
          batch_interval_ms: 50}}
storage: {{kind: influxdb_v1, url: "{influx_db.url}", database: {influx_db.name}}}
""")
        with alarm_states(mqtt_broker.host, mqtt_broker.port,
                          f"daq/{ent}/gw/incomer/alarms") as states:
            async with running(load_config(site)) as (gw, _):
                (coord,) = gw.coordinators
                await wait_for(lambda: coord.state.polls >= 5 and bool(states)
                               and bool(states[-1].alarms), 15, "no overdue alarm")
                (alarm,) = states[-1].alarms
                assert alarm.kind == AlarmKind.VERIFICATION_OVERDUE
                assert alarm.channel is None  # the meter itself, not one channel
                assert alarm.details["state"] == "overdue"
                assert "em-001" in alarm.reason
                # the new verification is imported while the gateway runs
                with Registry(registry) as reg:
                    reg.import_records(RecordSet.model_validate({"verifications": [{
                        "instrument": "em-001", "date": today.isoformat(), "result": "pass",
                        "authority": "city metrology institute", "record_number": "V-2",
                        "next_due": (today + dt.timedelta(days=365)).isoformat()}]}),
                        "tester", "verified again")
                await wait_for(lambda: not states[-1].alarms, 10, "alarm not cleared")
                assert [e.action for e in states[-1].events] == ["cleared"]
                polls = coord.state.polls
                await wait_for(lambda: coord.state.polls >= polls + 5, 10, "no polls after")

    def rows(q: str) -> list[dict[str, Any]]:
        doc = influx_query(influx_db.server, q, db=influx_db.name)
        series = doc["results"][0].get("series", [])  # type: ignore[index]
        return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]

    tagged = rows("SELECT \"value\", \"quality\", \"reason\" FROM \"voltage\" "
                  "WHERE \"verification\" = 'overdue'")
    clean = rows("SELECT \"value\", \"quality\" FROM \"voltage\" WHERE \"verification\" = ''")
    assert len(tagged) >= 5 * 3  # three phase voltages per poll, kept, not dropped
    assert all(r["quality"] == "uncertain" and r["reason"] == "verification_overdue"
               and r["value"] is not None for r in tagged)
    assert len(clean) >= 5 * 3
    assert all(r["quality"] == "good" for r in clean)
    assert max(r["time"] for r in tagged) < min(r["time"] for r in clean)
    doc = influx_query(influx_db.server, 'SELECT count("value") FROM /.*/', db=influx_db.name)
    counts = {s["name"]: s["values"][0][1]
              for s in doc["results"][0]["series"]}  # type: ignore[index]
    assert counts.pop("alarm") == 2
    assert sum(counts.values()) == gw.acquired  # nothing dropped: every reading stored
    events = rows("SELECT \"value\", \"channel\" FROM \"alarm\"")
    assert [(e["channel"], e["value"]) for e in events] == [
        ("verification_overdue", 1.0), ("verification_overdue", 0.0)]
