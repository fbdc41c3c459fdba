"""InfluxDB goes away: killed (SIGKILL) while readings flow and started again on the same
data. The ingest spools what it cannot write, confirms nothing it has not written, and
replays the spool once InfluxDB answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daq.payload import decode_unverified
from gateway.outbox import Outbox
from simulators.fleet import MeterFleet
from tests.integration.chaos import scenario
from tests.integration.chaos.ledger import Row, Site, books, catch_up, drain, make_site, record
from tests.services import restartable_influxdb, restartable_mosquitto

pytestmark = pytest.mark.services

OUTAGE_S = 8.0  # the ingest's replay back-off (0.5 s doubling to 30 s) and its spool behave
# alike for longer outages; the spool costs disk, not memory


async def test_influxdb_killed_for_a_while(meters: MeterFleet, tmp_path: Path) -> None:
    with restartable_influxdb() as influx, restartable_mosquitto() as broker:
        site = make_site(tmp_path, meters, broker.port, influx.url)
        async with scenario.ingest(site) as ing:
            async with scenario.gateway(site):
                await scenario.flowing(site)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(influx.kill)
                await asyncio.sleep(OUTAGE_S)
                held = spooled_seqs(site)  # each message once, however often it was resent
                assert held
                assert len(held) == len(set(held))
                spooled = ing.stats.spooled_messages
                await asyncio.to_thread(influx.start)
                catch = await catch_up(site)
                await asyncio.sleep(1.0)
            await drain(site)
            duplicates = ing.stats.duplicates
        b = books(site)
    record(Row(f"InfluxDB killed {OUTAGE_S:.0f} s", b, duplicates, catch,
               f"{spooled} messages spooled, {ing.stats.resends_not_spooled} resends not "
               "spooled again; catch-up includes the replay back-off"))


def spooled_seqs(site: Site) -> list[int]:
    box = Outbox(site.loaded.resolve("spool.sqlite"))
    try:
        return [decode_unverified(payload, topic).seq
                for _, topic, payload, _ in box.pending(0, 1 << 30)]
    finally:
        box.close()
