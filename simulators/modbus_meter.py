"""A Modbus TCP energy meter: the sans-I/O codec in the server role plus a physical model.

:class:`ModbusMeterSimulator` listens on a TCP port (``127.0.0.1`` by default) and answers
read-holding (3) and read-input (4) register requests for the channels of a device profile.
Frames are cut and parsed by :mod:`drivers.modbus.codec` (``TcpDecoder(role="server")``) and
answers built with ``encode_tcp`` — the same codec the drivers use; pymodbus is not involved.

Each request evaluates the model once, at the wall-clock time it is answered
(``time.time_ns()``, clamped to never go backwards), encodes every channel it touches as the
profile says (``raw = (value − offset) / scale``, rounded and clamped for integer types) and
records, per channel fully inside the request, what a client decodes from it: the *truth*
tests compare acquired readings with.

Protocol behaviour (Modbus application protocol v1.1b3, 6.3/6.4 and 7):

* function other than 3 or 4 → exception 1 (illegal function); a 3/4 request of the wrong
  length → exception 3;
* ``count`` of 0 or more than 125 → exception 3 (illegal data value);
* a range past 0xFFFF, or one that touches no channel of that function → exception 2
  (illegal data address); registers inside a request but outside every channel read as 0,
  and a request may cover part of a channel (it gets those registers);
* another unit id → no answer by default (``wrong_unit="silent"``, as an RTU-over-TCP gateway
  whose serial device does not answer: the client times out), or exception 0x0B (gateway
  target device failed to respond) with ``wrong_unit="exception"``;
* a bad MBAP header (protocol id ≠ 0, length outside 2…254) closes the connection: a TCP
  stream cannot resynchronise.

Fault injection: :attr:`ModbusMeterSimulator.faults` (:class:`Faults`), read at every request.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import struct
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from daq.config.profiles import DataType, ModbusChannel, Profile
from daq.model import Value
from drivers.modbus.codec import (
    MAX_READ_REGISTERS,
    READ_FUNCTIONS,
    ExceptionResponse,
    Frame,
    IllegalRequest,
    ModbusProtocolError,
    ReadRequest,
    ReadResponse,
    TcpDecoder,
    decode_value,
    encode_tcp,
    encode_value,
)
from drivers.result import engineering_value
from simulators.meter import MeterModel, ThreePhaseLoad
from simulators.served import Served, hang_up

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
GATEWAY_TARGET_FAILED = 0x0B

DEFAULT_HISTORY = 100_000

_INT_RANGE: dict[DataType, tuple[int, int]] = {
    DataType.U16: (0, 0xFFFF),
    DataType.I16: (-0x8000, 0x7FFF),
    DataType.U32: (0, 0xFFFF_FFFF),
    DataType.I32: (-0x8000_0000, 0x7FFF_FFFF),
    DataType.U64: (0, 0xFFFF_FFFF_FFFF_FFFF),
}
_F32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]


@dataclass(slots=True)
class Faults:
    """Faults to inject; change the fields at any time, they apply from the next request.

    * ``silent``: accept connections and requests, never answer (the client times out);
    * ``exception_code``: answer every request with this Modbus exception code;
    * ``drop_connection``: close the connection that sends the next request, without an
      answer; one-shot — it resets itself to ``False`` once it has dropped a connection;
    * ``delay_s``: wait this long before answering each request (per connection; other
      connections are not held up). The value is sampled after the wait;
    * ``stuck``: answer with the values of the previous request (a frozen meter);
    * ``override``: channel id → engineering value served instead of the model's (e.g. a
      value outside the channel's range);
    * ``garbage``: answer every request with these bytes instead of a frame (a device, or a
      converter in front of it, talking nonsense).
    """

    silent: bool = False
    exception_code: int | None = None
    drop_connection: bool = False
    delay_s: float = 0.0
    stuck: bool = False  # serve the values of the last request again (a frozen meter)
    override: dict[str, float] = field(default_factory=dict)  # e.g. an out-of-range value
    garbage: bytes | None = None  # answered instead of a frame

    def clear(self) -> None:
        self.silent = False
        self.exception_code = None
        self.drop_connection = False
        self.delay_s = 0.0
        self.stuck = False
        self.override = {}


@dataclass(frozen=True, slots=True)
class _Slot:
    """A channel's place in the register map and how its value is encoded."""

    channel: ModbusChannel
    address: int
    end: int  # one past the last register

    def encode(self, value: Value) -> tuple[list[int], Value]:
        """Registers for ``value`` (engineering) and the value a client decodes from them."""
        ch = self.channel
        if ch.type is DataType.STRING:
            registers = encode_value(str(value), ch.type, ch.order, ch.length)
        else:
            raw = (float(value) - ch.offset) / ch.scale
            limits = _INT_RANGE.get(ch.type)
            if limits is not None:
                raw_int = min(limits[1], max(limits[0], round(raw)))
                registers = encode_value(raw_int, ch.type, ch.order)
            else:
                if ch.type is DataType.F32:
                    raw = min(_F32_MAX, max(-_F32_MAX, raw))
                registers = encode_value(raw, ch.type, ch.order)
        decoded = decode_value(registers, ch.type, ch.order)
        return registers, engineering_value(decoded, ch.scale, ch.offset)


class ModbusMeterSimulator(Served):
    """An energy meter on Modbus TCP, serving ``profile``'s channels from a physical model.

    ``model`` defaults to ``ThreePhaseLoad(seed)``. Channels the model does not produce read
    as 0 (numbers) or the profile's model name (strings). ``port=0`` picks a free port;
    :meth:`start` returns the port bound.
    """

    def __init__(
        self,
        profile: Profile,
        unit_id: int = 1,
        seed: int = 0,
        model: MeterModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = DEFAULT_HISTORY,
        wrong_unit: Literal["silent", "exception"] = "silent",
    ) -> None:
        if not 0 <= unit_id <= 255:
            raise ValueError(f"unit id {unit_id} outside 0…255")
        self.profile = profile
        self.unit_id = unit_id
        self.seed = seed
        self.model: MeterModel = model if model is not None else ThreePhaseLoad(seed)
        self.host = host
        self.faults = Faults()
        self.wrong_unit = wrong_unit
        self.requests = 0  # requests answered with registers
        self.exceptions = 0  # requests answered with an exception
        self.connections = 0  # connections accepted, in total
        self._requested_port = port
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_ns = 0
        self._last_values: Mapping[str, float] | None = None
        self._slots: dict[int, list[_Slot]] = {fc: [] for fc in READ_FUNCTIONS}
        for ch in profile.channels:
            self._slots[ch.function].append(_Slot(ch, ch.address, ch.address + ch.count))
        for slots in self._slots.values():  # the profile schema refuses overlaps and scale 0
            slots.sort(key=lambda s: s.address)
        self._history: dict[str, deque[tuple[int, Value]]] = {
            ch.id: deque(maxlen=history) for ch in profile.channels
        }
        self._defaults: dict[str, Value] = {
            ch.id: profile.model if ch.type is DataType.STRING else 0.0 for ch in profile.channels
        }

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    async def start(self) -> int:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = await asyncio.start_server(
            self._handle, self.host, self._requested_port, reuse_address=True
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await hang_up(self._writers, self._tasks)
        await server.wait_closed()


    # -- truth ------------------------------------------------------------------------------

    def served(self, channel_id: str) -> list[tuple[int, Value]]:
        """Everything served for ``channel_id`` still in the history: ``(served_at_ns, value)``."""
        return list(self._channel_history(channel_id))

    def truth(self, channel_id: str, at_ns: int) -> Value:
        """The value served by the latest request answered at or before ``at_ns``.

        Raises :class:`LookupError` if none was, or if it has left the bounded history.
        """
        hist = self._channel_history(channel_id)
        if hist and hist[-1][0] <= at_ns:
            return hist[-1][1]
        i = bisect.bisect_right(hist, at_ns, key=lambda e: e[0])
        if i == 0:
            trimmed = len(hist) == hist.maxlen
            raise LookupError(
                f"nothing served for {channel_id!r} at or before {at_ns}"
                + (" still in the kept history" if trimmed else "")
            )
        return hist[i - 1][1]

    def _channel_history(self, channel_id: str) -> deque[tuple[int, Value]]:
        try:
            return self._history[channel_id]
        except KeyError:
            msg = f"profile {self.profile.id!r} has no channel {channel_id!r}"
            raise LookupError(msg) from None

    # -- serving ----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, ModbusProtocolError):
            pass  # the peer went away, or sent a header a TCP stream cannot recover from
        except asyncio.CancelledError:
            # stop() cancels connection handlers; asyncio's start_server callback would log a
            # cancelled handler task as an error, so end it normally instead
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = TcpDecoder(role="server")
        while data := await reader.read(65536):
            if self.faults.silent:
                continue
            try:
                frames = decoder.feed(data)
            except ModbusProtocolError:
                return  # a bad MBAP header: a TCP stream cannot resynchronise
            for tid, request in frames:
                if self.faults.drop_connection:
                    self.faults.drop_connection = False
                    return
                if self.faults.delay_s > 0:
                    await writer.drain()
                    await asyncio.sleep(self.faults.delay_s)
                    if self.faults.silent:
                        continue
                if self.faults.garbage is not None:
                    writer.write(self.faults.garbage)
                    continue
                if isinstance(request, IllegalRequest):
                    answer = self._reject(request)
                elif isinstance(request, ReadRequest):
                    answer = self.answer(request)
                else:
                    continue  # a response sent to a server: ignore it
                if answer is not None:
                    writer.write(encode_tcp(answer, tid))
            await writer.drain()

    def answer(self, request: ReadRequest) -> Frame | None:
        """The answer to one read request (``None``: no answer), recording what it serves.

        This is the whole device behaviour without the socket; faults other than
        ``exception_code`` are the connection handler's business.
        """
        refusal = self._refusal(request.unit, request.function)
        if refusal is not None:
            return None if refusal == "silence" else refusal
        if not 1 <= request.count <= MAX_READ_REGISTERS:
            return self._exception(request.unit, request.function, ILLEGAL_DATA_VALUE)
        start = request.address
        end = start + request.count
        if end > 0x10000:
            return self._exception(request.unit, request.function, ILLEGAL_DATA_ADDRESS)
        slots = [s for s in self._slots[request.function] if s.address < end and s.end > start]
        if not slots:
            return self._exception(request.unit, request.function, ILLEGAL_DATA_ADDRESS)

        now = time.time_ns()
        if now < self._last_ns:
            now = self._last_ns
        self._last_ns = now
        if self.faults.stuck and self._last_values is not None:
            values: Mapping[str, float] = self._last_values
        else:
            values = self.model.values_at(now)
            if self.faults.override:
                values = {**values, **self.faults.override}
        self._last_values = values
        registers = [0] * request.count
        for slot in slots:
            cid = slot.channel.id
            words, decoded = slot.encode(values.get(cid, self._defaults[cid]))
            lo = max(start, slot.address)
            hi = min(end, slot.end)
            registers[lo - start : hi - start] = words[lo - slot.address : hi - slot.address]
            if lo == slot.address and hi == slot.end:
                self._history[cid].append((now, decoded))
        self.requests += 1
        return ReadResponse(request.unit, request.function, tuple(registers))

    def _refusal(self, unit: int, function: int) -> ExceptionResponse | Literal["silence"] | None:
        """What to answer instead of data because of the unit id or an injected exception.

        ``None``: go on and serve; ``"silence"``: do not answer at all.
        """
        if unit != self.unit_id:
            if self.wrong_unit == "exception":
                return self._exception(unit, function, GATEWAY_TARGET_FAILED)
            return "silence"
        if self.faults.exception_code is not None:
            return self._exception(unit, function, self.faults.exception_code)
        return None

    def _reject(self, bad: IllegalRequest) -> Frame | None:
        refusal = self._refusal(bad.unit, bad.function)
        if refusal is not None:
            return None if refusal == "silence" else refusal
        return self._exception(bad.unit, bad.function, bad.code)

    def _exception(self, unit: int, function: int, code: int) -> ExceptionResponse:
        self.exceptions += 1
        return ExceptionResponse(unit, function, code)
