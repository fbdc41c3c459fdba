"""A DL/T 645 meter behind an RS-485-to-Ethernet converter (TCP) or on a serial line (a pty),
next to a Modbus meter: gateway → Mosquitto → ingest → historian, checked against truth."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import pytest

from daq.config import load_config
from daq.profiles import Dlt645Profile
from gateway.ingest import Ingest
from gateway.service import GatewayService
from gateway.storage import open_storage
from gateway.storage.historian import HistorianStorage
from simulators.dlt645_meter import Dlt645MeterSimulator
from simulators.fleet import MeterFleet, MeterSpec

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
        ingest = Ingest(loaded, open_storage(loaded))
        ingest.start()
        assert await asyncio.to_thread(ingest.wait_subscribed, 10)
        gw = GatewayService(loaded)
        task = asyncio.create_task(gw.run())
        deadline = time.monotonic() + 20
        while min(c.state.polls for c in gw.coordinators) < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        while ingest.stats.written_readings < gw.acquired:
            assert time.monotonic() < deadline + 10
            await asyncio.sleep(0.02)
        await asyncio.to_thread(ingest.stop)
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
