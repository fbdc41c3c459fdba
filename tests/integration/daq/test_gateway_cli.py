"""`daq gateway` as a service manager runs it: SIGTERM flushes the outbox and goes offline.
(No ingest here, so the site lets the broker's PUBACK confirm a message: ``confirm: broker``.)"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import jsonschema
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
    meta: list[tuple[bool, bytes]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{ent}")
    sub.on_connect = lambda c, *_: c.subscribe(f"daq/{ent}/#", qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/meta"):
            meta.append((msg.retain, bytes(msg.payload)))
        elif msg.topic.endswith("/status"):
            status.append(bytes(msg.payload))
        elif msg.topic == f"daq/{ent}/gw/data":
            data.append(bytes(msg.payload))

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
    delivery: {{confirm: broker}}
    buses:
      - {{id: b, protocol: modbus-tcp, host: 127.0.0.1, port: {fleet["m"].port},
         devices: [{{id: m, profile: sdm630, interval_ms: 200}}]}}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
""")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daq.cli", "gateway", str(site), cwd=REPO,
                stderr=asyncio.subprocess.PIPE)
            try:
                for _ in range(200):
                    if len(data) >= 3:
                        break
                    await asyncio.sleep(0.05)
                assert len(data) >= 3
                assert status[-1] == b"online"
                # the device is described once, retained, as documented
                schema = json.loads((REPO / "docs" / "mqtt-meta.schema.json").read_text())
                (described,) = [json.loads(p) for _, p in meta]
                jsonschema.validate(described, schema)
                assert [c["id"] for c in described["channels"]][:3] == [
                    "voltage_l1", "voltage_l2", "voltage_l3"]
                body, _, trailer = data[0].rpartition(b"\n")
                assert trailer.startswith(b"#ed25519 ")  # signed, as every batch
                jsonschema.validate(json.loads(body),
                                    json.loads((REPO / "docs" / "mqtt-payload.schema.json")
                                               .read_text()))
            except BaseException:
                proc.kill()  # never leave the gateway running when the test fails
                await proc.wait()
                raise
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
        for topic in (f"daq/{ent}/gw/status", f"daq/{ent}/gw/m/meta", f"daq/{ent}/gw/m/alarms"):
            sub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        sub.loop_stop()
        sub.disconnect()
