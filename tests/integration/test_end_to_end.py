"""Simulated meters → gateway → real Mosquitto → ingest → real storage, checked against truth.

After N polls, storage holds exactly N points per channel, each equal to the value the
simulator served at that instant (float32 exactness: the value is the float32 on the wire,
scaled in float64 exactly as the gateway does it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3

from daq.config import LoadedConfig, load_config
from gateway.acquisition.service import GatewayService
from gateway.ingest.service import Ingest
from gateway.storage import open_storage
from simulators.fleet import MeterFleet, MeterSpec
from tests.integration.pathrun import pin_keys, run_path

pytestmark = pytest.mark.services

METERS = (("sdm630", "incomer"), ("dtsu666", "furnace-1"), ("dtsu666", "compressor-1"))
POLLS = 5
INTERVAL_MS = 200


@dataclass
class Site:
    fleet: MeterFleet
    enterprise: str
    tmp: Path

    def config(self, broker: Any, storage_yaml: str) -> LoadedConfig:
        buses = ""
        for i, (profile, name) in enumerate(METERS):
            buses += f"""
      - id: bus-{i}
        protocol: modbus-tcp
        host: 127.0.0.1
        port: {self.fleet[name].port}
        timeout_ms: 500
        devices:
          - id: {name}
            profile: {profile}
            interval_ms: {INTERVAL_MS}
"""
        text = f"""
enterprise: {{id: {self.enterprise}}}
gateways:
  - id: gw-1
    outbox: outbox.sqlite
    buses:{buses}
mqtt: {{host: {broker.host}, port: {broker.port}}}
ingest:
  subscription: daq/{self.enterprise}/#
  batch_interval_ms: 50
  spool: spool.sqlite
storage:
{storage_yaml}
"""
        path = self.tmp / "site.yaml"
        path.write_text(text)
        return load_config(path)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    specs = [MeterSpec(p, 0, 1, seed, name=n) for seed, (p, n) in enumerate(METERS)]
    async with MeterFleet(specs) as fleet:
        yield Site(fleet, f"t{uuid.uuid4().hex[:10]}", tmp_path)


def check_against_truth(site: Site, gw: GatewayService,
                        stored: Callable[[str, str, str], list[tuple[int, float]]]) -> None:
    """stored(quantity, device, channel) -> [(ts_ns, value)] in time order."""
    assert gw.acquired > 0
    for coord in gw.coordinators:
        sim = site.fleet[coord.config.id]
        n = coord.state.polls
        assert n >= POLLS
        assert coord.state.failures == 0
        for ch in coord.profile.channels:
            points = stored(ch.quantity, coord.config.id, ch.id)
            assert len(points) == n, f"{coord.config.id}/{ch.id}: {len(points)} points, {n} polls"
            for ts, value in points:
                assert value == sim.truth(ch.id, ts), (coord.config.id, ch.id, ts)
                # polled on the wall-clock grid: the answer comes just after a tick
                assert ts % (INTERVAL_MS * 1_000_000) < INTERVAL_MS * 1_000_000 // 2


async def test_path_into_influxdb_v1(site: Site, mqtt_broker: Any, influxdb_v1: Any) -> None:
    db = f"e2e_{site.enterprise}"
    loaded = site.config(mqtt_broker, f"  kind: influxdb_v1\n  url: {influxdb_v1.url}\n"
                                      f"  database: {db}\n")
    gw, ingest = await run_path(loaded, POLLS)
    http = urllib3.PoolManager()

    def stored(quantity: str, device: str, channel: str) -> list[tuple[int, float]]:
        q = (f"SELECT value FROM \"{quantity}\" WHERE device='{device}' AND "
             f"channel='{channel}' AND time <= now() + 1h")
        resp = http.request("GET", f"{influxdb_v1.url}/query",
                            fields={"db": db, "q": q, "epoch": "ns"})
        series = resp.json()["results"][0].get("series", [])
        return [(int(t), v) for t, v in series[0]["values"]] if series else []

    check_against_truth(site, gw, stored)
    # the demo's promise: stored equals acquired, nothing lost, nothing duplicated
    assert ingest.stats.written_readings == gw.acquired


async def test_path_into_historian(site: Site, mqtt_broker: Any) -> None:
    from gateway.storage.historian import HistorianStorage

    loaded = site.config(mqtt_broker, "  kind: historian\n  path: historian.sqlite\n")
    gw, _ = await run_path(loaded, POLLS)
    hist = HistorianStorage(loaded.resolve("historian.sqlite"))

    def stored(_q: str, device: str, channel: str) -> list[tuple[int, float]]:
        rows = hist.series(device, channel, 0, 2**63 - 1)
        return [(r.ts_ns, r.value) for r in rows]  # type: ignore[misc]

    try:
        check_against_truth(site, gw, stored)
    finally:
        hist.close()


async def test_path_into_victoria_metrics_v2_api(site: Site, mqtt_broker: Any,
                                                 victoria_metrics: Any) -> None:
    """The InfluxDB v2 write API as VictoriaMetrics implements it, read back through its
    export API. VM keeps milliseconds and about 12 significant digits (see
    docs/storage.md), so values are compared to 1e-12 relative and in time order."""
    loaded = site.config(mqtt_broker, f"  kind: influxdb_v2\n  url: {victoria_metrics.url}\n"
                                      "  org: daq\n  bucket: daq\n  token: unused\n")
    gw, _ = await run_path(loaded, POLLS)
    http = urllib3.PoolManager()
    assert http.request("GET", f"{victoria_metrics.url}/internal/force_flush").status == 200
    for coord in gw.coordinators:
        sim = site.fleet[coord.config.id]
        for ch in coord.profile.channels:
            match = (f'{{__name__="{ch.quantity}_value",enterprise="{site.enterprise}",'
                     f'device="{coord.config.id}",channel="{ch.id}"}}')
            served = sim.served(ch.id)
            for _ in range(50):  # VM 1.79 makes rows searchable up to ~1 s after the write
                resp = http.request("GET", f"{victoria_metrics.url}/api/v1/export",
                                    fields={"match[]": match})
                lines = [line for line in resp.data.decode().splitlines() if line]
                series = json.loads(lines[0]) if lines else {"values": []}
                if len(series["values"]) >= len(served):
                    break
                await asyncio.sleep(0.1)
            assert len(series["values"]) == len(served) == coord.state.polls
            for (ts_ns, truth), value, ts_ms in zip(served, series["values"],
                                                    series["timestamps"], strict=True):
                assert value == pytest.approx(truth, rel=1e-12, abs=1e-12)
                assert 0 <= ts_ms * 1_000_000 - ts_ns // 1_000_000 * 1_000_000 <= 50_000_000


async def test_two_ingests_share_the_load_through_a_shared_subscription(
        site: Site, mqtt_broker: Any, influx_db: Any) -> None:
    """`$share/…` subscriptions: each message goes to one of the ingests, none is lost or
    doubled, and storage ends up with every reading."""
    loaded = site.config(mqtt_broker, f"  kind: influxdb_v1\n  url: {influx_db.url}\n"
                                      f"  database: {influx_db.name}\n")
    group = f"$share/ingest-{site.enterprise}/daq/{site.enterprise}/#"

    def member(i: int) -> LoadedConfig:
        ingest = loaded.config.ingest.model_copy(update={
            "subscription": group, "spool": f"spool-{i}.sqlite",
            "dead_letter": f"dead-{i}.sqlite"})
        return dataclasses.replace(loaded, config=loaded.config.model_copy(
            update={"ingest": ingest}))

    pin_keys(loaded)

    ingests = [Ingest(member(i), open_storage(loaded)) for i in (1, 2)]
    # run_path starts one more member itself: three ingests share the group
    for ing in ingests:
        ing.start()
        assert await asyncio.to_thread(ing.wait_subscribed, 10)
    try:
        gw, third = await run_path(member(0), POLLS, others=ingests)
    finally:
        for ing in ingests:
            await asyncio.to_thread(ing.stop)
    counts = [i.stats.written_readings for i in [*ingests, third]]
    assert sum(counts) == gw.acquired  # each message to exactly one member
    assert sum(1 for c in counts if c > 0) >= 2  # and the load really was shared
    http = urllib3.PoolManager()
    resp = http.request("GET", f"{influx_db.url}/query", fields={
        "db": influx_db.name, "q": "SELECT count(value) FROM /.*/ WHERE time <= now() + 1h"})
    stored = sum(s["values"][0][1] for s in resp.json()["results"][0]["series"])
    assert stored == gw.acquired
