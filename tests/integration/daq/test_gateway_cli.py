"""`daq gateway` as a service manager runs it: SIGTERM flushes the outbox and goes offline."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.outbox import Outbox
from simulators.fleet import MeterFleet, MeterSpec

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[3]


async def test_sigterm_flushes_and_goes_offline(tmp_path: Path, mqtt_broker: Any) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    data: list[bytes] = []
    status: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{ent}")
    sub.on_connect = lambda c, *_: c.subscribe(f"daq/{ent}/#", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        (status if msg.topic.endswith("/status") else data).append(bytes(msg.payload))

    sub.on_message = on_message
    sub.connect(mqtt_broker.host, mqtt_broker.port)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        async with MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
            site = tmp_path / "site.yaml"
            site.write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: gw
    outbox: outbox.sqlite
    buses:
      - {{id: b, protocol: modbus-tcp, host: 127.0.0.1, port: {fleet["m"].port},
         devices: [{{id: m, profile: sdm630, interval_ms: 200}}]}}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
""")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daq.cli", "gateway", str(site), cwd=REPO,
                stderr=asyncio.subprocess.PIPE)
            for _ in range(200):
                if len(data) >= 3:
                    break
                await asyncio.sleep(0.05)
            assert len(data) >= 3
            assert status[-1] == b"online"
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0, err.decode()
            assert b"Traceback" not in err
        for _ in range(40):
            if status[-1] == b"offline":
                break
            await asyncio.sleep(0.05)
        assert status[-1] == b"offline"
        box = Outbox(tmp_path / "outbox.sqlite")
        try:
            assert box.count() == 0  # flushed before exiting
        finally:
            box.close()
    finally:
        # clear the retained status this test left on the shared broker
        sub.publish(f"daq/{ent}/gw/status", b"", qos=1, retain=True).wait_for_publish(5)
        sub.loop_stop()
        sub.disconnect()
