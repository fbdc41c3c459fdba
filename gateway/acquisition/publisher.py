"""The gateway's MQTT publisher: the durable outbox drained to the broker at QoS 1.

paho runs its network loop in a thread: about four times aiomqtt's QoS 1 rate on this kind of
machine (FACTS.md). Callbacks hop back into asyncio through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading

import paho.mqtt.client as mqtt

from daq.config import LoadedConfig
from gateway.mqtt import LinkLog, Will, connect_async, make_client
from gateway.outbox import Outbox

log = logging.getLogger(__name__)


class Publisher:
    """Moves messages from the outbox to the broker and deletes them once acknowledged.

    At most ``window`` messages are handed to paho un-acknowledged; the rest wait on disk, so
    a long broker outage costs disk, not memory. paho keeps the in-flight ones and resends
    them on reconnect; after a restart, everything still in the outbox is sent again (a
    redelivered reading carries its acquisition timestamp and overwrites itself in storage).
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        outbox: Outbox,
        client_id: str,
        *,
        will: Will | None = None,
        on_connect_messages: list[tuple[str, bytes]] | None = None,
        window: int = 2000,
    ) -> None:
        self.loaded = loaded
        self.outbox = outbox
        self.window = window
        self.on_connect_messages = on_connect_messages or []
        self.client, self._props = make_client(loaded, client_id, will=will)
        self._acked: collections.deque[int] = collections.deque()
        self._inflight: dict[int, int] = {}  # mid -> outbox id
        self._cursor = 0
        self._connected = threading.Event()
        self._wake: asyncio.Event | None = None
        self._poke_pending = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0
        self.acknowledged = 0
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.link = LinkLog("gateway", loaded)
        self.link.watch(self.client)

    # paho thread ---------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object,
                    _p: object = None) -> None:
        if getattr(rc, "is_failure", False):
            self.link.down(f"refused: {rc}")
            return
        self.link.up()
        for topic, payload in self.on_connect_messages:
            client.publish(topic, payload, qos=1, retain=True)
        self._connected.set()
        self._poke()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: object,
                       _p: object = None) -> None:
        if self._connected.is_set():
            self.link.down(f"disconnected: {rc}; buffering to the outbox")
        self._connected.clear()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, _rc: object,
                    _p: object) -> None:
        self._acked.append(mid)
        self._poke()

    def _poke(self) -> None:
        # one wake-up in flight at a time: a call_soon_threadsafe per PUBACK would write to the
        # loop's wake-up pipe thousands of times a second, fill it, and lose signals
        if self._loop is not None and not self._poke_pending.is_set():
            self._poke_pending.set()
            self._loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        self._poke_pending.clear()
        if self._wake is not None:
            self._wake.set()

    # asyncio side --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        connect_async(self.loaded, self.client, self._props)

    def notify(self) -> None:
        """New messages are in the outbox."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        assert self._wake is not None, "call start() first"
        while True:
            self._drain_acks()
            free = self.window - len(self._inflight)
            if free > 0 and self._connected.is_set():
                rows = self.outbox.pending(self._cursor, free)
                for row_id, topic, payload, retain in rows:
                    info = self.client.publish(topic, payload, qos=1, retain=retain)
                    if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                        log.warning("publish failed: %s", mqtt.error_string(info.rc))
                        break
                    self._inflight[info.mid] = row_id
                    self._cursor = row_id
                    self.published += 1
                if rows:
                    continue
            self._wake.clear()
            try:
                async with asyncio.timeout(0.5):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _drain_acks(self) -> None:
        ids = []
        while self._acked:
            mid = self._acked.popleft()
            row = self._inflight.pop(mid, None)
            if row is not None:
                ids.append(row)
        if ids:
            self.outbox.ack(ids)
            self.acknowledged += len(ids)

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything in the outbox is acknowledged (or the timeout passes)."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._drain_acks()
                    if not self._inflight and self.outbox.count() == 0:
                        return True
                    await asyncio.sleep(0.02)
        except TimeoutError:
            return False

    def stop(self, offline: tuple[str, bytes] | None = None) -> None:
        if offline is not None and self._connected.is_set():
            info = self.client.publish(offline[0], offline[1], qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError) as exc:  # paho: not queued, or not sent
                log.warning("offline status not published: %s", exc)
            else:
                if not info.is_published():
                    log.warning("offline status not acknowledged by the broker within 2 s")
        self._connected.clear()  # a disconnect we asked for is not an outage
        self.client.disconnect()
        self.client.loop_stop()
        self._drain_acks()
