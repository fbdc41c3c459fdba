"""The dashboard's MQTT intake: only what decodes and names its own topic reaches the state;
a dropped topic is logged once. Messages handed to the intake as paho would; no broker."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from daq.model import ChannelMeta, DeviceMeta, Quality, Reading
from daq.payload import encode_batch, encode_meta
from gateway.dashboard.feed import MqttFeed
from gateway.dashboard.state import LiveState


def message(topic: str, payload: bytes) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(topic=topic.encode())
    msg.payload = payload
    return msg


def meta(dev: str = "m1", **fields: Any) -> bytes:
    m = DeviceMeta("e", "g", dev, "sdm630", "Eastron", "SDM630", 1000,
                   (ChannelMeta("v", "voltage", "V", "L1-N", 0, 300, 0.1),))
    return orjson.dumps({**orjson.loads(encode_meta(m)), **fields})


def data(dev: str = "m1", gateway: str = "g") -> bytes:
    return encode_batch("e", gateway, "00000000000000aa", 1, [[
        Reading(time.time_ns(), "e", gateway, dev, "v", "voltage", "V", 230.0,
                quality=Quality.GOOD)]])


async def feed_with(*messages: tuple[str, bytes]) -> MqttFeed:
    feed = MqttFeed(None, "daq/#", LiveState())  # type: ignore[arg-type]
    feed._loop = asyncio.get_running_loop()
    for topic, payload in messages:
        feed._on_message(None, None, message(topic, payload))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the hand-over to the loop
    return feed


async def test_good_messages_reach_the_state() -> None:
    feed = await feed_with(("daq/e/g/m1/meta", meta()), ("daq/e/g/data", data()),
                           ("daq/e/g/status", b"online"))
    assert feed.dropped == 0
    assert feed.state.devices["e/g/m1"].as_dict()["maker"] == "Eastron"
    assert "e/g/m1/v" in feed.state.channels
    assert feed.state.gateways["e/g"]["status"] == "online"


async def test_a_payload_for_another_device_than_its_topics_is_dropped() -> None:
    feed = await feed_with(("daq/e/g/m2/meta", meta("m1", maker="forged")),
                           ("daq/e/g2/data", data("m1")))  # a batch names its gateway
    assert feed.dropped == 2
    assert feed.state.devices == {}
    assert feed.state.channels == {}


@pytest.mark.parametrize(("topic", "payload"), [
    ("daq/e/g/m1/meta", meta(maker="x" * 300)),
    ("daq/e/g/m1/meta", meta(interval_ms="1000")),
    ("daq/e/g/m1/meta", meta(device="<b>m1</b>")),
    ("daq/e/g/m1/meta", b"{"),
    ("daq/e/<b>g<b>/status", b"online"),
    ("daq/e/g/status", b"<b>online</b>"),
    ("daq/e/g/status", b"\xff"),
    ("daq/e/g/m1/alarms", b'{"schema": "daq.alarms/1"}'),
])
async def test_a_bad_message_is_dropped(topic: str, payload: bytes) -> None:
    feed = await feed_with((topic, payload))
    assert feed.dropped == 1
    assert feed.state.devices == {}
    assert feed.state.gateways == {}


async def test_each_dropping_topic_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.dashboard.feed"):
        feed = await feed_with(*[("daq/e/g/m1/meta", meta(maker="x" * 300))] * 3,
                               ("daq/e/g/m2/meta", b"{"))
    assert feed.dropped == 4
    assert [r.getMessage().split(" ", 3)[2] for r in caplog.records] == [
        "daq/e/g/m1/meta", "daq/e/g/m2/meta"]
