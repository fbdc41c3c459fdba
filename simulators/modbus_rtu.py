"""A simulated RS-485 Modbus RTU line with several meters, over a pty or RTU-over-TCP.

:class:`RtuBusSimulator` puts :class:`~simulators.modbus_meter.ModbusMeterSimulator` s (their
``answer(request)`` is the device logic without a socket) on one line, keyed by unit id.
Frames are cut by ``RtuDecoder(role="server")`` and answers built with ``encode_rtu`` — the
codec the drivers use. A request for a unit id not on the line, and a broadcast (unit 0),
get silence, as on a real bus.

Served over a pseudo-terminal (``transport="pty"``: the driver opens :attr:`path`, e.g.
``/dev/pts/7``) or over TCP with RTU framing (``transport="tcp"``, ``127.0.0.1``, port
:attr:`port`, like a transparent serial-to-Ethernet converter). Requests are answered one
at a time per link, as a half-duplex line would.

``wire_baud`` (optional, with ``wire_settings`` for bits per character) delays each reply by
the true wire time at that baud rate — (request + reply bytes) × character time — so bus
utilisation can be benchmarked on a pty, which has no baud rate of its own.

Faults: each meter's :class:`~simulators.modbus_meter.Faults` (``silent``,
``exception_code``, ``delay_s``; ``drop_connection`` closes a TCP link) and the line's
:class:`BusFaults` (corrupted CRC, garbage before a reply, truncated reply, line silent).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from drivers.modbus.codec import (
    ExceptionResponse,
    Frame,
    IllegalRequest,
    ReadRequest,
    RtuDecoder,
    encode_rtu,
)
from drivers.transport import SerialSettings
from simulators.modbus_meter import ModbusMeterSimulator
from simulators.pty import PtyEndpoint
from simulators.served import Served, hang_up

__all__ = ["BusFaults", "RtuBusSimulator"]

HOST = "127.0.0.1"


@dataclass(slots=True)
class BusFaults:
    """Line faults; change them at any time, they apply from the next reply.

    * ``corrupt_crc``: flip the CRC of this many next replies (counts down to 0);
    * ``garbage``: bytes sent before each reply (``b""``: none);
    * ``truncate``: cut this many bytes off the end of the next reply (one-shot, resets to 0);
    * ``silent``: no unit answers.
    """

    corrupt_crc: int = 0
    garbage: bytes = b""
    truncate: int = 0
    silent: bool = False

    def clear(self) -> None:
        self.corrupt_crc = 0
        self.garbage = b""
        self.truncate = 0
        self.silent = False


Send = Callable[[bytes], None]


class RtuBusSimulator(Served):
    """Several meters on one simulated Modbus RTU line; an async context manager."""

    def __init__(
        self,
        meters: Mapping[int, ModbusMeterSimulator] | Iterable[ModbusMeterSimulator],
        *,
        transport: Literal["pty", "tcp"] = "pty",
        port: int = 0,
        wire_baud: int | None = None,
        wire_settings: SerialSettings | None = None,
    ) -> None:
        if isinstance(meters, Mapping):
            units = dict(meters)
            for unit, meter in units.items():
                if meter.unit_id != unit:
                    raise ValueError(f"meter keyed {unit} has unit id {meter.unit_id}")
        else:
            units = {}
            for meter in meters:
                if meter.unit_id in units:
                    raise ValueError(f"two meters with unit id {meter.unit_id}")
                units[meter.unit_id] = meter
        if 0 in units:
            raise ValueError("unit id 0 is broadcast; no meter can have it")
        self.meters: dict[int, ModbusMeterSimulator] = units
        self.transport = transport
        self.faults = BusFaults()
        self.line: SerialSettings | None = None
        if wire_baud is not None or wire_settings is not None:
            base = wire_settings or SerialSettings("(simulated)")
            self.line = SerialSettings(
                base.port, wire_baud or base.baudrate, base.bytesize, base.parity, base.stopbits
            )
        self.requests = 0  # requests decoded (any unit)
        self.replies = 0  # replies sent
        self._requested_port = port
        self._port: int | None = None
        self._path: str | None = None
        self._pty: PtyEndpoint | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The pty slave path a driver opens (``transport="pty"``)."""
        if self._path is None:
            raise RuntimeError("pty simulator not started")
        return self._path

    @property
    def port(self) -> int:
        """The TCP port (``transport="tcp"``)."""
        if self._port is None:
            raise RuntimeError("TCP simulator not started")
        return self._port

    async def start(self) -> None:
        if self._pty is not None or self._server is not None:
            raise RuntimeError("simulator already started")
        if self.transport == "tcp":
            self._server = await asyncio.start_server(
                self._handle_tcp, HOST, self._requested_port, reuse_address=True
            )
            self._port = int(self._server.sockets[0].getsockname()[1])
            return
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._pty = PtyEndpoint(queue.put_nowait)
        self._path = self._pty.open()
        self._spawn(self._serve(queue.get, self._pty.write), "rtu-sim pty")

    async def stop(self) -> None:
        pty, self._pty = self._pty, None
        server, self._server = self._server, None
        if pty is not None:
            pty.close()
        if server is not None:
            server.close()
        await hang_up(self._writers, self._tasks)
        if server is not None:
            await server.wait_closed()
        self._path = None
        self._port = None


    def _spawn(self, coro: Coroutine[None, None, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- serving ----------------------------------------------------------------------------

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)

        async def receive() -> bytes:
            data = await reader.read(4096)
            if not data:
                raise ConnectionResetError("peer closed")
            return data

        try:
            await self._serve(receive, writer.write)
        except (ConnectionError, _Drop, asyncio.CancelledError):
            pass  # peer gone, fault injected, or stop(): end the handler normally
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, receive: Callable[[], Awaitable[bytes]], send: Send) -> None:
        decoder = RtuDecoder(role="server")
        while True:
            data = await receive()
            for request in decoder.feed(data):
                await self._answer(request, send)

    async def _answer(self, request: Frame, send: Send) -> None:
        if not isinstance(request, ReadRequest | IllegalRequest):
            return
        self.requests += 1
        meter = self.meters.get(request.unit)
        if meter is None or self.faults.silent:
            return  # broadcast, or nobody with that unit id on the line
        faults = meter.faults
        if faults.drop_connection and self.transport == "tcp":
            faults.drop_connection = False
            raise _Drop
        if faults.delay_s > 0:
            await asyncio.sleep(faults.delay_s)
        if faults.silent:
            return
        reply: Frame | None
        if isinstance(request, IllegalRequest):
            code = faults.exception_code if faults.exception_code is not None else request.code
            reply = ExceptionResponse(request.unit, request.function, code)
        else:
            reply = meter.answer(request)
        if reply is None:
            return
        frame = encode_rtu(reply)
        if self.line is not None:
            await asyncio.sleep(self.line.wire_time_s(len(encode_rtu(request)) + len(frame)))
        frame = self._damage(frame)
        self.replies += 1
        send(frame)

    def _damage(self, frame: bytes) -> bytes:
        f = self.faults
        if f.corrupt_crc > 0:
            f.corrupt_crc -= 1
            frame = frame[:-2] + bytes((frame[-2] ^ 0xFF, frame[-1] ^ 0x5A))
        if f.truncate > 0:
            frame = frame[: max(0, len(frame) - f.truncate)]
            f.truncate = 0
        return f.garbage + frame


class _Drop(Exception):
    """Internal: close this TCP link now (``Faults.drop_connection``)."""
