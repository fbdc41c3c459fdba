"""Helpers shared by the end-to-end tests (not a fixture module: no services start here)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from daq.config import LoadedConfig
from daq.model import Reading
from gateway.ingest import Ingest
from gateway.poller import DeviceCoordinator, build_coordinators
from gateway.service import GatewayService
from gateway.storage import open_storage


async def run_path(loaded: LoadedConfig, polls: int,
                   others: Sequence[Ingest] = ()) -> tuple[GatewayService, Ingest]:
    """Run ingest + gateway until every device has been polled ``polls`` times; drain.
    ``others``: ingests already running that share the work."""
    ingest = Ingest(loaded, open_storage(loaded))
    ingest.start()
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
