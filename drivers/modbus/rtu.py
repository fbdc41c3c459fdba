"""Modbus RTU driver: our sans-I/O codec over a serial line, a pty or RTU-over-TCP.

:class:`RtuReader` implements :class:`~drivers.modbus.driver.RegisterReader`, so
:class:`~drivers.modbus.driver.ModbusDriver` runs on it unchanged. One reader is one physical
bus: every unit id on that line shares it (and must share it — give each device of a line
the same reader).

Behaviour
---------
* One transaction in flight per bus (an internal :class:`asyncio.Lock`); before each request
  the line is kept silent for ``min_gap_s`` (default: the line's 3.5-character silence,
  :meth:`SerialSettings.modbus_silence_s`) after the end of the previous frame.
* A background task (named ``rtu-rx <link>``) reads the link all the time and feeds the
  :class:`RtuDecoder`. Frames arriving while no transaction waits (late replies to a request
  that timed out, another master's traffic) are counted in :attr:`RtuReader.stray_frames`
  and dropped; the decoder is renewed before each request and after each timeout, so
  half a frame or garbage never poisons the next reply.
* No valid frame within ``timeout_s`` → :class:`DeviceTimeout` if the line stayed quiet.
  If bytes *were* received but none formed a frame with a valid CRC (corrupted reply, line
  noise, wrong baud rate or parity) → :class:`DeviceProtocolError`, whose message says how
  many bytes were discarded: something is answering, but unreadably, which is a wiring or
  settings fault, not an absent device. Garbage *before* a valid reply is dropped by the
  decoder and the reply is used (counted in :attr:`RtuReader.discarded_bytes`).
* Exception response → :class:`DeviceException`; code 6 (server busy) is retried up to
  ``retries_on_busy`` times, ``busy_delay_s`` apart.
* A frame from another unit or for another function during a transaction (a late reply to a
  request that timed out, cross-talk) is not taken: the transaction waits on for its own
  reply, so a slow neighbour cannot break the next unit's read. A late reply from the *same*
  unit and function would look like the answer (RTU has no transaction id), so after a
  timeout the unit's next request waits until that late reply has come and been dropped,
  or one more timeout has passed. If only such frames come,
  the timeout becomes a :class:`DeviceProtocolError` naming who answered. A reply with the
  wrong number of registers → :class:`DeviceProtocolError`.
* The port cannot be opened, or vanishes (EOF/EIO) → :class:`DeviceConnectionError`; the
  link is dropped and reopened by the next call.
* Unit 0 (broadcast) cannot be read: nobody answers a broadcast → :class:`DeviceProtocolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from drivers.errors import (
    DeviceConnectionError,
    DeviceException,
    DeviceProtocolError,
    DeviceTimeout,
)
from drivers.modbus.codec import (
    MAX_READ_REGISTERS,
    READ_FUNCTIONS,
    ExceptionResponse,
    Frame,
    ReadRequest,
    ReadResponse,
    RtuDecoder,
    encode_rtu,
    exception_name,
)
from drivers.transport import SerialSettings, Streams, TransportSettings, open_link

__all__ = ["SERVER_BUSY", "RtuReader"]

log = logging.getLogger(__name__)

SERVER_BUSY = 6

Opener = Callable[[], Awaitable[Streams]]


class _LinkLost(DeviceConnectionError):
    """Internal: the receive task saw EOF or an error."""


class RtuReader:
    """:class:`RegisterReader` speaking Modbus RTU over a serial port or a TCP converter.

    ``link`` is a :class:`SerialSettings` (a serial port or pty path) or a
    :class:`TcpSettings` (RTU framing over TCP). ``min_gap_s`` defaults to the serial line's
    Modbus silence (for TCP: that of ``TcpSettings.serial`` if given, else 0 — the
    converter times its own line); a smaller value than the line's silence is refused.
    ``opener`` replaces how the link is opened (tests, in-memory loopbacks).
    """

    def __init__(
        self,
        link: TransportSettings,
        *,
        timeout_s: float = 1.0,
        min_gap_s: float | None = None,
        retries_on_busy: int = 0,
        busy_delay_s: float = 0.1,
        pause_after_connect_s: float = 0.0,
        connect_timeout_s: float = 3.0,
        opener: Opener | None = None,
    ) -> None:
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if retries_on_busy < 0 or busy_delay_s < 0 or pause_after_connect_s < 0:
            raise ValueError("retries_on_busy, busy_delay_s, pause_after_connect_s must be >= 0")
        line = link if isinstance(link, SerialSettings) else link.serial
        silence = line.modbus_silence_s() if line is not None else 0.0
        if min_gap_s is None:
            min_gap_s = silence
        elif min_gap_s < silence:
            raise ValueError(f"min_gap_s {min_gap_s} is below the line's silence {silence:.6f} s")
        self.link = link
        self.line = line
        self.timeout_s = timeout_s
        self.min_gap_s = min_gap_s
        self.retries_on_busy = retries_on_busy
        self.busy_delay_s = busy_delay_s
        self.pause_after_connect_s = pause_after_connect_s
        self.connect_timeout_s = connect_timeout_s
        self._opener: Opener = opener if opener is not None else (lambda: open_link(link))
        self._lock = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._rx_task: asyncio.Task[None] | None = None
        self._decoder = RtuDecoder(role="client")
        self._waiter: asyncio.Future[Frame] | None = None
        self._rx_bytes = 0  # bytes received during the current transaction
        self._lost: BaseException | None = None
        self._quiet_until = 0.0  # loop time before which the line must stay silent
        # unit -> (loop time until which a late reply to its timed-out request may still
        # come, set when it has come)
        self._late: dict[int, tuple[float, asyncio.Event]] = {}
        # statistics
        self.transactions = 0
        self.stray_frames = 0
        self._expect: tuple[int, int] | None = None  # (unit, function) awaited
        self._foreign: list[Frame] = []  # frames seen during the transaction that were not ours
        self.discarded_bytes = 0

    @property
    def description(self) -> str:
        if isinstance(self.link, SerialSettings):
            s = self.link
            return f"{s.port}@{s.baudrate}{s.bytesize}{s.parity}{s.stopbits}"
        return f"rtu-tcp://{self.link.host}:{self.link.port}"

    def __repr__(self) -> str:
        return f"RtuReader({self.description}, timeout_s={self.timeout_s})"

    # -- connection -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return (
            self._writer is not None
            and self._lost is None
            and self._rx_task is not None
            and not self._rx_task.done()
        )

    async def connect(self) -> None:
        if self.connected:
            return
        await self._drop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await self._opener()
        except (OSError, TimeoutError) as exc:
            raise DeviceConnectionError(f"cannot open {self.description}: {exc}") from exc
        self._writer = writer
        self._lost = None
        self._decoder = RtuDecoder(role="client")
        self._rx_task = asyncio.create_task(
            self._receive(reader), name=f"rtu-rx {self.description}"
        )
        loop = asyncio.get_running_loop()
        self._quiet_until = loop.time() + self.pause_after_connect_s

    async def close(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        task, self._rx_task = self._rx_task, None
        writer, self._writer = self._writer, None
        if task is not None:
            task.cancel()
            # asyncio.wait, not ``await task``: our own cancellation must not be taken for
            # the receiver's, and nothing of the receiver's is silently dropped
            await asyncio.wait([task])
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.error("%s: the receiver failed", self.description,  # a bug: it catches
                          exc_info=exc)                                # OSError itself
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError as exc:  # reset, broken pipe, a vanished port: it is closed now
                log.debug("%s: closing: %r", self.description, exc)

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        """Feed everything the link delivers to the decoder; hand frames to the waiter."""
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(4096):
                self._rx_bytes += len(data)
                self._quiet_until = loop.time() + self.min_gap_s
                before = self._decoder.discarded
                frames = self._decoder.feed(data)
                self.discarded_bytes += self._decoder.discarded - before
                for frame in frames:
                    waiter = self._waiter
                    if waiter is not None and not waiter.done() and self._matches(frame):
                        waiter.set_result(frame)
                    else:
                        # a late reply to an earlier request, another master, cross-talk:
                        # not ours; the transaction keeps waiting for its own reply
                        self.stray_frames += 1
                        if isinstance(frame, ReadResponse | ExceptionResponse) \
                                and (late := self._late.pop(frame.unit, None)) is not None:
                            late[1].set()  # the late reply has come
                        if waiter is not None:
                            self._foreign.append(frame)
            exc: BaseException = _LinkLost("end of stream (port closed or vanished)")
        except (OSError, ConnectionError) as err:
            exc = _LinkLost(f"{type(err).__name__}: {err}")
        self._lost = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -- transactions -----------------------------------------------------------------------

    async def read_registers(self, unit: int, function: int, address: int, count: int) -> list[int]:
        if function not in READ_FUNCTIONS:
            raise DeviceProtocolError(f"unsupported read function code {function}")
        if not 1 <= unit <= 247:
            raise DeviceProtocolError(f"unit id {unit} cannot be read (1…247; 0 is broadcast)")
        if not 1 <= count <= MAX_READ_REGISTERS or not 0 <= address <= 0xFFFF:
            raise DeviceProtocolError(f"cannot read {count} registers at 0x{address:04X}")
        request = ReadRequest(unit, function, address, count)
        async with self._lock:
            attempt = 0
            while True:
                reply = await self._transact(request)
                if isinstance(reply, ExceptionResponse):
                    if reply.code == SERVER_BUSY and attempt < self.retries_on_busy:
                        attempt += 1
                        await asyncio.sleep(self.busy_delay_s)
                        continue
                    raise DeviceException(reply.code, function, name=exception_name(reply.code))
                return self._registers(request, reply)

    def _registers(self, request: ReadRequest, reply: ReadResponse) -> list[int]:
        if len(reply.registers) != request.count:
            raise DeviceProtocolError(
                f"{self.description} unit {request.unit}: expected {request.count} registers, "
                f"got {len(reply.registers)}"
            )
        return list(reply.registers)

    async def _transact(self, request: ReadRequest) -> ReadResponse | ExceptionResponse:
        """Send one request, wait for one matching reply (the caller holds the lock)."""
        if not self.connected:
            await self.connect()
        writer = self._writer
        assert writer is not None
        loop = asyncio.get_running_loop()
        await self._late_reply_guard(request.unit)
        wait = self._quiet_until - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        frame_bytes = encode_rtu(request)
        self._decoder = RtuDecoder(role="client")  # drop any half frame of earlier traffic
        self._rx_bytes = 0
        waiter: asyncio.Future[Frame] = loop.create_future()
        self._expect = (request.unit, request.function)
        self._foreign = []
        self._waiter = waiter
        where = f"{self.description} unit {request.unit}"
        try:
            writer.write(frame_bytes)
            await writer.drain()
            sent_at = loop.time()
            tx_time = self.line.wire_time_s(len(frame_bytes)) if self.line is not None else 0.0
            self._quiet_until = max(self._quiet_until, sent_at + tx_time + self.min_gap_s)
            async with asyncio.timeout(self.timeout_s + tx_time):
                reply = await waiter
        except TimeoutError as exc:
            received = self._rx_bytes
            self._decoder = RtuDecoder(role="client")
            # its reply may still come: hold the unit's next request until it has, or
            # until one more timeout has passed (a later reply counts as lost)
            self._late[request.unit] = (loop.time() + self.timeout_s, asyncio.Event())
            what = f"FC{request.function} 0x{request.address:04X}+{request.count}"
            if self._foreign:
                seen = ", ".join(sorted({f"unit {f.unit} FC{f.function}"
                                         for f in self._foreign
                                         if isinstance(f, ReadResponse | ExceptionResponse)}))
                raise DeviceProtocolError(
                    f"{where}: no answer to {what} within {self.timeout_s} s; only frames "
                    f"for others were seen: reply from {seen or 'an unknown sender'}"
                ) from exc
            if received:
                raise DeviceProtocolError(
                    f"{where}: no valid frame in answer to {what} within {self.timeout_s} s; "
                    f"{received} bytes received and discarded (bad CRC or garbage)"
                ) from exc
            raise DeviceTimeout(
                f"{where}: no answer to {what} within {self.timeout_s} s"
            ) from exc
        except (_LinkLost, OSError, ConnectionError) as exc:
            await self._drop()
            raise DeviceConnectionError(f"{where}: link lost ({exc})") from exc
        finally:
            self._waiter = None
            self._expect = None
        self.transactions += 1
        return self._check(request, reply, where)

    async def _late_reply_guard(self, unit: int) -> None:
        """Before a request to ``unit``: if its previous request timed out less than a
        timeout ago, wait until that late reply has arrived (and was dropped) or the window
        has passed. RTU replies carry no transaction id, so a late reply arriving while the
        next request to the same unit and function waits would be taken for its answer —
        other registers' values, silently."""
        late = self._late.get(unit)
        if late is None:
            return
        until, arrived = late
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await arrived.wait()
        self._late.pop(unit, None)

    def _matches(self, frame: Frame) -> bool:
        expect = self._expect
        return (expect is not None and isinstance(frame, ReadResponse | ExceptionResponse)
                and frame.unit == expect[0] and frame.function == expect[1])

    @staticmethod
    def _check(request: ReadRequest, reply: Frame, where: str) -> ReadResponse | ExceptionResponse:
        if not isinstance(reply, ReadResponse | ExceptionResponse):
            raise DeviceProtocolError(f"{where}: unexpected frame {reply!r}")
        if reply.unit != request.unit:
            raise DeviceProtocolError(f"{where}: reply from unit {reply.unit}")
        if reply.function != request.function:
            raise DeviceProtocolError(
                f"{where}: reply for FC{reply.function}, expected FC{request.function}"
            )
        return reply

