"""What the chaos scenarios share: an in-process gateway and ingest that are always stopped,
and a private InfluxDB database dropped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from gateway.acquisition.service import GatewayService
from gateway.ingest.service import Ingest
from gateway.storage import open_storage
from tests.integration.chaos.ledger import Site, committed_seq, wait_until
from tests.integration.pathrun import pin_keys
from tests.services import Server, influx_query


@contextlib.asynccontextmanager
async def gateway(site: Site) -> AsyncIterator[GatewayService]:
    """The site's gateway running in this process; leaving marks a cut and stops it (the
    poll in flight is cut; what was acquired is committed, and flushed for up to 2 s)."""
    gw = GatewayService(site.loaded)
    task = asyncio.create_task(gw.run(), name="chaos-gateway")
    try:
        yield gw
    finally:
        site.cut()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def ingest(site: Site, client_id: str | None = None) -> AsyncIterator[Ingest]:
    """An ingest of the site in this process (keys pinned first), subscribed; stopped on
    leaving."""
    pin_keys(site.loaded)
    ing = Ingest(site.loaded, open_storage(site.loaded), client_id=client_id)
    ing.start()
    try:
        assert await asyncio.to_thread(ing.wait_subscribed, 15), "ingest did not subscribe"
        yield ing
    finally:
        await asyncio.to_thread(ing.stop)


async def flowing(site: Site, rows: int = 10) -> None:
    """Wait until the gateway has committed ``rows`` outbox rows."""
    await wait_until(lambda: committed_seq(site.outbox) >= rows,
                     f"the gateway did not commit {rows} rows")


@contextlib.contextmanager
def dropped_afterwards(server: Server | Any, site: Site) -> Iterator[None]:
    """Drop the site's database at the end (the ingest creates it)."""
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            influx_query(server, f'DROP DATABASE "{site.database}"')


def client_id() -> str:
    return f"chaos-ingest-{uuid.uuid4().hex[:8]}"
