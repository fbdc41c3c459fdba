"""MQTT with TLS and a password: the password comes from the environment, travels only over
TLS, and never shows in the log; a wrong password keeps the readings in the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daq.config import load_config
from gateway.acquisition.service import GatewayService
from gateway.ingest.service import Ingest
from gateway.storage import open_storage
from simulators.broker import Broker, free_port, private_mosquitto
from simulators.fleet import MeterFleet, MeterSpec
from tests.integration.pathrun import pin_keys
from tests.services import mosquitto_readable_dir

pytestmark = pytest.mark.services

PASSWORD = "pa55-" + uuid.uuid4().hex

TLS_CONF = """\
listener {port} 127.0.0.1
cafile {dir}/ca.pem
certfile {dir}/server.pem
keyfile {dir}/server.key
allow_anonymous false
password_file {dir}/passwords
persistence false
log_dest stderr
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[tuple[Broker, Path]]:
    with mosquitto_readable_dir("daq-test-tls-", "openssl", "mosquitto_passwd") as d:
        yield from _tls_broker(d)


def _tls_broker(d: Path) -> Iterator[tuple[Broker, Path]]:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=daq test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwords"), "daq", PASSWORD],
                   check=True, capture_output=True)
    for f in d.iterdir():
        f.chmod(0o644)
    conf = TLS_CONF.replace("{dir}", str(d))
    with private_mosquitto(port=free_port(), conf_template=conf) as broker:
        yield broker, d


def site(tmp: Path, ca_dir: Path, broker: Broker, sim_port: int, ent: str) -> Path:
    p = tmp / "site.yaml"
    p.write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: gw
    outbox: outbox.sqlite
    buses:
      - {{id: b, protocol: modbus-tcp, host: 127.0.0.1, port: {sim_port},
         devices: [{{id: m, profile: sdm630, interval_ms: 200}}]}}
mqtt:
  host: 127.0.0.1
  port: {broker.port}
  username: daq
  password: ${{DAQ_TEST_MQTT_PASSWORD}}
  tls: {{ca_file: {ca_dir}/ca.pem}}
ingest: {{spool: spool.sqlite, dead_letter: dead.sqlite, batch_interval_ms: 50}}
storage: {{kind: historian, path: h.sqlite}}
""")
    return p


async def test_tls_and_password_from_the_environment(
        tls_broker: tuple[Broker, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker, ca_dir = tls_broker
    monkeypatch.setenv("DAQ_TEST_MQTT_PASSWORD", PASSWORD)
    async with MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
        loaded = load_config(site(tmp_path, ca_dir, broker, fleet["m"].port,
                                  f"t{uuid.uuid4().hex[:10]}"))
        pin_keys(loaded)
        ingest = Ingest(loaded, open_storage(loaded))
        ingest.start()
        assert await asyncio.to_thread(ingest.wait_subscribed, 10), "no TLS connection"
        gw = GatewayService(loaded)
        task = asyncio.create_task(gw.run())
        deadline = time.monotonic() + 10
        while ingest.stats.written_readings < 3 * 14:
            assert time.monotonic() < deadline, "no readings over TLS"
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(ingest.stop)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(loaded.config)


async def test_a_wrong_password_keeps_readings_in_the_outbox(
        tls_broker: tuple[Broker, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    broker, ca_dir = tls_broker
    monkeypatch.setenv("DAQ_TEST_MQTT_PASSWORD", "wrong-" + PASSWORD)
    async with MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
        loaded = load_config(site(tmp_path, ca_dir, broker, fleet["m"].port,
                                  f"t{uuid.uuid4().hex[:10]}"))
        gw = GatewayService(loaded)
        task = asyncio.create_task(gw.run())
        await asyncio.sleep(1.5)
        assert not gw.publisher.connected
        assert gw.publisher.acknowledged == 0
        assert gw.outbox.count() >= 5  # kept on disk, not dropped
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "refused" in caplog.text  # the log says why, once per attempt
    assert PASSWORD not in caplog.text
