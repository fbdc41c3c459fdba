"""Helpers shared by the end-to-end tests (not a fixture module: no services start here)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from calibration.keys import pin_site_keys
from calibration.registry import Registry
from daq.alarms import AlarmState, decode_alarms
from daq.config import LoadedConfig
from daq.model import Reading
from gateway.acquisition.poller import DeviceCoordinator, build_coordinators
from gateway.acquisition.service import GatewayService
from gateway.ingest.service import Ingest
from gateway.storage import open_storage


def pin_keys(loaded: LoadedConfig) -> None:
    """Pin the site's gateways' signing keys in its registry, as commissioning does
    (``daq keys pin``): the ingest stores only what a pinned key signed."""
    with Registry(loaded.keys_registry()) as reg:
        pin_site_keys(reg, loaded, "test", "test site commissioned")


def start_ingest(loaded: LoadedConfig, **kwargs: Any) -> Ingest:
    """An ingest of the site, its gateways' keys pinned first, started."""
    pin_keys(loaded)
    ingest = Ingest(loaded, open_storage(loaded), **kwargs)
    ingest.start()
    return ingest


async def run_path(loaded: LoadedConfig, polls: int,
                   others: Sequence[Ingest] = ()) -> tuple[GatewayService, Ingest]:
    """Run ingest + gateway until every device has been polled ``polls`` times; drain.
    ``others``: ingests already running that share the work."""
    ingest = start_ingest(loaded)
    assert await asyncio.to_thread(ingest.wait_subscribed, 10), "ingest did not subscribe"
    gw = GatewayService(loaded)
    task = asyncio.create_task(gw.run())
    deadline = time.monotonic() + 30
    while min(c.state.polls for c in gw.coordinators) < polls:
        assert time.monotonic() < deadline, "gateway did not reach the poll count"
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 10
    def written() -> int:
        return sum(i.stats.written_readings for i in (ingest, *others))

    while written() < gw.acquired:
        assert time.monotonic() < deadline, f"only {written()} of {gw.acquired} readings stored"
        await asyncio.sleep(0.02)
    await asyncio.to_thread(ingest.stop)
    return gw, ingest


@dataclass
class Polling:
    """Coordinators of a site's first gateway running, with every poll's readings kept."""

    coords: dict[str, DeviceCoordinator]
    got: list[list[Reading]] = field(default_factory=list)

    def of(self, device: str) -> list[list[Reading]]:
        return [rs for rs in self.got if rs[0].device == device]


@contextlib.asynccontextmanager
async def polling(loaded: LoadedConfig) -> AsyncIterator[Polling]:
    """Run the pollers alone (no MQTT): for tests of device behaviour on real links."""
    run = Polling({})

    async def sink(readings: list[Reading]) -> None:
        run.got.append(readings)

    run.coords = {c.config.id: c for c in build_coordinators(loaded, loaded.gateway(), sink)}
    tasks = [asyncio.create_task(c.run()) for c in run.coords.values()]
    try:
        yield run
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in run.coords.values():
            await c.bus.close()


async def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until it is true; fail with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(loaded: LoadedConfig) -> AsyncIterator[tuple[GatewayService, Ingest]]:
    """Ingest and gateway of a site running; on leaving, the gateway stops and everything it
    acquired is stored before the ingest stops."""
    ingest = start_ingest(loaded)
    assert await asyncio.to_thread(ingest.wait_subscribed, 10), "ingest did not subscribe"
    gw = GatewayService(loaded)
    task = asyncio.create_task(gw.run())
    try:
        yield gw, ingest
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await wait_for(lambda: ingest.stats.written_readings >= gw.acquired, 15,
                           f"only {ingest.stats.written_readings} of {gw.acquired} stored")
        finally:
            await asyncio.to_thread(ingest.stop)


@contextlib.contextmanager
def alarm_states(host: str, port: int, topic: str) -> Iterator[list[AlarmState]]:
    """Every alarms message on ``topic`` (wildcards allowed), decoded, as it arrives; empty
    payloads (another test session clearing retained messages) are left out."""
    states: list[AlarmState] = []
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            states.append(decode_alarms(bytes(msg.payload)))

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,  # type: ignore[attr-defined]
                      protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(host, port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(5), f"could not subscribe to {topic}"
        yield states
    finally:
        sub.loop_stop()
        sub.disconnect()
