"""MQTT → :class:`~gateway.dashboard.state.LiveState`: the dashboard subscribes like any
operator's client (paho, QoS 0, ``daq/#`` by default), decodes each message on paho's network
thread and hands the result to the event loop with ``call_soon_threadsafe`` (the state is only
touched on the loop's thread).

Topics: ``daq/ENT/GW/status``, ``daq/ENT/GW/data`` (batches), ``daq/ENT/GW/DEV/meta`` and
``…/alarms``.
Messages that do not decode are dropped here, before they reach the state: a retained meta
message of the wrong shape would otherwise sit in the state and break every later
computation that reads it (energy meters, snapshots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from daq.alarms import AlarmPayloadError, decode_alarms
from daq.config import LoadedConfig
from daq.model import Reading
from daq.payload import PayloadError, decode_unverified
from gateway.dashboard.state import LiveState
from gateway.mqtt import connect_async, make_client, unique_client_id

log = logging.getLogger(__name__)


def meta_problem(doc: object) -> str | None:
    """Why ``doc`` is not a device meta message the dashboard can use, or None.

    The fields the views read: ``enterprise``, ``gateway``, ``device`` (text); ``channels``
    (a list of objects with a text ``id``); ``instrument`` (text or absent).
    """
    if not isinstance(doc, dict):
        return "not a JSON object"
    for name in ("enterprise", "gateway", "device"):
        if not isinstance(doc.get(name), str):
            return f"{name}: expected text"
    channels = doc.get("channels", [])
    if not isinstance(channels, list):
        return "channels: expected a list"
    for i, ch in enumerate(channels):
        if not isinstance(ch, dict) or not isinstance(ch.get("id"), str):
            return f"channels[{i}]: expected an object with a text id"
        if not isinstance(ch.get("instrument"), str | None):
            return f"channels[{i}].instrument: expected text"
    if not isinstance(doc.get("instrument"), str | None):
        return "instrument: expected text"
    return None


class MqttFeed:
    """The dashboard's MQTT subscription, feeding ``state`` on the running loop."""

    def __init__(self, loaded: LoadedConfig, topic: str, state: LiveState) -> None:
        self.loaded = loaded
        self.topic = topic
        self.state = state
        self.dropped = 0  # messages that did not decode
        self._dropped_topics: set[str] = set()  # each logged once, not once per message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None

    def start(self) -> None:
        """Connect in the background (paho's thread); call on the event loop."""
        self._loop = asyncio.get_running_loop()
        client, props = make_client(self.loaded, unique_client_id("daq", "dashboard"))
        topic = self.topic
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=0)
        client.on_message = self._on_message
        self._client = client
        connect_async(self.loaded, client, props)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _hand_over(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(fn, *args)

    def _drop(self, topic: str, why: str) -> None:
        self.dropped += 1
        if topic in self._dropped_topics:
            log.debug("dashboard: dropped %s: %s", topic, why)
        else:
            self._dropped_topics.add(topic)
            log.warning("dashboard: dropped %s (later ones from it at debug level): %s",
                        topic, why)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        payload = bytes(msg.payload)
        now = time.time_ns()
        if not payload:
            return
        if len(parts) == 4 and parts[3] == "status":
            self._hand_over(self.state.apply_status, parts[1], parts[2],
                            payload.decode("utf-8", "replace"), now)
        elif len(parts) == 4 and parts[3] == "data":
            try:
                readings = decode_unverified(payload, msg.topic).readings
            except PayloadError as exc:
                self._drop(msg.topic, str(exc))
                return
            by_device: dict[str, list[Reading]] = {}
            for r in readings:  # a batch holds the polls of several devices: one at a time
                by_device.setdefault(r.device, []).append(r)
            for polled in by_device.values():
                self._hand_over(self.state.apply_readings, polled, now)
        elif len(parts) == 5 and parts[4] == "meta":
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                self._drop(msg.topic, f"not JSON: {exc}")
                return
            problem = meta_problem(doc)
            if problem is not None:
                self._drop(msg.topic, problem)
                return
            self._hand_over(self.state.apply_meta, doc)
        elif len(parts) == 5 and parts[4] == "alarms":
            try:
                st = decode_alarms(payload)
            except AlarmPayloadError as exc:
                self._drop(msg.topic, str(exc))
                return
            self._hand_over(self.state.apply_alarms, st, now)
