"""Laboratory instruments in the gateway: a SCPI DMM over TCP, a PRT readout on a serial
line (pty) and an MT-SICS balance over TCP — polled, published, stored, against truth."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from daq.config import load_config
from daq.model import Quality
from gateway.acquisition.service import GatewayService
from gateway.ingest.service import Ingest
from gateway.storage import open_storage
from gateway.storage.historian import HistorianStorage
from simulators.instruments import (
    InstrumentModel,
    MtSicsBalanceSimulator,
    PrtReadoutSimulator,
    ScpiDmmSimulator,
)
from tests.integration.pathrun import pin_keys

pytestmark = pytest.mark.services


async def test_instruments_through_the_whole_path(tmp_path: Path, mqtt_broker: Any) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    dmm = ScpiDmmSimulator(InstrumentModel(5.0, "V", offset=1e-4, noise=2e-6, decimals=6))
    prt = PrtReadoutSimulator(100.0)
    balance = MtSicsBalanceSimulator(settling_s=0.3)
    balance.set_load(100.0)
    async with dmm, prt, balance:
        _, dmm_port = await dmm.start_tcp()
        prt_path = prt.start_pty()
        _, bal_port = await balance.start_tcp()
        site = tmp_path / "site.yaml"
        site.write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: lab
    outbox: outbox.sqlite
    buses:
      - {{id: dmm-lan, protocol: instrument, host: 127.0.0.1, port: {dmm_port},
         devices: [{{id: dmm, profile: scpi-dmm-dcv, interval_ms: 250}}]}}
      - {{id: prt-com, protocol: instrument, serial: {{port: {prt_path}, baudrate: 9600}},
         devices: [{{id: prt, profile: prt-readout, interval_ms: 250}}]}}
      - {{id: bal-lan, protocol: instrument, host: 127.0.0.1, port: {bal_port},
         devices: [{{id: balance, profile: mtsics-balance, interval_ms: 250}}]}}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
ingest: {{subscription: "daq/{ent}/#", spool: spool.sqlite, dead_letter: dead.sqlite,
          batch_interval_ms: 50}}
storage: {{kind: historian, path: h.sqlite}}
""")
        loaded = load_config(site)
        pin_keys(loaded)
        ingest = Ingest(loaded, open_storage(loaded))
        ingest.start()
        assert await asyncio.to_thread(ingest.wait_subscribed, 10)
        gw = GatewayService(loaded)
        task = asyncio.create_task(gw.run())
        deadline = time.monotonic() + 20
        while min(c.state.polls for c in gw.coordinators) < 6:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        balance.set_load(150.0)  # the balance settles again: dynamic → uncertain
        await asyncio.sleep(0.1)
        polls_before_change = {c.config.id: c.state.polls for c in gw.coordinators}
        while min(c.state.polls - polls_before_change[c.config.id]
                  for c in gw.coordinators) < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        while ingest.stats.written_readings < gw.acquired:
            assert time.monotonic() < deadline + 10
            await asyncio.sleep(0.02)
        await asyncio.to_thread(ingest.stop)
        truth = {"dmm": dmm.truth(), "prt": prt.truth(), "balance": balance.truth()}
    hist = HistorianStorage(loaded.resolve("h.sqlite"))
    try:
        for coord in gw.coordinators:
            assert coord.state.failures == 0, coord.config.id
            (ch,) = coord.profile.channels
            rows = hist.series(coord.config.id, ch.id, 0, 2**63 - 1)
            assert len(rows) == coord.state.polls
            assert rows[-1].value == truth[coord.config.id].displayed
        dmm_rows = hist.series("dmm", "dcv", 0, 2**63 - 1)
        assert all(r.value == pytest.approx(5.0001, abs=2e-5) for r in dmm_rows)
        prt_rows = hist.series("prt", "resistance", 0, 2**63 - 1)
        assert all(r.value == pytest.approx(138.5055, abs=1e-3) for r in prt_rows)
        qualities = {r.quality for r in hist.series("balance", "mass", 0, 2**63 - 1)}
        assert qualities == {Quality.GOOD, Quality.UNCERTAIN}  # stable, then settling
    finally:
        hist.close()
