"""MQTT → :class:`~gateway.dashboard.state.LiveState`: the dashboard subscribes like any
operator's client (paho, QoS 0, ``daq/#`` by default), decodes each message on paho's network
thread and hands the result to the event loop with ``call_soon_threadsafe`` (the state is only
touched on the loop's thread).

Topics: ``daq/ENT/GW/status``, ``daq/ENT/GW/data`` (batches: the polls of several devices),
``daq/ENT/GW/DEV/meta`` and ``…/alarms``.
Every message is checked here, before it reaches the state, by the decoders the ingest uses
(:func:`daq.payload.decode_unverified`, :func:`daq.payload.decode_meta`,
:func:`daq.alarms.decode_alarms`: types, ids, finite numbers, bounded printable texts), and
its payload's enterprise/gateway/device must be its topic's (:func:`daq.payload.check_source`;
a batch's signature is the ingest's to check, not the viewer's).
A message that fails is dropped with one warning per topic: a retained meta message of the
wrong shape would otherwise sit in the state and break every later computation that reads it
(energy meters, snapshots), and a text field of any length or content would reach every
browser. (The page escapes whatever it shows anyway; see ``static/app.js``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from daq.alarms import AlarmPayloadError, decode_alarms
from daq.config import LoadedConfig
from daq.limits import check_id
from daq.model import Reading
from daq.payload import PayloadError, check_source, decode_meta, decode_unverified
from gateway.dashboard.state import LiveState
from gateway.mqtt import connect_async, make_client, unique_client_id

log = logging.getLogger(__name__)


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
        client, props = make_client(self.loaded, unique_client_id("daq", "dashboard"),
                                    login=self.loaded.config.dashboard.mqtt_login)
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
        payload = bytes(msg.payload)
        if not payload:  # a retained message cleared
            return
        try:
            self._dispatch(msg.topic, payload, time.time_ns())
        except (PayloadError, AlarmPayloadError) as exc:
            self._drop(msg.topic, str(exc))

    def _dispatch(self, topic: str, payload: bytes, now: int) -> None:
        """Decode and check one message and hand it to the state; raise PayloadError or
        AlarmPayloadError for one that is not to be shown."""
        parts = topic.split("/")
        if len(parts) == 4 and parts[3] == "status":
            try:
                ent, gw = check_id(parts[1], "enterprise"), check_id(parts[2], "gateway")
                status = payload.decode("utf-8")
            except (ValueError, UnicodeDecodeError) as exc:
                raise PayloadError(str(exc)) from None
            if status not in ("online", "offline"):
                raise PayloadError(f"status: not online or offline: {status[:40]!r}")
            self._hand_over(self.state.apply_status, ent, gw, status, now)
        elif len(parts) == 4 and parts[3] == "data":
            readings = decode_unverified(payload, topic, now_ns=now).readings
            by_device: dict[str, list[Reading]] = {}
            for r in readings:  # a batch holds the polls of several devices: one at a time
                by_device.setdefault(r.device, []).append(r)
            for polled in by_device.values():
                self._hand_over(self.state.apply_readings, polled, now)
        elif len(parts) == 5 and parts[4] == "meta":
            doc = decode_meta(payload)
            check_source(topic, doc["enterprise"], doc["gateway"], doc["device"])
            self._hand_over(self.state.apply_meta, doc)
        elif len(parts) == 5 and parts[4] == "alarms":
            st = decode_alarms(payload, now_ns=now)
            check_source(topic, st.enterprise, st.gateway, st.device)
            self._hand_over(self.state.apply_alarms, st, now)
