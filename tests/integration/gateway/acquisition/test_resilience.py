"""Bad input loses nothing: a dead device, a broker outage, a database outage, a killed
gateway. Real simulators, real Mosquitto, real influxd, real processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daq.alarms import AlarmKind
from daq.config import LoadedConfig, load_config
from daq.model import Quality, Reading
from daq.payload import decode_unverified
from gateway.acquisition.service import GatewayService
from gateway.ingest.service import Ingest
from gateway.outbox import Outbox
from gateway.storage import open_storage
from gateway.storage.historian import HistorianStorage
from simulators.broker import free_port, private_mosquitto
from simulators.fleet import MeterFleet, MeterSpec
from tests.integration.pathrun import alarm_states, pin_keys, polling, wait_for
from tests.services import private_influxdb

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[4]


def site_yaml(fleet: MeterFleet, enterprise: str, mqtt_port: int, storage: str,
              interval_ms: int = 200, timeout_ms: int = 300) -> str:
    buses = "".join(f"""
      - id: bus-{name}
        protocol: modbus-tcp
        host: 127.0.0.1
        port: {fleet[name].port}
        timeout_ms: {timeout_ms}
        devices:
          - id: {name}
            profile: {fleet[name].profile.id}
            interval_ms: {interval_ms}
            failures_before_backoff: 2
            max_backoff_s: 1
""" for name in fleet)
    return f"""
enterprise: {{id: {enterprise}}}
gateways:
  - id: gw-1
    outbox: outbox.sqlite
    buses:{buses}
mqtt: {{host: 127.0.0.1, port: {mqtt_port}}}
ingest:
  subscription: daq/{enterprise}/#
  batch_interval_ms: 50
  spool: spool.sqlite
  dead_letter: rejected.sqlite
storage:
{storage}
"""


def write_site(tmp: Path, text: str) -> LoadedConfig:
    (tmp / "site.yaml").write_text(text)
    return load_config(tmp / "site.yaml")


@pytest.fixture
async def fleet() -> AsyncIterator[MeterFleet]:
    specs = [MeterSpec("sdm630", name="good"), MeterSpec("dtsu666", seed=1, name="flaky")]
    async with MeterFleet(specs) as f:
        yield f


def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_a_dead_device_is_bad_with_a_reason_and_does_not_stall_the_others(
        fleet: MeterFleet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.acquisition.poller")
    loaded = write_site(tmp_path, site_yaml(fleet, unique(), 1883,
                                            "  kind: historian\n  path: h.sqlite\n"))
    fleet["flaky"].faults.silent = True
    async with polling(loaded) as run:
        coords, got = run.coords, run.got
        await asyncio.sleep(2.1)
        good, flaky = coords["good"].state, coords["flaky"].state
        # the good device kept its 200 ms rhythm although its neighbour timed out (300 ms)
        assert good.polls >= 9
        assert good.failures == 0
        assert flaky.degraded
        assert flaky.polls < good.polls  # backed off
        bad = [r for rs in got for r in rs if r.device == "flaky"]
        assert bad
        assert all(r.quality is Quality.BAD and r.reason == "timeout" and r.value is None
                   for r in bad)
        fleet["flaky"].faults.silent = False
        await asyncio.sleep(1.6)  # max back-off is 1 s
        assert not coords["flaky"].state.degraded
        assert all(r.quality is Quality.GOOD for r in run.of("flaky")[-1])
    messages = [r.getMessage() for r in caplog.records if "flaky" in r.getMessage()]
    assert len([m for m in messages if "no reading" in m]) == 1  # once on failure
    assert len([m for m in messages if "recovered" in m]) == 1  # once on recovery


async def test_a_dead_device_raises_a_retained_alarm_that_clears_on_recovery(
        fleet: MeterFleet, tmp_path: Path, mqtt_broker: Any) -> None:
    ent = unique()
    loaded = write_site(tmp_path, site_yaml(fleet, ent, mqtt_broker.port,
                                            "  kind: historian\n  path: h.sqlite\n"))
    gw = GatewayService(loaded)
    with alarm_states(mqtt_broker.host, mqtt_broker.port,
                      f"daq/{ent}/gw-1/flaky/alarms") as states:
        task = asyncio.create_task(gw.run())
        try:
            await wait_for(lambda: bool(states), 10, "no alarm state at start")
            assert states[0].alarms == ()  # published once at start: clears stale alarms
            fleet["flaky"].faults.silent = True
            await wait_for(lambda: bool(states[-1].alarms), 10, "no alarm raised")
            (alarm,) = states[-1].alarms
            assert (alarm.kind, alarm.severity) == (AlarmKind.COMMUNICATION, "critical")
            assert "timeout" in alarm.reason
            assert [e.action for e in states[-1].events] == ["raised"]
            fleet["flaky"].faults.silent = False
            await wait_for(lambda: not states[-1].alarms, 10, "alarm not cleared")
            assert [(e.action, e.alarm.since_ns) for e in states[-1].events] == [
                ("cleared", alarm.since_ns)]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_broker_outage_buffers_in_the_outbox_and_replays(
        fleet: MeterFleet, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet: the broker is "down"
    loaded = write_site(tmp_path, site_yaml(fleet, unique(), port,
                                            "  kind: historian\n  path: h.sqlite\n"))
    gw = GatewayService(loaded)
    task = asyncio.create_task(gw.run())
    try:
        await wait_for(lambda: gw.outbox.count() >= 6, 10, "outbox did not fill")
        assert gw.publisher.acknowledged == 0
        with private_mosquitto(port=port):
            pin_keys(loaded)
            ingest = Ingest(loaded, open_storage(loaded))
            ingest.start()
            assert await asyncio.to_thread(ingest.wait_subscribed, 10)
            await wait_for(lambda: gw.publisher.connected, 15, "gateway did not reconnect")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await wait_for(lambda: ingest.stats.written_readings >= gw.acquired, 10,
                           "not everything arrived")
            await asyncio.to_thread(ingest.stop)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    hist = HistorianStorage(loaded.resolve("h.sqlite"))
    try:
        assert hist.count() == gw.acquired  # nothing lost, nothing doubled
    finally:
        hist.close()


async def test_database_outage_spools_to_disk_and_replays(
        fleet: MeterFleet, tmp_path: Path, mqtt_broker: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    db_port = free_port()  # InfluxDB is "down" until started below
    loaded = write_site(tmp_path, site_yaml(
        fleet, unique(), mqtt_broker.port,
        f"  kind: influxdb_v1\n  url: http://127.0.0.1:{db_port}\n  database: outage\n"
        "  timeout_s: 2\n"))
    pin_keys(loaded)
    ingest = Ingest(loaded, open_storage(loaded))
    ingest.start()
    assert await asyncio.to_thread(ingest.wait_subscribed, 10)
    gw = GatewayService(loaded)
    task = asyncio.create_task(gw.run())
    await wait_for(lambda: ingest.stats.spooled_messages >= 6, 10, "nothing was spooled")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # every message the gateway sent is on the ingest's disk now, not the broker's; storage
    # confirmed none, so the gateway keeps every one of them too
    await wait_for(lambda: ingest.stats.spooled_messages == gw.publisher.published, 5,
                   "not every message sent reached the spool")
    assert ingest.stats.written_readings == 0
    assert gw.publisher.acknowledged == 0
    assert _count(loaded.resolve("outbox.sqlite")) == ingest.stats.spooled_messages
    with private_influxdb(port=db_port) as server:
        await wait_for(lambda: ingest.stats.written_readings >= gw.acquired, 40,
                       "the spool was not replayed")
        await asyncio.to_thread(ingest.stop)
        from tests.services import influx_query

        res = influx_query(server, "SELECT count(value) FROM /.*/ WHERE time <= now() + 1h",
                           db="outage")
        total = sum(s["values"][0][1] for s in res["results"][0]["series"])  # type: ignore[index]
    assert total == gw.acquired
    # an operator reads one line when storage goes away and one when it is back, however
    # many batches failed in between
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.ingest.service"
            and r.levelno >= logging.WARNING]
    assert sum("storage unreachable" in m for m in said) == 1, said
    assert sum("storage reachable again" in m for m in said) == 1, said


def test_a_killed_gateway_loses_no_acknowledged_reading(tmp_path: Path) -> None:
    """SIGKILL the gateway process while the broker is down; what it had committed to its
    outbox reaches storage after a restart."""
    async def scenario() -> None:
        async with MeterFleet([MeterSpec("sdm630", name="good")]) as fl:
            port = free_port()
            text = site_yaml(fl, unique(), port, "  kind: historian\n  path: h.sqlite\n")
            loaded = write_site(tmp_path, text)
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daq.cli", "gateway", str(tmp_path / "site.yaml"),
                env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                outbox_path = loaded.resolve("outbox.sqlite")
                await wait_for(lambda: outbox_path.exists() and _count(outbox_path) >= 5, 20,
                               "the gateway committed nothing")
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            committed = _readings_in(outbox_path)
            assert committed
            with private_mosquitto(port=port):
                pin_keys(loaded)
                ingest = Ingest(loaded, open_storage(loaded))
                ingest.start()
                assert await asyncio.to_thread(ingest.wait_subscribed, 10)
                gw = GatewayService(loaded)  # the restarted gateway replays its outbox first
                task = asyncio.create_task(gw.run())
                await wait_for(lambda: gw.outbox.count() == 0 and gw.publisher.acknowledged
                               >= len(committed), 15, "outbox not replayed")
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await wait_for(lambda: ingest.stats.written_readings
                               >= sum(len(v) for v in committed.values()), 10, "not stored")
                await asyncio.to_thread(ingest.stop)
            hist = HistorianStorage(loaded.resolve("h.sqlite"))
            try:
                for readings in committed.values():
                    for r in readings:
                        (row,) = hist.series(r.device, r.channel, r.ts_ns, r.ts_ns + 1)
                        assert row.value == r.value
            finally:
                hist.close()

    asyncio.run(scenario())


def _count(path: Path) -> int:
    box = Outbox(path)
    try:
        return box.count()
    finally:
        box.close()


def _readings_in(path: Path) -> dict[int, list[Reading]]:
    box = Outbox(path)
    try:
        return {row_id: decode_unverified(payload, topic).readings
                for row_id, topic, payload, _ in box.pending(0, 10**6)}
    finally:
        box.close()
