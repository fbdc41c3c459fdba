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


async def values_until(url: str, key: str, last: float, timeout_s: float) -> list[float]:
    """The values of channel ``key`` in the SSE ``delta`` events, until ``last`` arrives (or
    the timeout passes: then the list ends without it)."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http, http.get(url + "api/events") as resp:
        event = b""
        while time.monotonic() < deadline and last not in seen:
            try:
                line = await asyncio.wait_for(resp.content.readline(),
                                              deadline - time.monotonic())
            except TimeoutError:
                break
            if line.startswith(b"event: "):
                event = line[7:].strip()
            elif line.startswith(b"data: ") and event == b"delta":
                doc = orjson.loads(line[6:])
                seen += [c["value"] for c in doc["channels"] if c["key"] == key]
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
        count = 16  # at 0.2 s apart: several of the once-a-second ticks that read every meta

        def publish_readings() -> None:  # one client, a reading every 0.2 s
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
            client.connect(mqtt_broker.host, mqtt_broker.port)
            client.loop_start()
            try:
                for seq in range(1, count + 1):
                    r = Reading(ts_ns=time.time_ns(), enterprise=ent, gateway="gw-1",
                                device="good", channel="voltage", quantity="voltage",
                                unit="V", value=230.0 + seq, quality=Quality.GOOD)
                    body = encode_batch(ent, "gw-1", "00000000000000aa", seq, [[r]])
                    client.publish(data_topic(ent, "gw-1"), body, qos=1).wait_for_publish(5)
                    time.sleep(0.2)
            finally:
                client.loop_stop()
                client.disconnect()

        last = 230.0 + count
        seen, _ = await asyncio.gather(values_until(dash.url, key, last, 30.0),
                                       asyncio.to_thread(publish_readings))
        # updates all along: the last value, published after the ticks, reached the page
        assert seen, "no live update at all"
        assert last in seen, f"live updates stopped at {seen[-1]} (the last is {last})"
        assert dash.feed.dropped >= len(bad_metas)
        assert all(loop.restarts == 0 for loop in dash.loops)
        assert not any(k.endswith(("/bad-1", "/bad-2", "/bad-3")) for k in dash.state.devices)
    finally:
        await dash.stop()
        publish(mqtt_broker, [(t, b"", True) for t, _ in bad_metas])  # clear the retained
