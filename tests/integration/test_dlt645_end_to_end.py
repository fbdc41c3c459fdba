"""A DL/T 645 meter behind an RS-485-to-Ethernet converter (TCP) or on a serial line (a pty),
next to a Modbus meter: gateway → Mosquitto → ingest → historian, checked against truth."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import pytest

from daq.config import load_config
from daq.config.profiles import Dlt645Profile
from gateway.storage.historian import HistorianStorage
from simulators.dlt645_meter import Dlt645MeterSimulator
from simulators.fleet import MeterFleet, MeterSpec
from tests.integration.pathrun import polling, run_path

pytestmark = pytest.mark.services

ADDRESS = "558890213594"


@pytest.mark.parametrize("transport", ["tcp", "pty"])
async def test_dlt645_meter_through_the_whole_path(tmp_path: Path, mqtt_broker: Any,
                                                   transport: Literal["tcp", "pty"]) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    async with Dlt645MeterSimulator(ADDRESS, seed=5, transport=transport) as dlt, \
            MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
        line = (f"protocol: dlt645-tcp\n        host: 127.0.0.1\n        port: {dlt.port}"
                if transport == "tcp" else
                f"protocol: dlt645-serial\n        serial: {{port: {dlt.path}, baudrate: 2400}}\n"
                "        min_gap_ms: 0")
        site = tmp_path / "site.yaml"
        site.write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: gw
    outbox: outbox.sqlite
    buses:
      - id: rs485-1
        {line}
        timeout_ms: 300
        devices:
          - {{id: revenue, profile: dlt645-3p, address: "{ADDRESS}", interval_ms: 500}}
      - {{id: lan, protocol: modbus-tcp, host: 127.0.0.1, port: {fleet["m"].port},
         devices: [{{id: m, profile: sdm630, interval_ms: 500}}]}}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
ingest: {{subscription: "daq/{ent}/#", spool: spool.sqlite, dead_letter: dead.sqlite,
          batch_interval_ms: 50}}
storage: {{kind: historian, path: h.sqlite}}
""")
        loaded = load_config(site)
        gw, _ = await run_path(loaded, 3)
        coord = next(c for c in gw.coordinators if c.config.id == "revenue")
        assert coord.state.failures == 0
        profile = loaded.profiles["dlt645-3p"]
        assert isinstance(profile, Dlt645Profile)
        hist = HistorianStorage(loaded.resolve("h.sqlite"))
        try:
            for ch in profile.channels:
                rows = hist.series("revenue", ch.id, 0, 2**63 - 1)
                assert len(rows) == coord.state.polls, ch.id
                for r in rows:
                    raw = dlt.truth(ch.di_value, r.ts_ns)
                    expected = raw if ch.scale == 1.0 else raw * ch.scale
                    assert r.value == expected, ch.id
                    assert r.unit == ch.unit
            assert hist.count("m") == 14 * next(
                c for c in gw.coordinators if c.config.id == "m").state.polls
        finally:
            hist.close()


async def test_a_line_with_three_meters(tmp_path: Path) -> None:
    """Three meters by address on one RS-485 line (a pty): each device reads its own meter."""
    from simulators.dlt645_meter import Dlt645LineSimulator

    addresses = ["000000000001", "000000000002", "558890213594"]
    meters = [Dlt645MeterSimulator(a, seed=i) for i, a in enumerate(addresses)]
    async with Dlt645LineSimulator(meters, transport="pty") as line:
        devices = "".join(f"""
          - {{id: m{i}, profile: dlt645-3p, address: "{a}", interval_ms: 300}}"""
                          for i, a in enumerate(addresses))
        (tmp_path / "s.yaml").write_text(f"""
enterprise: {{id: e}}
gateways:
  - id: g
    buses:
      - id: line
        protocol: dlt645-serial
        serial: {{port: {line.path}, baudrate: 2400}}
        timeout_ms: 300
        min_gap_ms: 0
        devices:{devices}
""")
        async with polling(load_config(tmp_path / "s.yaml")) as run:
            deadline = time.monotonic() + 10
            while min(c.state.polls for c in run.coords.values()) < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
    coords, got = list(run.coords.values()), run.got
    assert all(c.state.failures == 0 for c in coords)
    for rs in got:
        meter = meters[int(rs[0].device[1:])]
        for r in rs:
            di = int(next(ch.di for ch in coords[0].profile.channels if ch.id == r.channel), 16)
            raw = meter.truth(di, r.ts_ns)
            assert r.value == (raw * 1000 if r.channel == "power_total" else raw)


@pytest.mark.parametrize(("fault", "reason"), [
    ({"abnormal": 0x02}, "device_exception"),
    ({"corrupt_checksum": True}, "timeout"),  # a frame with a bad checksum is no frame
    ({"silent": True}, "timeout"),
])
async def test_dlt645_faults_against_the_pollers(tmp_path: Path, fault: dict[str, object],
                                                 reason: str) -> None:
    from daq.model import Quality
    from simulators.dlt645_meter import Dlt645LineSimulator

    bad, good = Dlt645MeterSimulator("000000000001"), Dlt645MeterSimulator("000000000002")
    async with Dlt645LineSimulator([bad, good], transport="pty") as line:
        (tmp_path / "s.yaml").write_text(f"""
enterprise: {{id: e}}
gateways:
  - id: g
    buses:
      - id: line
        protocol: dlt645-serial
        serial: {{port: {line.path}}}
        timeout_ms: 150
        min_gap_ms: 0
        devices:
          - {{id: bad, profile: dlt645-3p, address: "000000000001", interval_ms: 500,
             failures_before_backoff: 2, max_backoff_s: 0.5}}
          - {{id: good, profile: dlt645-3p, address: "000000000002", interval_ms: 500}}
""")
        for key, value in fault.items():
            setattr(bad.faults, key, value)
        async with polling(load_config(tmp_path / "s.yaml")) as run:
            coords, got = run.coords, run.got
            await asyncio.sleep(1.7)
            bad_readings = [r for rs in got if rs[0].device == "bad" for r in rs]
            assert bad_readings
            assert {r.reason for r in bad_readings} == {reason}
            assert all(r.quality is Quality.BAD for r in bad_readings)
            assert coords["good"].state.polls >= 3  # its neighbour kept its rhythm
            assert coords["good"].state.failures == 0
            for key in fault:
                setattr(bad.faults, key, getattr(type(bad.faults)(), key))
            await asyncio.sleep(1.3)
            assert all(r.quality is Quality.GOOD for r in run.of("bad")[-1])
