"""A burst of 10 000 messages on 10 000 distinct topics (``daq/{ent}/gw-x{i}/data``: garbage,
well-formed but unsigned batches, batches signed by a key nobody pinned) while the real
gateway runs, plus 100 unsigned forgeries on the real gateway's topic naming the sequence
numbers it is about to use. Nothing bogus is stored or confirmed, every good reading is
stored, the ingest keeps up. (Each kind of bad message one by one, with its reason:
tests/integration/gateway/ingest/test_poison.py and, for the dashboard,
tests/integration/gateway/dashboard/test_hostile_messages.py.)"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from daq.payload import data_topic
from daq.signing import Signer, new_private_key
from gateway.ingest.deadletters import DeadLetters
from simulators.fleet import MeterFleet
from tests.integration.chaos import scenario
from tests.integration.chaos.ledger import (
    GATEWAY,
    Row,
    Site,
    books,
    catch_up,
    committed_seq,
    drain,
    epoch_of,
    make_site,
    record,
    wait_until,
)
from tests.services import Restartable, Server, restartable_mosquitto

pytestmark = pytest.mark.services

TOPICS = 10_000
FORGERIES = 100


def batch(ent: str, gw: str, seq: int, value: float, epoch: str = "00000000000000ab") -> bytes:
    reading = {"channel": "voltage_l1", "quantity": "voltage", "unit": "V",
               "ts": time.time_ns(), "value": value, "raw": value, "quality": "good"}
    return orjson.dumps({"schema": "daq.data/2", "enterprise": ent, "gateway": gw,
                         "epoch": epoch, "seq": seq,
                         "polls": [{"device": "incomer", "readings": [reading]}],
                         "events": []})


def bogus(site: Site) -> list[tuple[str, bytes]]:
    rng = random.Random(7)
    stranger = Signer(new_private_key())
    out: list[tuple[str, bytes]] = []
    for i in range(TOPICS):
        topic = data_topic(site.enterprise, f"gw-x{i}")
        kind = i % 3
        if kind == 0:
            payload = rng.randbytes(rng.randrange(1, 400))
        elif kind == 1:
            payload = batch(site.enterprise, f"gw-x{i}", 1, 1e6 + i)
        else:
            payload = stranger.sign(batch(site.enterprise, f"gw-x{i}", 1, 2e6 + i))
        out.append((topic, payload))
    # the real gateway's topic, its epoch, the sequence numbers it is about to commit
    epoch, next_seq = epoch_of(site.outbox), committed_seq(site.outbox) + 1
    out += [(data_topic(site.enterprise, GATEWAY),
             batch(site.enterprise, GATEWAY, next_seq + i, -1.0, epoch))
            for i in range(FORGERIES)]
    rng.shuffle(out)
    return out


def blast(broker: Restartable, messages: list[tuple[str, bytes]]) -> None:
    """Publish everything at QoS 1 as fast as paho goes; return once the broker has it all."""
    done = threading.Event()
    acked = 0

    def on_publish(*_a: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chaos-burst",
                         protocol=mqtt.MQTTv5)
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1)
        assert done.wait(120), f"the broker acknowledged {acked} of {len(messages)}"
    finally:
        client.loop_stop()
        client.disconnect()


async def test_a_burst_of_10000_bogus_topics(meters: MeterFleet, tmp_path: Path,
                                             influxdb_v1: Server) -> None:
    with restartable_mosquitto() as broker:
        site = make_site(tmp_path, meters, broker.port, influxdb_v1.url)
        with scenario.dropped_afterwards(influxdb_v1, site):
            async with scenario.ingest(site) as ing:
                async with scenario.gateway(site):
                    await scenario.flowing(site)
                    messages = bogus(site)
                    start = time.monotonic()
                    await asyncio.to_thread(blast, broker, messages)
                    sent_s = time.monotonic() - start
                    catch = await catch_up(site)
                    await wait_until(lambda: ing.stats.rejected_messages >= len(messages),
                                     f"{ing.stats.rejected_messages} of {len(messages)} "
                                     "bogus messages handled")
                    handled_s = time.monotonic() - start
                    await asyncio.sleep(1.0)
                await drain(site)
                duplicates = ing.stats.duplicates
                assert ing.stats.unsigned_messages == len(messages)
                assert ing.stats.rejected_messages == len(messages)
            dead = DeadLetters(site.loaded.resolve("dead.sqlite"))
            try:
                assert dead.count() == len(messages)
            finally:
                dead.close()
            b = books(site)
            assert b.foreign == 0
    record(Row(f"{TOPICS} bogus topics + {FORGERIES} forgeries", b, duplicates, catch,
               f"burst published in {sent_s:.1f} s, all dead-lettered {handled_s:.1f} s "
               "after its start; catch-up: the good rows committed by the burst's end"))
