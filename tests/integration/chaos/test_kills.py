"""SIGKILL at random instants (seeded): of the gateway process (``daq gateway``), and of the
ingest process (``daq ingest --client-id``: a persistent session at the broker). A killed
gateway loses, by design, only what it had acquired and not yet committed; a killed ingest
loses nothing (what it had not acknowledged, the broker delivers again; what it had not
confirmed, the gateway sends again)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from simulators.fleet import MeterFleet
from tests.integration.chaos import scenario
from tests.integration.chaos.ledger import (
    Daq,
    Row,
    books,
    catch_up,
    drain,
    logged_duplicates,
    make_site,
    record,
    wait_until,
)
from tests.integration.pathrun import pin_keys
from tests.services import Server, restartable_mosquitto

pytestmark = pytest.mark.services

KILLS = 6
SEED = 20261129


async def test_gateway_killed_at_random_instants(meters: MeterFleet, tmp_path: Path,
                                                 influxdb_v1: Server) -> None:
    rng = random.Random(SEED)
    with restartable_mosquitto() as broker:
        site = make_site(tmp_path, meters, broker.port, influxdb_v1.url)
        with scenario.dropped_afterwards(influxdb_v1, site):
            async with scenario.ingest(site) as ing:
                with Daq(site, "gateway") as gw:
                    for _ in range(KILLS):
                        gw.start()
                        await asyncio.sleep(rng.uniform(1.0, 3.0))  # startup takes ~0.6 s
                        site.cut()
                        gw.kill()
                    gw.start()
                    catch = await catch_up(site)  # what the killed lives committed
                    await asyncio.sleep(1.0)
                    site.cut()
                    assert gw.stop() == 0
                await drain(site)
                duplicates = ing.stats.duplicates
            b = books(site)
    record(Row(f"gateway SIGKILLed {KILLS}× (seed {SEED})", b, duplicates, catch,
               "catch-up from the last restart, process start included"))


async def test_ingest_killed_at_random_instants(meters: MeterFleet, tmp_path: Path,
                                                influxdb_v1: Server) -> None:
    rng = random.Random(SEED + 1)
    with restartable_mosquitto() as broker:
        site = make_site(tmp_path, meters, broker.port, influxdb_v1.url)
        pin_keys(site.loaded)
        with scenario.dropped_afterwards(influxdb_v1, site), \
                Daq(site, "ingest", "--client-id", scenario.client_id()) as ing:
            ing.start()
            await wait_until(lambda: "subscribed to" in ing.log(), "the ingest did not subscribe")
            async with scenario.gateway(site):
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.5, 3.0))
                    ing.kill()
                    await asyncio.sleep(rng.uniform(0.0, 1.0))
                    ing.start()
                catch = await catch_up(site)
                await asyncio.sleep(1.0)
            await drain(site)
            assert ing.stop() == 0
            duplicates = logged_duplicates(ing)
            b = books(site)
    record(Row(f"ingest SIGKILLed {KILLS}× (seed {SEED + 1})", b, duplicates, catch,
               "duplicates: counted per ingest life (its tracking restarts empty); catch-up "
               "from the last restart, process start included"))
