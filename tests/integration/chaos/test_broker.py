"""The broker goes away: stopped for a while (its state kept), and restarted without
persistence while the ingest is away (every session and every queued message lost — the case
that lost 7 280 of 23 240 readings before the end-to-end acknowledgement)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from simulators.fleet import MeterFleet
from tests.integration.chaos import scenario
from tests.integration.chaos.ledger import (
    Row,
    books,
    catch_up,
    drain,
    make_site,
    record,
    unconfirmed,
)
from tests.services import Server, restartable_mosquitto

pytestmark = pytest.mark.services

# shorter than a minute: the gateway and the ingest behave alike for any outage longer than
# paho's reconnect back-off reaches (1 s doubling to 30 s), and the outbox holds it on disk
OUTAGE_S = 8.0
AWAY_S = 5.0


async def test_broker_down_for_a_while(meters: MeterFleet, tmp_path: Path,
                                       influxdb_v1: Server) -> None:
    with restartable_mosquitto() as broker:
        site = make_site(tmp_path, meters, broker.port, influxdb_v1.url)
        with scenario.dropped_afterwards(influxdb_v1, site):
            async with scenario.ingest(site) as ing:
                async with scenario.gateway(site) as gw:
                    await scenario.flowing(site)
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(broker.stop)
                    await asyncio.sleep(OUTAGE_S)
                    assert not gw.publisher.connected
                    await asyncio.to_thread(broker.start)
                    catch = await catch_up(site)
                    await asyncio.sleep(1.0)
                await drain(site)
                duplicates = ing.stats.duplicates
            b = books(site)
    record(Row(f"broker down {OUTAGE_S:.0f} s", b, duplicates, catch,
               "catch-up includes paho's reconnect back-off (1 s doubling)"))


@pytest.mark.parametrize("confirm", ["stored", "broker"])
async def test_broker_restarted_without_persistence_while_the_ingest_is_away(
        meters: MeterFleet, tmp_path: Path, influxdb_v1: Server, confirm: str) -> None:
    """The ingest (a fixed client id: a persistent session) goes away; the gateway publishes
    on, the broker acknowledges and queues for the ingest's session; the broker restarts
    without persistence, losing them; the ingest comes back. Everything acquired is stored,
    because the gateway resends what storage never confirmed. The control,
    ``delivery.confirm: broker`` (a PUBACK deletes the row, as before the end-to-end
    acknowledgement), must lose what the broker lost."""
    client_id = scenario.client_id()
    with restartable_mosquitto(persistence=False) as broker:
        site = make_site(tmp_path, meters, broker.port, influxdb_v1.url, confirm=confirm)
        with scenario.dropped_afterwards(influxdb_v1, site):
            duplicates = 0
            async with contextlib.AsyncExitStack() as stack:
                async with scenario.gateway(site) as gw:
                    async with scenario.ingest(site, client_id) as first:
                        await scenario.flowing(site)
                        await asyncio.sleep(1.0)
                    duplicates += first.stats.duplicates  # gone; its session stays
                    sent = gw.publisher.published
                    await asyncio.sleep(AWAY_S)
                    # sent, acknowledged by the broker and queued for the absent ingest: lost
                    # with the restart below (with confirm: stored, still in the outbox)
                    sent = gw.publisher.published - sent
                    held = unconfirmed(site.outbox)
                    assert sent > 0
                    if confirm == "stored":
                        assert held > 0
                    await asyncio.to_thread(broker.stop)
                    await asyncio.to_thread(broker.start)  # empty: no session, no queue
                    second = await stack.enter_async_context(scenario.ingest(site, client_id))
                    catch = await catch_up(site)
                    await asyncio.sleep(1.0)
                await drain(site)
                duplicates += second.stats.duplicates
            b = books(site, expect_loss=confirm == "broker")
    name = "broker restarted, no persistence, ingest away"
    if confirm == "broker":
        record(Row(f"{name}: control, confirm: broker", b, duplicates, None,
                   f"{b.missing_messages} messages acknowledged by the broker, lost with it"))
    else:
        record(Row(name, b, duplicates, catch,
                   f"{sent} messages sent (resends included) while the ingest was away, "
                   f"lost with the broker; {held} outbox rows unconfirmed at the restart"))
