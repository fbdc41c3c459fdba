"""The gateway's MQTT publisher: the durable outbox drained to the broker at QoS 1, each row
kept until storage confirms it.

Delivery (``gateways[].delivery``):

* ``confirm: stored`` (default): a row leaves the outbox only when the ingest's end-to-end
  acknowledgement (``daq.ack/1`` on ``daq-ack/{enterprise}/{gateway}``) names its sequence
  number. A PUBACK only means the broker has it, and a broker can lose it (restarted without
  persistence, a queue overflowed). What storage has not confirmed within ``ack_timeout_s``
  is sent again, and everything unconfirmed after a reconnect. Duplicates are harmless (a
  reading overwrites itself in storage) and counted by the ingest.
* ``confirm: broker``: the PUBACK deletes the row (a site whose consumer is not daq's ingest).

Resends for want of a confirmation back off: each one that brings none doubles the wait, up to
``ACK_BACKOFF_MAX`` × ``ack_timeout_s`` (4 min at the default 30 s); any confirmation, and
every connect, brings it back to ``ack_timeout_s``. Without it, while storage is down or the
ingest is away, the same window of messages went out again every ``ack_timeout_s`` and piled
up as copies: in the ingest's spool (the chaos suite, tests/integration/chaos/, saw 588 copies
of 181 messages in an 8 s InfluxDB outage with a 2 s timeout) and in the broker's queue for an
absent ingest's persistent session.

Pacing: at most ``max_unconfirmed`` messages are out at once (sent, not yet confirmed) and at
most ``max_rate`` per second, replays included: the broker's queue for a slow or absent ingest
holds at most that many plus the copies of the resends, one window per (backed-off) resend
(Mosquitto drops QoS 1 messages beyond ``max_queued_messages``, 1 000 by default; what it
drops is sent again). The rest waits on disk, so a long outage costs disk, not memory.

A confirmed row whose DELETE the disk refuses (a full disk: a DELETE needs WAL space too) is
kept and deleted at a later try, once a second: the publisher goes on sending, the rows may
be sent again after a reconnect (harmless), and :attr:`Publisher.delete_error` says why until
a delete succeeds.

Retained state (device meta, alarm state, status) is kept in memory, newest per topic, and
sent again at every connect: it describes now, not history.

paho runs its network loop in a thread: about four times aiomqtt's QoS 1 rate on this kind of
machine (FACTS.md). Callbacks hop back into asyncio through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time

import paho.mqtt.client as mqtt

from daq.config import Delivery, LoadedConfig, MqttLogin
from daq.payload import PayloadError, ack_topic, decode_ack
from gateway.mqtt import LinkLog, Will, connect_async, make_client
from gateway.outbox import Outbox, OutboxError, OutboxWriteError

log = logging.getLogger(__name__)

ACK_BACKOFF_MAX = 8  # the longest wait for a confirmation, in units of ack_timeout_s


class Publisher:
    def __init__(
        self,
        loaded: LoadedConfig,
        outbox: Outbox,
        client_id: str,
        *,
        enterprise: str | None = None,
        gateway: str | None = None,
        delivery: Delivery | None = None,
        will: Will | None = None,
        retained: list[tuple[str, bytes]] | None = None,
        login: MqttLogin | None = None,
    ) -> None:
        self.loaded = loaded
        self.outbox = outbox
        self.delivery = delivery or Delivery()
        self.by_storage = self.delivery.confirm == "stored"
        if self.by_storage and (enterprise is None or gateway is None):
            raise ValueError("confirmation by storage needs the enterprise and gateway ids")
        self.ack_topic = ack_topic(enterprise or "", gateway or "")
        self.gateway = gateway
        self._retained: dict[str, bytes] = dict(retained or [])
        self.client, self._props = make_client(loaded, client_id, will=will, login=login)
        self._pubacks: collections.deque[int] = collections.deque()  # mids, from paho
        self._refused: collections.deque[tuple[int, str]] = collections.deque()
        self._retry_refused_at = 0.0
        self._acks: collections.deque[list[tuple[int, int]]] = collections.deque()
        self._inflight: dict[int, int] = {}  # mid -> outbox id (no PUBACK yet)
        self._awaiting: dict[int, float] = {}  # outbox id -> monotonic send time (PUBACKed)
        self._cursor = 0
        self._rewind = False
        self.ack_wait_s = self.delivery.ack_timeout_s  # backs off while nothing is confirmed
        self._tokens = 1.0
        self._refill_at = time.monotonic()
        self._connected = threading.Event()
        self._wake: asyncio.Event | None = None
        self._poke_pending = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0
        self.acknowledged = 0  # rows removed from the outbox (confirmed)
        self.resent = 0
        self._undeleted: list[tuple[int, int]] = []  # confirmed, DELETE refused: try again
        self._delete_at = 0.0
        self.delete_error: str | None = None  # why confirmed rows cannot be deleted, while so
        self.delete_error_ns = 0
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.link = LinkLog("gateway", loaded)
        self.link.watch(self.client)

    # paho thread ---------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object,
                    _p: object = None) -> None:
        if getattr(rc, "is_failure", False):
            self.link.down(f"refused: {rc}")
            return
        self.link.up()
        if self.by_storage:
            client.subscribe(self.ack_topic, qos=1)
        for topic, payload in list(self._retained.items()):
            client.publish(topic, payload, qos=1, retain=True)
        self._rewind = True  # send again whatever storage has not confirmed
        self.ack_wait_s = self.delivery.ack_timeout_s  # a new path: no reason to wait long
        self._connected.set()
        self._poke()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: object,
                       _p: object = None) -> None:
        if self._connected.is_set():
            self.link.down(f"disconnected: {rc}; buffering to the outbox")
        self._connected.clear()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: object,
                    _p: object) -> None:
        if getattr(rc, "is_failure", False):  # e.g. 0x87 not authorized: the broker refused it
            self._refused.append((mid, str(rc)))
        else:
            self._pubacks.append(mid)
        self._poke()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.ack_topic:
            return
        try:
            ack = decode_ack(bytes(msg.payload))
        except PayloadError as exc:
            log.warning("gateway: an acknowledgement that is not one (%s): ignored", exc)
            return
        if ack.gateway != self.gateway or ack.epoch != self.outbox.epoch:
            return  # another gateway's, or an earlier outbox file's
        self._acks.append(list(ack.ranges))
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

    @property
    def unconfirmed(self) -> int:
        """Messages sent and not yet confirmed (in flight to the broker or to storage)."""
        return len(self._inflight) + len(self._awaiting)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        connect_async(self.loaded, self.client, self._props)

    def notify(self) -> None:
        """New messages are in the outbox."""
        if self._wake is not None:
            self._wake.set()

    def set_retained(self, topic: str, payload: bytes) -> None:
        """Publish retained state now if connected, and again at every connect."""
        self._retained[topic] = payload
        if self._connected.is_set():
            self.client.publish(topic, payload, qos=1, retain=True)

    async def run(self) -> None:
        assert self._wake is not None, "call start() first"
        failing = False
        while True:
            try:
                self._settle()
                sent = self._send() if self._connected.is_set() else 0
            except OutboxError as exc:  # a read the disk refuses (I/O error): try again in 1 s
                if not failing:
                    log.error("gateway: %s; publishing again when the outbox can be read", exc)
                failing, sent = True, 0
                await asyncio.sleep(1.0)
                continue
            if failing:
                log.warning("gateway: the outbox can be read again")
                failing = False
            if sent:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._idle_s()):
                    await self._wake.wait()

    def _idle_s(self) -> float:
        if self._tokens < 1 and self._connected.is_set():
            return max(0.001, (1 - self._tokens) / self.delivery.max_rate)
        return 0.5

    def _send(self) -> int:
        """Hand paho what the window and the rate allow; how many were sent."""
        now = time.monotonic()
        self._tokens = min(max(1.0, self.delivery.max_rate / 10),
                           self._tokens + (now - self._refill_at) * self.delivery.max_rate)
        self._refill_at = now
        free = min(self.delivery.max_unconfirmed - self.unconfirmed, int(self._tokens))
        if free <= 0:
            return 0
        rows = self.outbox.pending(self._cursor, free)
        for row_id, topic, payload, retain in rows:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("publish failed: %s", mqtt.error_string(info.rc))
                break
            self._inflight[info.mid] = row_id
            self._cursor = row_id
            self._tokens -= 1
            self.published += 1
        return len(rows)

    def _settle(self) -> None:
        """Take in PUBACKs and storage acknowledgements; rewind to resend what is overdue."""
        confirmed: list[int] = []
        while self._refused:  # kept in the outbox, sent again after a while; said once a time
            mid, why = self._refused.popleft()
            if self._inflight.pop(mid, None) is not None and not self._retry_refused_at:
                log.error("gateway: the broker refused a message (%s): check the gateway's "
                          "MQTT login and the broker's ACL; kept, sent again in 10 s", why)
                self._retry_refused_at = time.monotonic() + 10.0
        if self._retry_refused_at and time.monotonic() >= self._retry_refused_at:
            self._retry_refused_at = 0.0
            self._rewind = True
        while self._pubacks:
            row = self._inflight.pop(self._pubacks.popleft(), None)
            if row is None:
                continue
            if self.by_storage:
                self._awaiting[row] = time.monotonic()
            else:
                confirmed.append(row)
        self._undeleted += [(row, row) for row in confirmed]
        while self._acks:
            ranges = self._acks.popleft()
            self._undeleted += ranges
            for first, last in ranges:
                for row in [r for r in self._awaiting if first <= r <= last]:
                    del self._awaiting[row]
            self.ack_wait_s = self.delivery.ack_timeout_s  # storage answers again
        self._delete()
        if self._awaiting and not self._rewind:
            oldest = next(iter(self._awaiting.values()))  # kept in the order they were sent
            if time.monotonic() - oldest > self.ack_wait_s:
                log.warning("gateway: storage has not confirmed %d messages within %.0f s; "
                            "sending them again", len(self._awaiting), self.ack_wait_s)
                self._rewind = True
                self.ack_wait_s = min(self.ack_wait_s * 2,
                                      self.delivery.ack_timeout_s * ACK_BACKOFF_MAX)
        if self._rewind:
            self._rewind = False
            oldest_row = self.outbox.first_id()
            if oldest_row is not None and oldest_row <= self._cursor:
                self.resent += len(self._awaiting) + len(self._inflight)
                self._cursor = oldest_row - 1
            self._awaiting.clear()
            self._inflight.clear()

    def _delete(self) -> None:
        """Delete the confirmed rows; if the disk refuses, keep them and try again in 1 s."""
        if not self._undeleted or (self.delete_error is not None
                                   and time.monotonic() < self._delete_at):
            return
        if self.delete_error is not None:  # give the WAL's space back first
            with contextlib.suppress(OutboxWriteError):
                self.outbox.checkpoint()
        try:
            self.acknowledged += self.outbox.ack_ranges(self._undeleted)
        except OutboxWriteError as exc:
            if self.delete_error is None:
                self.delete_error_ns = time.time_ns()
                log.error("gateway: %s; the confirmed rows are kept and deleted later", exc)
            self.delete_error = str(exc)
            self._delete_at = time.monotonic() + 1.0
            return
        self._undeleted = []
        if self.delete_error is not None:
            log.warning("gateway: confirmed rows can be deleted from the outbox again")
            self.delete_error = None

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything in the outbox is confirmed (or the timeout passes)."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._settle()
                    if not self._inflight and not self._awaiting and self.outbox.count() == 0:
                        return True
                    await asyncio.sleep(0.02)
        except (TimeoutError, OutboxError):
            return False

    def stop(self, offline: tuple[str, bytes] | None = None) -> None:
        if offline is not None and self._connected.is_set():
            info = self.client.publish(offline[0], offline[1], qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError) as exc:
                log.warning("gateway: could not publish the offline status: %s", exc)
            else:
                if not info.is_published():
                    log.warning("gateway: the offline status was not acknowledged within 2 s")
        self._connected.clear()  # a disconnect we asked for is not an outage
        self.client.disconnect()
        self.client.loop_stop()
        with contextlib.suppress(OutboxError):  # kept in the outbox: sent at the next start
            self._settle()
