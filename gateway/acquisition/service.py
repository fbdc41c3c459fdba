"""The gateway service: coordinators → bounded queue → durable outbox → MQTT publisher.

Queue policy: the queue between the pollers and the outbox writer holds ``queue_size``
device polls. When it is full a poller waits (back-pressure), so its next poll comes late
and skips ticks rather than piling up memory; nothing already acquired is dropped.

An outbox that refuses writes (disk full, read-only, I/O error) stops nothing: polls go on,
are held in memory up to a bound and written when the disk takes them again, and an
``outbox_unwritable`` alarm goes out as retained state, which does not need the outbox
(:mod:`gateway.acquisition.outbox_guard`).
"""

from __future__ import annotations

import asyncio
import logging

from calibration.legal import load_periods
from daq.alarms import Alarm, AlarmEvent, AlarmKind, Severity
from daq.config import LoadedConfig
from daq.model import Reading, now_ns
from daq.payload import data_topic, encode_batch, encode_meta, meta_topic, status_topic
from daq.signing import Signer
from gateway.acquisition.alarming import AlarmSource, AlarmSupervisor, AlarmUpdate
from gateway.acquisition.calibration_stage import CalibrationStage
from gateway.acquisition.driftwatch import DriftWatch
from gateway.acquisition.identity import gateway_signer
from gateway.acquisition.outbox_guard import OUTBOX_KINDS, Chunk, OutboxGuard
from gateway.acquisition.poller import DeviceCoordinator, build_coordinators
from gateway.acquisition.publisher import Publisher
from gateway.mqtt import Will, unique_client_id
from gateway.outbox import Outbox

log = logging.getLogger(__name__)


class GatewayService:
    def __init__(
        self,
        loaded: LoadedConfig,
        gateway_id: str | None = None,
        *,
        queue_size: int = 10_000,
        commit_interval_s: float = 0.02,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.gateway(gateway_id)
        self.enterprise = loaded.config.enterprise.id
        self._queue: asyncio.Queue[list[Reading] | AlarmUpdate] = asyncio.Queue(queue_size)
        self.commit_interval_s = commit_interval_s
        self.coordinators: list[DeviceCoordinator] = build_coordinators(
            loaded, self.config, self._enqueue
        )
        by_channel = {c.config.id: c.config.instruments for c in self.coordinators}
        by_device = {c.config.id: c.config.instrument for c in self.coordinators}
        cal = loaded.config.calibration
        self.calibration: CalibrationStage | None = None
        if cal is not None and (any(by_channel.values()) or any(by_device.values())):
            periods = load_periods(loaded.resolve(cal.verification_periods)) \
                if cal.verification_periods else load_periods()
            self.calibration = CalibrationStage(
                loaded.resolve(cal.registry), by_channel, by_device, reload_s=cal.reload_s,
                window_days=cal.verification_window_days, periods=periods)
        self._coordinator = {c.config.id: c for c in self.coordinators}
        self.drift = DriftWatch(self.config.drift_checks)
        sources: list[AlarmSource] = [] if self.calibration is None else [self.calibration]
        if self.drift.active:
            sources.append(self.drift)
        self.alarms = AlarmSupervisor(self.enterprise, self.config.id, self._coordinator,
                                      sources)
        outbox_path = loaded.resolve(self.config.outbox.format(gateway=self.config.id))
        self.outbox = Outbox(outbox_path)
        status = status_topic(self.enterprise, self.config.id)
        self._offline = (status, b"offline")
        metas = [
            (meta_topic(self.enterprise, self.config.id, c.config.id), encode_meta(c.meta))
            for c in self.coordinators
        ]
        client_id = unique_client_id(loaded.config.mqtt.client_id_prefix, "gw",
                                     self.enterprise, self.config.id)
        self.publisher = Publisher(
            loaded,
            self.outbox,
            client_id,
            enterprise=self.enterprise,
            gateway=self.config.id,
            delivery=self.config.delivery,
            will=Will(status, b"offline"),
            retained=[(status, b"online"), *metas],
            login=self.config.mqtt_login,
        )
        self.signer: Signer = gateway_signer(loaded, self.config)
        self._topic = data_topic(self.enterprise, self.config.id)
        self._pending: list[list[Reading] | AlarmUpdate] = []  # taken, not yet committed
        self.acquired = 0  # readings put into the outbox
        legal_devices = frozenset(d for d in by_device
                                  if by_device[d] or any(by_channel[d].values()))
        cfg = self.config
        self.guard = OutboxGuard(
            self.outbox, self._write, hold_readings=cfg.outbox_hold_readings,
            max_bytes=None if cfg.outbox_max_mb is None else int(cfg.outbox_max_mb * 1e6),
            max_age_s=None if cfg.outbox_max_age_h is None else cfg.outbox_max_age_h * 3600,
            legal_devices=legal_devices)
        self._carried: list[tuple[str, AlarmEvent]] = []  # outbox alarm events for storage

    async def _enqueue(self, readings: list[Reading]) -> None:
        if self.calibration is not None:
            self.calibration.apply(readings)
        if self.drift.active:
            self.drift.observe(readings)
        await self._queue.put(readings)  # waits when full: back-pressure on the poller
        device = readings[0].device
        update = self.alarms.observe(device, self._coordinator[device].state, readings,
                                     now_ns())
        if update is not None:  # queued behind the readings that caused it
            await self._queue.put(update)

    def _commit(self, batch: list[list[Reading] | AlarmUpdate]) -> None:
        """Commit what one interval gathered: its polls and alarm events as signed batches
        (``daq.data/2``, at most ``batch_max_readings`` readings each), one outbox row and one
        sequence number each; alarm state goes to the publisher as retained state."""
        polls: list[list[Reading]] = []
        events, self._carried = self._carried, []
        for item in batch:
            if isinstance(item, AlarmUpdate):
                self.publisher.set_retained(item.topic, item.payload)
                events += [(item.device, e) for e in item.events]
            else:
                polls.append(item)
        limit = self.config.delivery.batch_max_readings
        chunks: list[Chunk] = []
        chunk: list[list[Reading]] = []
        size = 0
        for poll in polls:
            if chunk and size + len(poll) > limit:
                chunks.append(self._chunk(chunk, events))
                chunk, size, events = [], 0, []
            chunk.append(poll)
            size += len(poll)
        if chunk or events:
            chunks.append(self._chunk(chunk, events))
        self.guard.commit(chunks)  # what the outbox refuses is held and tried again
        self._outbox_alarms()

    def _chunk(self, polls: list[list[Reading]],
               events: list[tuple[str, AlarmEvent]]) -> Chunk:
        # kept by the cap: legal readings, and alarm events (a dropped "raised" would leave
        # storage's alarm history without its start)
        legal = bool(events) or any(self.guard.is_legal(r) for p in polls for r in p)
        return Chunk(polls, events, legal)

    def _write(self, chunk: Chunk) -> None:
        def signed(seq: int) -> tuple[str, bytes]:
            body = encode_batch(self.enterprise, self.config.id, self.outbox.epoch, seq,
                                chunk.polls, chunk.events)
            return self._topic, self.signer.sign(body)

        self.outbox.put(signed, legal=chunk.legal, readings=chunk.readings)
        self.acquired += chunk.readings

    def _outbox_alarms(self) -> None:
        """Raise or clear the outbox's alarms on every device: retained state straight to the
        publisher (no outbox needed), the events to storage with the next batch."""
        desired = self.guard.alarms()
        if self.publisher.delete_error is not None and self.guard.unwritable is None:
            desired.append(Alarm(AlarmKind.OUTBOX_UNWRITABLE, self.publisher.delete_error_ns,
                                 f"{self.publisher.delete_error[:160]}; confirmed rows are "
                                 "kept until they can be deleted", Severity.CRITICAL))
        for update in self.alarms.gateway_wide(OUTBOX_KINDS, desired, now_ns()):
            self.publisher.set_retained(update.topic, update.payload)
            self._carried += [(update.device, e) for e in update.events]

    async def _writer(self) -> None:
        """Batch device polls into outbox commits (one transaction per commit interval); at
        least once a second without polls too (held polls are retried, the cap applied)."""
        while True:
            try:
                async with asyncio.timeout(1.0):
                    self._pending.append(await self._queue.get())
            except TimeoutError:
                pass
            await asyncio.sleep(self.commit_interval_s)
            while not self._queue.empty():
                self._pending.append(self._queue.get_nowait())
            batch, self._pending = self._pending, []
            self._commit(batch)
            self.publisher.notify()

    async def run(self) -> None:
        """Run until cancelled. On cancellation: flush what the broker will take, go offline."""
        backlog = self.outbox.count()
        if backlog:
            log.info("outbox holds %d messages from an earlier run; sending them first", backlog)
        self.publisher.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.publisher.run(), name="mqtt-publisher")
                tg.create_task(self._writer(), name="outbox-writer")
                for c in self.coordinators:
                    tg.create_task(c.run(), name=f"poll-{c.config.id}")
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        await asyncio.shield(self._drain_and_close())

    async def _drain_and_close(self) -> None:
        batch, self._pending = self._pending, []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        self._commit(batch)
        if self._carried:  # alarm events of that last commit's own outbox alarms
            self._commit([])
        self.guard.lose_held()  # what the outbox still refuses at a stop: said, counted
        if self.publisher.connected:
            flusher = asyncio.create_task(self.publisher.run(), name="mqtt-final-flush")
            await self.publisher.flush(2.0)
            flusher.cancel()
        self.publisher.stop(self._offline)
        for c in self.coordinators:
            await c.bus.close()
        if self.calibration is not None:
            self.calibration.close()
        self.outbox.close()
