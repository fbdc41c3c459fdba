"""A simulated DL/T 645-2007 electricity meter: the codec in the meter's role plus
:class:`~simulators.meter.ThreePhaseLoad`.

:meth:`Dlt645MeterSimulator.answer` is the whole device behaviour without a wire: it answers
read-address (to the wildcard address), read-data for the identifiers in
``drivers/dlt645/identifiers.yaml`` (abnormal reply "no such data" for others), follow-up
reads of a single-frame value (abnormal reply), and accepts broadcast time sync silently.
Frames for other addresses get no answer, as on a shared RS-485 line. ``truth(di, at_ns)``
returns exactly the value served. Served over TCP (``transport="tcp"``, an RS-485-to-Ethernet
converter) or a pseudo-terminal (``transport="pty"``: open :attr:`path` like a serial port).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from drivers.dlt645.codec import (
    BROADCAST,
    READ_ADDRESS,
    READ_DATA,
    READ_FOLLOWUP,
    TIME_SYNC,
    WILDCARD,
    DataSpec,
    Dlt645Decoder,
    Frame,
    abnormal_reply_to,
    di_from_wire,
    encode_frame,
    identifiers,
    reply_to,
)
from simulators.meter import MeterModel, ThreePhaseLoad
from simulators.pty import PtyEndpoint
from simulators.served import Served, hang_up

NO_SUCH_DATA = 0x02


def _model_value(di: int, v: Mapping[str, float]) -> float | None:
    """The engineering value of ``di`` in the meter's units (kWh, V, A, kW, 1, Hz)."""
    phase = {1: "l1", 2: "l2", 3: "l3"}
    group, sub = di >> 16, (di >> 8) & 0xFF
    if di == 0x00000000:
        return v["energy_import"] - v["energy_export"]
    if di == 0x00010000:
        return v["energy_import"]
    if di == 0x00020000:
        return v["energy_export"]
    if di == 0x02800002:
        return v["frequency"]
    names: dict[int, Callable[[str], str]] = {
        0x0201: lambda p: f"voltage_{p}",
        0x0202: lambda p: f"current_{p}",
        0x0203: lambda p: f"power_{p}",
        0x0206: lambda p: f"power_factor_{p}",
    }
    if group not in names:
        return None
    if sub == 0:
        key = {0x0203: "power_total", 0x0206: "power_factor"}.get(group)
    else:
        key = names[group](phase[sub]) if sub in phase else None
    if key is None:
        return None
    if key.startswith("power_factor_"):
        key = "power_factor"  # the model has one power factor; phases report the total
    value = v[key]
    return value / 1000 if group == 0x0203 else value  # W → kW


@dataclass
class Dlt645Faults:
    silent: bool = False
    abnormal: int | None = None  # answer every read with this error byte
    corrupt_checksum: bool = False
    garbage_before: bytes = b""
    wakeup: int = 4  # FE bytes before each reply (0–4)


class Dlt645MeterSimulator(Served):
    def __init__(self, address: str, *, seed: int = 0, model: MeterModel | None = None,
                 transport: Literal["tcp", "pty"] = "tcp", host: str = "127.0.0.1",
                 port: int = 0, history: int = 100_000) -> None:
        if len(address) != 12 or not address.isdigit():
            raise ValueError("a meter address is 12 decimal digits")
        self.address = address
        self.model: MeterModel = model or ThreePhaseLoad(seed)
        self.host = host
        self.transport = transport
        self._requested_port = port
        self._line: Dlt645LineSimulator | None = None
        self.faults = Dlt645Faults()
        self.clock_set_to: dt.datetime | None = None
        self.requests = 0
        self._last_ns = 0
        self._history: dict[int, deque[tuple[int, float]]] = {
            di: deque(maxlen=history) for di in identifiers()}

    # -- device behaviour ---------------------------------------------------------------------
    def answer(self, request: Frame) -> Frame | None:
        fn = request.function
        if request.from_meter:
            return None
        if fn == READ_ADDRESS:
            return reply_to(request, bytes.fromhex(self.address)[::-1]) \
                if request.address == WILDCARD else None
        if request.address == BROADCAST:
            if fn == TIME_SYNC and len(request.data) == 6:
                ss, mm, hh, day, month, yy = (int(f"{b:02x}") for b in request.data)
                with contextlib.suppress(ValueError):
                    self.clock_set_to = dt.datetime(2000 + yy, month, day, hh, mm, ss)
            return None  # broadcasts are never answered
        if request.address not in (self.address, WILDCARD):
            return None
        if fn not in (READ_DATA, READ_FOLLOWUP) or len(request.data) < 4:
            return abnormal_reply_to(request, 0x01)
        self.requests += 1
        if self.faults.abnormal is not None:
            return abnormal_reply_to(request, self.faults.abnormal)
        di = di_from_wire(request.data)
        spec = identifiers().get(di)
        if fn == READ_FOLLOWUP or spec is None:
            return abnormal_reply_to(request, NO_SUCH_DATA)
        now = max(time.time_ns(), self._last_ns)
        self._last_ns = now
        value = _model_value(di, self.model.values_at(now))
        if value is None:
            return abnormal_reply_to(request, NO_SUCH_DATA)
        payload = _encode_clamped(spec, value)
        self._history[di].append((now, spec.decode(payload)))
        return reply_to(request, request.data[:4] + payload)

    def truth(self, di: int, at_ns: int) -> float:
        """The value served by the latest read of ``di`` at or before ``at_ns``."""
        hist = self._history[di]
        i = bisect.bisect_right(hist, at_ns, key=lambda e: e[0])
        if i == 0:
            raise LookupError(f"no read of {di:08X} served at or before {at_ns}")
        return hist[i - 1][1]

    def served(self, di: int) -> list[tuple[int, float]]:
        return list(self._history[di])

    # -- serving ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._serving().port

    @property
    def path(self) -> str:
        """The pty a driver opens (``transport="pty"``)."""
        return self._serving().path

    def _serving(self) -> Dlt645LineSimulator:
        if self._line is None:
            raise RuntimeError("simulator not started")
        return self._line

    async def start(self) -> None:
        self._line = Dlt645LineSimulator([self], transport=self.transport, host=self.host,
                                         port=self._requested_port)
        await self._line.start()

    async def stop(self) -> None:
        line, self._line = self._line, None
        if line is not None:
            await line.stop()


    def reply_bytes(self, request: Frame) -> bytes:
        """What goes on the wire in answer to ``request`` (faults applied); b"" for none."""
        if self.faults.silent:
            return b""
        reply = self.answer(request)
        if reply is None:
            return b""
        wire = bytearray(encode_frame(reply, self.faults.wakeup))
        if self.faults.corrupt_checksum:
            wire[-2] ^= 0x5A
        return self.faults.garbage_before + bytes(wire)



class Dlt645LineSimulator(Served):
    """Several DL/T 645 meters on one RS-485 line, served over TCP (a converter) or a pty.

    Every meter sees every frame; those addressed answer (on a real line two answers to a
    wildcard request would collide — here they follow each other)."""

    def __init__(self, meters: list[Dlt645MeterSimulator], *,
                 transport: Literal["tcp", "pty"] = "tcp", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        addresses = [m.address for m in meters]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two meters with one address on a line")
        self.meters = meters
        self.transport = transport
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._pty: PtyEndpoint | None = None
        self._pty_decoder = Dlt645Decoder()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("TCP line not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def path(self) -> str:
        if self._pty is None:
            raise RuntimeError("pty line not started")
        return self._pty.path

    async def start(self) -> None:
        if self.transport == "pty":
            self._pty = PtyEndpoint(self._on_pty_data)
            self._pty.open()
        else:
            self._server = await asyncio.start_server(self._handle, self.host,
                                                      self._requested_port)

    async def stop(self) -> None:
        pty, self._pty = self._pty, None
        if pty is not None:
            pty.close()
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await hang_up((), self._tasks)
        await server.wait_closed()


    def replies(self, request: Frame) -> bytes:
        return b"".join(m.reply_bytes(request) for m in self.meters)

    def _on_pty_data(self, data: bytes) -> None:
        assert self._pty is not None
        for request in self._pty_decoder.feed(data):
            out = self.replies(request)
            if out:
                self._pty.write(out)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        decoder = Dlt645Decoder()
        try:
            while data := await reader.read(4096):
                for request in decoder.feed(data):
                    out = self.replies(request)
                    if out:
                        writer.write(out)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass  # peer gone, or stop(); a cancelled handler must end normally (see modbus)
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()  # closed before the loop is, not by the GC later


def _encode_clamped(spec: DataSpec, value: float) -> bytes:
    """BCD for ``value``, clamped to what the field can show (a meter's display saturates)."""
    top = (8 * 10 ** (2 * spec.length - 1) if spec.signed else 10 ** (2 * spec.length)) - 1
    limit = top / 10**spec.decimals
    return spec.encode(max(-limit if spec.signed else 0.0, min(limit, value)))
