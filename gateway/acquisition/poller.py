"""Polling: one coordinator per device (through its driver), one lock per bus,
wall-clock-aligned ticks.

A device polled every second is polled at :00.000, :01.000 … (not "one second after the
last poll finished"), so readings of different devices line up. A poll that overruns its
tick skips to the next one; it never bursts to catch up. A device that fails
``failures_before_backoff`` polls in a row is degraded: polled every 2, 4, 8 … ticks up to
``max_backoff_s``, and recovers by itself. The log says so once on failure and once on
recovery. Other devices are never held up by it beyond its own timeout on a shared bus.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from daq.config import (
    AnyBus,
    AnyDevice,
    Dlt645TcpBus,
    InstrumentBus,
    LoadedConfig,
    ModbusRtuBus,
    ModbusRtuTcpBus,
    ModbusTcpBus,
    SerialLine,
)
from daq.config import Gateway as GatewayConfig
from daq.config.profiles import Dlt645Profile, InstrumentProfile
from daq.model import DeviceMeta, Quality, Reading, Reason, join_reasons
from drivers.dlt645.driver import Dlt645Driver
from drivers.dlt645.link import Dlt645Link
from drivers.errors import InternalError
from drivers.modbus.driver import ModbusDriver, PymodbusTcpReader, RegisterReader
from drivers.modbus.plan import plan_device
from drivers.modbus.rtu import RtuReader
from drivers.result import ChannelResult
from drivers.text.profile_driver import TextDriver
from drivers.transport import (
    SerialSettings,
    Streams,
    TcpSettings,
    TransportSettings,
    open_serial,
    open_tcp,
)

log = logging.getLogger(__name__)

ReadingSink = Callable[[list[Reading]], Awaitable[None]]


def next_tick_ns(now_ns: int, interval_ns: int, skip: int = 0) -> int:
    """The first multiple of ``interval_ns`` strictly after ``now_ns``, plus ``skip`` ticks."""
    return (now_ns // interval_ns + 1 + skip) * interval_ns


@dataclass
class DeviceState:
    """What the gateway knows of a device's health (for logs, status and the live view)."""

    consecutive_failures: int = 0
    degraded: bool = False
    last_error: str | None = None
    last_reason: str | None = None  # the Reason code of last_error
    polls: int = 0
    failures: int = 0
    missed_ticks: int = 0  # due ticks not polled because a poll overran its interval


class Driver(Protocol):
    """What a coordinator polls a device through: a ``ModbusDriver``, ``Dlt645Driver`` or
    ``TextDriver`` (each runs its requests through ``drivers.poll.poll``)."""

    async def poll(self) -> list[ChannelResult]: ...


@dataclass
class BusHandle:
    """One physical bus or connection: devices on it take turns (one lock)."""

    config: AnyBus
    close: Callable[[], Awaitable[None]]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class DeviceCoordinator:
    def __init__(
        self,
        loaded: LoadedConfig,
        gateway: GatewayConfig,
        bus: BusHandle,
        config: AnyDevice,
        driver: Driver,
        sink: ReadingSink,
    ) -> None:
        self.enterprise = loaded.config.enterprise.id
        self.gateway = gateway.id
        self.bus = bus
        self.config = config
        self.profile = loaded.profiles[config.profile]
        self.driver = driver
        self.sink = sink
        self.state = DeviceState()
        self._last_values: tuple[object, ...] | None = None
        self._same_polls = 0
        self._internal_error = False  # the last poll raised something not a DriverError

    @property
    def meta(self) -> DeviceMeta:
        instruments = self.config.instruments
        return DeviceMeta(
            enterprise=self.enterprise,
            gateway=self.gateway,
            device=self.config.id,
            profile=self.profile.id,
            maker=self.profile.maker,
            model=self.profile.model,
            interval_ms=self.config.interval_ms,
            channels=tuple(dataclasses.replace(ch.meta(), instrument=instruments.get(ch.id))
                           for ch in self.profile.channels),
            instrument=self.config.instrument,
        )

    def _stuck(self, results: list[ChannelResult]) -> bool:
        """True when every value has been identical for ``stuck_after`` polls in a row."""
        if self.config.stuck_after is None or any(r.error for r in results):
            self._last_values, self._same_polls = None, 0
            return False
        values = tuple(r.value for r in results)
        self._same_polls = self._same_polls + 1 if values == self._last_values else 1
        self._last_values = values
        return self._same_polls >= self.config.stuck_after

    def to_readings(self, results: list[ChannelResult]) -> list[Reading]:
        out = []
        stuck = self._stuck(results)
        for r in results:
            ch = r.channel
            uncertain = Reason.STUCK if stuck else r.uncertain
            if (uncertain is None and ch.range is not None and isinstance(r.value, int | float)
                    and not ch.range[0] <= r.value <= ch.range[1]):
                uncertain = Reason.OUT_OF_RANGE  # kept and published, but flagged
            if r.error is None and uncertain is not None:
                out.append(Reading(r.ts_ns, self.enterprise, self.gateway, self.config.id,
                                   ch.id, ch.quantity, ch.unit, r.value, r.raw,
                                   Quality.UNCERTAIN, join_reasons([uncertain])))
            elif r.error is None:
                out.append(Reading(r.ts_ns, self.enterprise, self.gateway, self.config.id,
                                   ch.id, ch.quantity, ch.unit, r.value, r.raw))
            else:
                out.append(Reading(r.ts_ns, self.enterprise, self.gateway, self.config.id,
                                   ch.id, ch.quantity, ch.unit, None, None, Quality.BAD,
                                   join_reasons([r.error.reason])))
        return out

    async def poll_once(self) -> list[Reading]:
        async with self.bus.lock:
            try:
                results = await self.driver.poll()
            except Exception as exc:
                # The supervised boundary: a bug must not stop this device, let alone the
                # others. Its readings are bad with Reason.INTERNAL; its traceback is logged
                # once when it starts failing (then at debug), its end once.
                if self._internal_error:
                    log.debug("%s: unexpected error while polling", self.config.id,
                              exc_info=True)
                else:
                    log.exception("%s: unexpected error while polling", self.config.id)
                self._internal_error = True
                err = InternalError(f"{type(exc).__name__}: {exc}")
                now = time.time_ns()
                results = [ChannelResult(ch, now, None, None, err)
                           for ch in self.profile.channels]
            else:
                if self._internal_error:
                    log.warning("%s: polled without an unexpected error again",
                                self.config.id)
                self._internal_error = False
        readings = self.to_readings(results)
        self._account(results)
        return readings

    def _account(self, results: list[ChannelResult]) -> None:
        st = self.state
        st.polls += 1
        errors = [r.error for r in results if r.error is not None]
        if errors and len(errors) == len(results):
            st.failures += 1
            st.consecutive_failures += 1
            st.last_error = str(errors[0])
            st.last_reason = str(errors[0].reason)
            if st.consecutive_failures == 1:
                log.warning("%s: no reading (%s)", self.config.id, errors[0])
            if st.consecutive_failures == self.config.failures_before_backoff:
                st.degraded = True
                log.warning("%s: degraded after %d failed polls; backing off up to %.0f s",
                            self.config.id, st.consecutive_failures, self.config.max_backoff_s)
        else:
            if st.consecutive_failures:
                log.warning("%s: recovered after %d failed polls", self.config.id,
                            st.consecutive_failures)
            st.consecutive_failures = 0
            st.degraded = False
            st.last_error = None
            st.last_reason = None

    def backoff_ticks(self) -> int:
        """Ticks to skip before the next poll (0 while healthy)."""
        st = self.state
        over = st.consecutive_failures - self.config.failures_before_backoff
        if over < 0:
            return 0
        max_ticks = max(0, int(self.config.max_backoff_s * 1000 / self.config.interval_ms) - 1)
        ticks: int = min(2 ** min(over + 1, 30) - 1, max_ticks)
        return ticks

    async def run(self) -> None:
        interval_ns = self.config.interval_ms * 1_000_000
        target = next_tick_ns(time.time_ns(), interval_ns)
        while True:
            delay = (target - time.time_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            readings = await self.poll_once()
            await self.sink(readings)
            # never the same tick twice, even if the sleep woke a little early
            backoff = self.backoff_ticks()
            following = next_tick_ns(max(time.time_ns(), target), interval_ns, backoff)
            # ticks skipped because the poll (or the queue) overran, not by back-off
            self.state.missed_ticks += max(0, (following - target) // interval_ns - 1 - backoff)
            target = following


def build_coordinators(
    loaded: LoadedConfig, gateway: GatewayConfig, sink: ReadingSink
) -> list[DeviceCoordinator]:
    """One coordinator per device; devices of one bus share its connection and lock."""
    coordinators = []
    for bus_cfg in gateway.buses:
        if isinstance(bus_cfg, ModbusTcpBus | ModbusRtuBus | ModbusRtuTcpBus):
            reader = _register_reader(bus_cfg)
            handle = BusHandle(bus_cfg, reader.close)
            for dev in bus_cfg.devices:
                profile = loaded.modbus_profile(dev.profile)
                plans = plan_device(profile.channels, dev.max_gap, dev.max_registers,
                                    dev.one_request_per_channel)
                driver = ModbusDriver(reader, dev.unit_id, profile.channels, plans,
                                      pause_between_requests_s=dev.pause_between_requests_ms
                                      / 1000)
                coordinators.append(
                    DeviceCoordinator(loaded, gateway, handle, dev, driver, sink))
        elif isinstance(bus_cfg, InstrumentBus):
            (inst,) = bus_cfg.devices
            profile_i = loaded.profiles[inst.profile]
            assert isinstance(profile_i, InstrumentProfile)
            if bus_cfg.serial is not None:
                text_opener = _serial_opener(bus_cfg.serial)  # with the line's parity, stop bits
            else:
                assert bus_cfg.host is not None
                assert bus_cfg.port is not None
                text_opener = _tcp_opener(bus_cfg.host, bus_cfg.port)
            text_driver = TextDriver(profile_i, text_opener, bus_cfg.timeout_ms / 1000)
            handle = BusHandle(bus_cfg, text_driver.close)
            coordinators.append(
                DeviceCoordinator(loaded, gateway, handle, inst, text_driver, sink))
        else:
            opener = (_tcp_opener(bus_cfg.host, bus_cfg.port)
                      if isinstance(bus_cfg, Dlt645TcpBus) else _serial_opener(bus_cfg.serial))
            link = Dlt645Link(opener,
                              timeout_s=bus_cfg.timeout_ms / 1000,
                              wakeup=bus_cfg.wakeup_bytes,
                              min_gap_s=bus_cfg.min_gap_ms / 1000)
            handle = BusHandle(bus_cfg, link.close)
            for meter in bus_cfg.devices:
                profile_ = loaded.profiles[meter.profile]
                assert isinstance(profile_, Dlt645Profile)
                coordinators.append(DeviceCoordinator(
                    loaded, gateway, handle, meter,
                    Dlt645Driver(link, meter.address, profile_.channels), sink))
    return coordinators


def _tcp_opener(host: str, port: int) -> Callable[[], Awaitable[Streams]]:
    async def open_() -> Streams:
        return await open_tcp(host, port)

    return open_


def _serial(line: SerialLine) -> SerialSettings:
    return SerialSettings(line.port, line.baudrate, line.bytesize, line.parity, line.stopbits)


def _serial_opener(line: SerialLine) -> Callable[[], Awaitable[Streams]]:
    settings = _serial(line)

    async def open_() -> Streams:
        return await open_serial(settings)

    return open_


def _register_reader(bus: ModbusTcpBus | ModbusRtuBus | ModbusRtuTcpBus) -> RegisterReader:
    if isinstance(bus, ModbusTcpBus):
        return PymodbusTcpReader(bus.host, bus.port, bus.timeout_ms / 1000,
                                 retries_on_busy=bus.retries_on_busy,
                                 pause_after_connect_s=bus.pause_after_connect_ms / 1000)
    link: TransportSettings = (
        _serial(bus.serial) if isinstance(bus, ModbusRtuBus)
        else TcpSettings(bus.host, bus.port, _serial(bus.serial) if bus.serial else None))
    return RtuReader(link, timeout_s=bus.timeout_ms / 1000,
                     min_gap_s=None if bus.min_gap_ms is None else bus.min_gap_ms / 1000,
                     retries_on_busy=bus.retries_on_busy,
                     pause_after_connect_s=bus.pause_after_connect_ms / 1000)
