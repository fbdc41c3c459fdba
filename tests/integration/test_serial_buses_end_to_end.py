"""Serial buses through the whole path: a Modbus RTU line with two meters (unit ids 1 and 2)
on a pseudo-terminal, and the same line through an RTU-over-TCP converter, polled by the
gateway and stored via Mosquitto — checked against the simulators' truth."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from daq.config import load_config
from daq.config.profiles import load_modbus_profile
from gateway.storage.historian import HistorianStorage
from simulators.modbus_meter import ModbusMeterSimulator
from simulators.modbus_rtu import RtuBusSimulator
from tests.integration.pathrun import run_path

pytestmark = pytest.mark.services


def meter(profile: str, unit: int, seed: int) -> ModbusMeterSimulator:
    return ModbusMeterSimulator(load_modbus_profile(profile), unit_id=unit, seed=seed)


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_rtu_line_with_two_units(tmp_path: Path, mqtt_broker: Any,
                                       transport: str) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    meters = {1: meter("sdm630", 1, 1), 2: meter("dtsu666", 2, 2)}
    async with RtuBusSimulator(meters, transport=transport) as line:  # type: ignore[arg-type]
        bus = (f"protocol: modbus-rtu\n        serial: {{port: {line.path}, baudrate: 9600}}"
               if transport == "pty" else
               f"protocol: modbus-rtu-tcp\n        host: 127.0.0.1\n        port: {line.port}")
        site = tmp_path / "site.yaml"
        site.write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: gw
    outbox: outbox.sqlite
    buses:
      - id: rs485
        {bus}
        timeout_ms: 300
        devices:
          - {{id: incomer, profile: sdm630, unit_id: 1, interval_ms: 500}}
          - {{id: furnace, profile: dtsu666, unit_id: 2, interval_ms: 500}}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
ingest: {{subscription: "daq/{ent}/#", spool: spool.sqlite, dead_letter: dead.sqlite,
          batch_interval_ms: 50}}
storage: {{kind: historian, path: h.sqlite}}
""")
        loaded = load_config(site)
        gw, _ = await run_path(loaded, 3)
    hist = HistorianStorage(loaded.resolve("h.sqlite"))
    try:
        for coord in gw.coordinators:
            assert coord.state.failures == 0
            sim = meters[1 if coord.config.id == "incomer" else 2]
            for ch in coord.profile.channels:
                rows = hist.series(coord.config.id, ch.id, 0, 2**63 - 1)
                assert len(rows) == coord.state.polls
                assert all(r.value == sim.truth(ch.id, r.ts_ns) for r in rows), ch.id
    finally:
        hist.close()
