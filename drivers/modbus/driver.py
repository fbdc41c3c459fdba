"""The Modbus TCP driver: a register reader (transport) plus read plans and the codec.

:class:`RegisterReader` is our small interface to "something that reads registers";
:class:`PymodbusTcpReader` implements it on pymodbus's async TCP client and translates every
pymodbus outcome into the errors of :mod:`drivers.errors`. :class:`ModbusDriver` composes a
reader, a unit id and a profile's channels: ``poll()`` runs the read plans in order and
returns one :class:`ChannelResult` per channel, never ``None``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from daq.config.profiles import DataType, ModbusChannel, Profile
from drivers.errors import (
    DecodeError,
    DeviceConnectionError,
    DeviceException,
    DeviceProtocolError,
    DeviceTimeout,
    DriverError,
)
from drivers.modbus.codec import ModbusProtocolError, decode_value, exception_name
from drivers.modbus.plan import ReadPlan, plan_reads
from drivers.poll import Decoded, Outcome, poll
from drivers.result import ChannelResult

__all__ = ["ChannelResult", "ModbusDriver", "PymodbusTcpReader", "RegisterReader"]


@runtime_checkable
class RegisterReader(Protocol):
    """Reads holding (3) or input (4) registers from a unit; raises only ``DriverError``s.

    ``read_registers`` connects first if needed, so a reader recovers from a failure on the
    next call. It returns exactly ``count`` registers or raises.
    """

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def read_registers(
        self, unit: int, function: int, address: int, count: int
    ) -> list[int]: ...


# ---------------------------------------------------------------------------------------------
# pymodbus transport

SERVER_BUSY = 6  # Modbus exception code: retry later


def _quiet_pymodbus() -> None:
    """pymodbus's own log lines off (CRITICAL) unless someone chose a level for them."""
    logger = logging.getLogger("pymodbus")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.CRITICAL)


class PymodbusTcpReader:
    """:class:`RegisterReader` over pymodbus 3.16's ``AsyncModbusTcpClient``.

    pymodbus is told not to retry (``retries=0``) and not to reconnect by itself
    (``reconnect_delay=0``): the gateway owns retry and back-off. After any connection
    failure the client is discarded and a fresh one is made on the next call.

    Every workaround for pymodbus's behaviour lives in this class, and nowhere else:

    * a dropped connection fails the pending request at once (:meth:`_on_connect_change`),
      where pymodbus would let it run into the response timeout;
    * a cancellation pymodbus loses is raised again (:func:`_raise_lost_cancellation`):
      pymodbus awaits its response with ``asyncio.wait_for``, which on Python 3.11 returns
      the response and drops a cancellation that arrives with it (gh-86296), so a stopping
      gateway would otherwise carry on polling;
    * its outcomes (``ModbusIOException`` for silence, exception responses as PDUs, …)
      become :mod:`drivers.errors`;
    * its logging is quieted (:func:`_quiet_pymodbus`): it logs every garbled or unexpected
      frame at ERROR with a hex dump, several lines per request, while the poller says each
      failure once with the device and the reason. A program that sets the ``pymodbus``
      logger's level itself keeps it (``daq -vv`` shows pymodbus's lines).
    """

    def __init__(self, host: str, port: int = 502, timeout_s: float = 1.0, *,
                 retries_on_busy: int = 0, busy_delay_s: float = 0.1,
                 pause_after_connect_s: float = 0.0) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        _quiet_pymodbus()
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.retries_on_busy = retries_on_busy  # exception 6 "server device busy"
        self.busy_delay_s = busy_delay_s
        self.pause_after_connect_s = pause_after_connect_s
        self._client: AsyncModbusTcpClient | None = None
        self._lost = False  # set when the connection dropped while this client was in use

    def __repr__(self) -> str:
        return f"PymodbusTcpReader({self.host!r}, {self.port}, timeout_s={self.timeout_s})"

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and bool(client.connected)

    async def connect(self) -> None:
        if self.connected:
            return
        self._discard()
        # The client must be created inside a running loop (it makes asyncio futures).
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_connect=self._on_connect_change,
        )
        self._client = client
        self._lost = False
        try:
            ok = await client.connect()  # asyncio.wait_for inside: may lose a cancellation
        except (TimeoutError, OSError, ModbusException) as exc:
            self._discard()
            _raise_lost_cancellation()
            raise DeviceConnectionError(
                f"cannot connect to {self.host}:{self.port}: {exc}"
            ) from exc
        _raise_lost_cancellation()
        if not ok or not client.connected:
            self._discard()
            raise DeviceConnectionError(f"cannot connect to {self.host}:{self.port}")
        if self.pause_after_connect_s:
            await asyncio.sleep(self.pause_after_connect_s)  # devices that need a moment

    async def close(self) -> None:
        self._discard()

    def _discard(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _on_connect_change(self, connected: bool) -> None:
        """pymodbus calls this when the transport connects or drops.

        pymodbus 3.16 does not fail a pending request when the connection drops: it lets it
        run into the response timeout. Fail it at once instead, so a reset is reported as
        a connection error, promptly. (``ctx.response_future`` is pymodbus-internal; if it
        moves, the ``_lost`` flag still turns the later timeout into a connection error.)
        """
        if connected:
            return
        self._lost = True
        client = self._client
        future: Any = getattr(getattr(client, "ctx", None), "response_future", None)
        if isinstance(future, asyncio.Future) and not future.done():
            future.set_exception(ConnectionResetError("connection lost"))

    async def read_registers(self, unit: int, function: int, address: int, count: int) -> list[int]:
        attempt = 0
        while True:
            try:
                registers = await self._read_once(unit, function, address, count)
            except DeviceException as exc:
                _raise_lost_cancellation()
                if exc.code != SERVER_BUSY or attempt >= self.retries_on_busy:
                    raise
                attempt += 1
                await asyncio.sleep(self.busy_delay_s)
            except DriverError:
                _raise_lost_cancellation()
                raise
            else:
                _raise_lost_cancellation()
                return registers

    async def _read_once(self, unit: int, function: int, address: int, count: int) -> list[int]:
        if not self.connected:
            await self.connect()
        client = self._client
        assert client is not None
        try:
            if function == 4:
                response = await client.read_input_registers(address, count=count, device_id=unit)
            elif function == 3:
                response = await client.read_holding_registers(
                    address, count=count, device_id=unit
                )
            else:
                raise DeviceProtocolError(f"unsupported read function code {function}")
        except DriverError:
            raise
        except (ConnectionException, OSError) as exc:
            self._discard()
            raise DeviceConnectionError(f"{self.host}:{self.port}: {exc}") from exc
        except ModbusIOException as exc:
            # With retries=0 a missing answer surfaces as ModbusIOException ("No response
            # received ..."); if the connection dropped meanwhile, say so instead.
            if self._lost or not client.connected:
                self._discard()
                raise DeviceConnectionError(
                    f"{self.host}:{self.port}: connection lost ({exc})"
                ) from exc
            raise DeviceTimeout(
                f"{self.host}:{self.port} unit {unit}: no answer to FC{function} "
                f"0x{address:04X}+{count} within {self.timeout_s} s"
            ) from exc
        except TimeoutError as exc:
            raise DeviceTimeout(f"{self.host}:{self.port} unit {unit}: timeout") from exc
        except (ModbusException, ValueError, TypeError, struct.error) as exc:
            raise DeviceProtocolError(f"{self.host}:{self.port}: {exc}") from exc
        return _registers_of(response, function, count)


def _raise_lost_cancellation() -> None:
    """Raise ``CancelledError`` if this task was cancelled but pymodbus returned anyway.

    Python 3.11's ``asyncio.wait_for`` (inside pymodbus's request) returns the response, or
    raises the future's exception, when the cancellation and the response arrive together,
    and the cancellation is lost (gh-86296; fixed in 3.12, where ``wait_for`` is
    ``asyncio.timeout``). ``Task.cancelling()`` still counts it: honour it here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _registers_of(response: Any, function: int, count: int) -> list[int]:
    """Check a pymodbus response against the request; return its registers."""
    if response is None:
        raise DeviceProtocolError("no response object")
    fc = getattr(response, "function_code", None)
    if isinstance(fc, int) and fc & 0x80:
        code = int(getattr(response, "exception_code", 0))
        raise DeviceException(code, function, name=exception_name(code))
    if fc != function:
        raise DeviceProtocolError(f"answer has function code {fc!r}, expected {function}")
    registers = getattr(response, "registers", None)
    if registers is None or len(registers) != count:
        got = "none" if registers is None else len(registers)
        raise DeviceProtocolError(f"expected {count} registers, got {got}")
    return list(registers)


# ---------------------------------------------------------------------------------------------
# Device


# Per plan, per channel: (offset, count, type, order, is_float) -- attribute lookups hoisted
# out of the hot path.
_Slot = tuple[int, int, DataType, Any, bool]
_FLOATS = (DataType.F32, DataType.F64)


class ModbusDriver:
    """A Modbus device: a register reader, a unit id, channels and their read plans.

    ``poll()`` is :func:`drivers.poll.poll` over the plans (a timeout ends the poll; a
    device exception affects only its own request).
    """

    def __init__(
        self,
        reader: RegisterReader,
        unit: int,
        channels: Sequence[ModbusChannel],
        plans: Sequence[ReadPlan] | None = None,
        *,
        max_gap: int = 16,
        max_count: int = 125,
        pause_between_requests_s: float = 0.0,
    ) -> None:
        if not 0 <= unit <= 255:
            raise ValueError(f"unit id must be 0..255, got {unit}")
        if pause_between_requests_s < 0:
            raise ValueError("pause_between_requests_s must be >= 0")
        self.reader = reader
        self.unit = unit
        self.channels = tuple(channels)
        self.plans = tuple(plans) if plans is not None else tuple(
            plan_reads(self.channels, max_gap=max_gap, max_count=max_count)
        )
        self.pause_between_requests_s = pause_between_requests_s
        index = {id(ch): i for i, ch in enumerate(self.channels)}
        planned = [ch for p in self.plans for ch in p.channels]
        if sorted(id(c) for c in planned) != sorted(index):
            raise ValueError("the plans must serve each channel exactly once")
        self._requests = [(n, p.channels) for n, p in enumerate(self.plans)]
        self._order = [index[id(ch)] for ch in planned]  # plan order -> channel order
        self._in_order = self._order == list(range(len(self.channels)))
        self._slots: list[list[_Slot]] = [
            [(off, ch.count, ch.type, ch.order, ch.type in _FLOATS)
             for ch, off in zip(p.channels, p.offsets, strict=True)]
            for p in self.plans
        ]

    @classmethod
    def from_profile(
        cls, reader: RegisterReader, unit: int, profile: Profile, **options: Any
    ) -> ModbusDriver:
        return cls(reader, unit, profile.channels, **options)

    async def poll(self) -> list[ChannelResult]:
        """Read every plan once; one result per channel, in the order channels were given."""
        in_plan_order = await poll(self._requests, self._fetch,
                                   pause_s=self.pause_between_requests_s)
        if self._in_order:
            return in_plan_order
        results: list[ChannelResult | None] = [None] * len(self.channels)
        for i, r in zip(self._order, in_plan_order, strict=True):
            results[i] = r
        return [r for r in results if r is not None]

    async def _fetch(self, n: int) -> list[Outcome]:
        """Plan ``n``'s registers, decoded per channel (unscaled)."""
        plan = self.plans[n]
        registers = await self.reader.read_registers(self.unit, plan.function, plan.address,
                                                     plan.count)
        if len(registers) != plan.count:
            raise DeviceProtocolError(f"expected {plan.count} registers, got {len(registers)}")
        return [_decode(ch, registers[off : off + count], dtype, order, is_float)
                for ch, (off, count, dtype, order, is_float)
                in zip(plan.channels, self._slots[n], strict=True)]

    async def close(self) -> None:
        await self.reader.close()


def _decode(ch: ModbusChannel, regs: list[int], dtype: DataType, order: Any, is_float: bool
            ) -> Outcome:
    try:
        raw = decode_value(regs, dtype, order)
    except ModbusProtocolError as exc:
        return Decoded(None, DecodeError(f"{ch.id}: {exc}"))
    if is_float and not math.isfinite(raw):  # type: ignore[arg-type]
        return Decoded(raw, DecodeError(f"{ch.id}: non-finite value {raw}"))
    return raw
