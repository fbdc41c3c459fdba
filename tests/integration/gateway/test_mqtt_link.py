"""An operator sees a broker outage: one line when the broker cannot be reached or the
connection drops, for the gateway's publisher and the ingest alike, and one when it is back
(real sockets: a port nobody listens on, then a private Mosquitto started on it and
stopped)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from daq.config import LoadedConfig, load_config
from gateway.acquisition.publisher import Publisher
from gateway.ingest.service import Ingest
from gateway.outbox import Outbox
from gateway.storage import open_storage
from simulators.broker import free_port, private_mosquitto
from tests.integration.pathrun import pin_keys

pytestmark = pytest.mark.services


def site(tmp: Path, port: int) -> LoadedConfig:
    p = tmp / "site.yaml"
    p.write_text(f"""
enterprise: {{id: link}}
gateways: [{{id: gw-1, buses: []}}]
mqtt: {{host: 127.0.0.1, port: {port}}}
ingest: {{spool: spool.sqlite, dead_letter: dead.sqlite}}
storage: {{kind: historian, path: hist.sqlite}}
""")
    return load_config(p)


def lines(caplog: pytest.LogCaptureFixture, who: str, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(f"{who}: MQTT") and word in r.getMessage()]


async def wait_for_line(caplog: pytest.LogCaptureFixture, who: str, word: str,
                        timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not lines(caplog, who, word):
        assert time.monotonic() < deadline, f"no {word!r} line from {who}"
        await asyncio.sleep(0.05)


async def test_outage_and_recovery_are_each_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    loaded = site(tmp_path, port)
    pin_keys(loaded)
    ingest = Ingest(loaded, open_storage(loaded))
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = Publisher(loaded, outbox, "link-gw", enterprise="link", gateway="gw-1")
    ingest.start()
    publisher.start()
    stopped = False
    try:
        await wait_for_line(caplog, "ingest", "unreachable")
        await wait_for_line(caplog, "gateway", "unreachable")
        await asyncio.sleep(2.5)  # paho retries every 1 s at first: still one line each
        assert len(lines(caplog, "ingest", "unreachable")) == 1
        assert len(lines(caplog, "gateway", "unreachable")) == 1
        with private_mosquitto(port=port):
            await wait_for_line(caplog, "ingest", "reachable again", timeout_s=40)
            await wait_for_line(caplog, "gateway", "reachable again", timeout_s=40)
        # the broker goes away under a live connection: one line each again
        deadline = time.monotonic() + 20
        while (len(lines(caplog, "ingest", "unreachable")) < 2
               or len(lines(caplog, "gateway", "unreachable")) < 2):
            assert time.monotonic() < deadline, "a dropped connection was not logged"
            await asyncio.sleep(0.05)
        assert any("disconnected" in m for m in lines(caplog, "ingest", "unreachable"))
        publisher.stop()
        await asyncio.to_thread(ingest.stop)
        stopped = True
    finally:
        if not stopped:
            publisher.stop()
            await asyncio.to_thread(ingest.stop)
        outbox.close()
