"""The dashboard's live updates survive bad messages: a retained meta message of the wrong
shape (once enough to stop every browser's updates for good: the broadcaster died on it and
nobody saw the exception) is dropped at the MQTT intake, and updates keep coming. Real
Mosquitto, a unique topic prefix, the SSE stream read over HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from daq.config import load_config
from daq.model import Quality, Reading
from daq.payload import data_topic, encode_batch, meta_topic
from gateway.dashboard import Dashboard, DashboardOptions

pytestmark = pytest.mark.services


def publish(broker: Any, messages: list[tuple[str, bytes, bool]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


async def deltas_with(url: str, key: str, until: float) -> list[float]:
    """The times (monotonic) of the SSE ``delta`` events naming channel ``key``."""
    seen: list[float] = []
    async with aiohttp.ClientSession() as http, http.get(url + "api/events") as resp:
        event = b""
        while time.monotonic() < until:
            try:
                line = await asyncio.wait_for(resp.content.readline(),
                                              until - time.monotonic())
            except TimeoutError:
                break
            if line.startswith(b"event: "):
                event = line[7:].strip()
            elif line.startswith(b"data: ") and event == b"delta":
                doc = orjson.loads(line[6:])
                if any(c["key"] == key for c in doc["channels"]):
                    seen.append(time.monotonic())
    return seen


async def test_a_malformed_retained_meta_does_not_stop_live_updates(
        mqtt_broker: Any, tmp_path: Path) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    site = tmp_path / "site.yaml"
    site.write_text(f"""
enterprise: {{id: {ent}}}
gateways: []
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
storage: {{kind: historian, path: historian.sqlite}}
""")
    loaded = load_config(site)
    bad_metas = [
        (meta_topic(ent, "gw-1", "bad-1"),
         {"enterprise": ent, "gateway": "gw-1", "device": "bad-1", "channels": "oops"}),
        (meta_topic(ent, "gw-1", "bad-2"),
         {"enterprise": ent, "gateway": "gw-1", "device": "bad-2", "channels": [1, 2]}),
        (meta_topic(ent, "gw-1", "bad-3"), {"enterprise": ent, "gateway": ["gw-1"],
                                            "device": "bad-3"}),
    ]
    publish(mqtt_broker, [(t, orjson.dumps(doc), True) for t, doc in bad_metas])
    dash = Dashboard(loaded, DashboardOptions(
        port=0, topic=f"daq/{ent}/#", alarm_log=str(tmp_path / "dashboard.sqlite"), tz="UTC"))
    await dash.start()
    try:
        key = f"{ent}/gw-1/good/voltage"
        until = time.monotonic() + 4.0

        async def publish_readings() -> None:
            seq = 0
            while time.monotonic() < until:
                seq += 1
                r = Reading(ts_ns=time.time_ns(), enterprise=ent, gateway="gw-1",
                            device="good", channel="voltage", quantity="voltage", unit="V",
                            value=230.0 + seq, quality=Quality.GOOD)
                await asyncio.to_thread(publish, mqtt_broker, [
                    (data_topic(ent, "gw-1"),
                     encode_batch(ent, "gw-1", "00000000000000aa", seq, [[r]]), False)])
                await asyncio.sleep(0.2)

        started = time.monotonic()
        seen, _ = await asyncio.gather(deltas_with(dash.url, key, until), publish_readings())
        # updates all along, also after the once-a-second ticks that read every meta
        assert seen, "no live update at all"
        assert seen[-1] - started > 3.0, f"live updates stopped after {seen[-1] - started:.1f} s"
        assert dash.feed.dropped >= len(bad_metas)
        assert all(loop.restarts == 0 for loop in dash.loops)
        assert not any(k.endswith(("/bad-1", "/bad-2", "/bad-3")) for k in dash.state.devices)
    finally:
        await dash.stop()
        publish(mqtt_broker, [(t, b"", True) for t, _ in bad_metas])  # clear the retained
