"""Simulated serial text instruments: a SCPI DMM, a PRT readout and an MT-SICS balance.

Each one is the production codec of :mod:`drivers.text` in the server role plus a physical
model with known truth (:class:`InstrumentModel`): a settable true value, the instrument's
error (offset, gain, non-linearity), seeded noise, drift per day and the display resolution.
``truth()`` reports the true value and what the instrument displayed (sent) last.

Each simulator serves over TCP (:meth:`start_tcp`, 127.0.0.1, port 0 = a free port) and/or
a pseudo-terminal (:meth:`start_pty`; drivers open ``slave_path``). Faults are switched on
``sim.faults`` (:class:`TextFaults`) from tests and apply to every request while set.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Protocol

from drivers.text import mtsics, prt, scpi
from drivers.text.codec import LineDecoder, encode_line
from simulators.pty import PtyEndpoint
from simulators.served import hang_up

__all__ = [
    "CVD_A",
    "CVD_B",
    "CVD_C",
    "InstrumentModel",
    "MtSicsBalanceSimulator",
    "PrtReadoutSimulator",
    "ScpiDmmSimulator",
    "TextFaults",
    "Truth",
    "callendar_van_dusen",
]

# IEC 60751 / ITS-90-era industrial Pt100 coefficients
CVD_A = 3.9083e-3
CVD_B = -5.775e-7
CVD_C = -4.183e-12
GARBAGE = b"\x00?#%GARB\xfeAGE"


def callendar_van_dusen(t_c: float, r0: float = 100.0) -> float:
    """Resistance of a platinum resistance thermometer at ``t_c`` °C (C term below 0 °C)."""
    c = CVD_C if t_c < 0 else 0.0
    return r0 * (1 + CVD_A * t_c + CVD_B * t_c**2 + c * (t_c - 100) * t_c**3)


@dataclass
class TextFaults:
    """Switchable faults. Each applies to every request while set.

    ``no_reply``: swallow the request. ``late_reply_s``: answer after that delay.
    ``garbage``: answer a line of binary garbage. ``truncated``: send half the reply and no
    terminator. ``instrument_error``: the instrument reports an error (SCPI: error queue +
    NaN reading; MT-SICS: ``EL``). ``disconnect``: drop the link on the next request (TCP:
    close the socket; pty: hang up and come back as a new pty). ``stuck``: keep sending the
    last displayed value. ``out_of_range``: report overload (SCPI 9.9E37, MT-SICS ``S +``).
    """

    no_reply: bool = False
    late_reply_s: float = 0.0
    garbage: bool = False
    truncated: bool = False
    instrument_error: bool = False
    disconnect: bool = False
    stuck: bool = False
    out_of_range: bool = False

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)


@dataclass(frozen=True, slots=True)
class Truth:
    true_value: float  # the measurand presented to the instrument
    indicated: float | None  # the instrument's indication without noise, last reading
    displayed: float | None  # what it displayed / sent at the last reading
    unit: str


@dataclass
class InstrumentModel:
    """Indication = x·(1+gain) + offset + nonlinearity·x² + drift_per_day·days + noise,
    rounded to ``decimals`` places (the display resolution). Noise is normal, seeded."""

    true_value: float
    unit: str
    offset: float = 0.0
    gain: float = 0.0
    nonlinearity: float = 0.0
    noise: float = 0.0
    drift_per_day: float = 0.0
    decimals: int = 5
    seed: int = 0
    clock: Callable[[], float] = time.monotonic
    last_indicated: float | None = field(default=None, init=False)
    last_displayed: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._t0 = self.clock()

    @property
    def days(self) -> float:
        return (self.clock() - self._t0) / 86400.0

    def indication(self, x: float | None = None) -> float:
        """The noise-free indication for measurand ``x`` (default: the true value)."""
        x = self.true_value if x is None else x
        return (x * (1 + self.gain) + self.offset + self.nonlinearity * x * x
                + self.drift_per_day * self.days)

    def reading(self, x: float | None = None) -> float:
        """One reading: indication plus noise, rounded to the display; remembered."""
        indicated = self.indication(x)
        noisy = indicated + (self._rng.gauss(0.0, self.noise) if self.noise > 0 else 0.0)
        self.last_indicated = indicated
        self.last_displayed = round(noisy, self.decimals)
        return self.last_displayed

    def truth(self) -> Truth:
        return Truth(self.true_value, self.last_indicated, self.last_displayed, self.unit)


# ---------------------------------------------------------------------------------------------
# Serving lines over TCP and a pty


class _Link(Protocol):
    def send(self, data: bytes) -> None: ...

    def hangup(self) -> None: ...


class _TcpLink:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def hangup(self) -> None:
        self.writer.close()


class _PtyLink:
    def __init__(self, sim: _TextSimulator) -> None:
        self.sim = sim

    def send(self, data: bytes) -> None:
        if self.sim._pty is not None:
            self.sim._pty.write(data)  # full or hung up: lost, as on a serial line

    def hangup(self) -> None:
        self.sim._hangup_pty()


class _TextSimulator:
    """Common serving machinery; subclasses implement :meth:`respond`."""

    terminator: bytes = b"\n"

    def __init__(self) -> None:
        self.faults = TextFaults()
        self.requests = 0
        self.last_command: str | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pty: PtyEndpoint | None = None
        self.slave_path: str | None = None
        self._pty_lines: asyncio.Queue[str] = asyncio.Queue()
        self._pty_decoder = LineDecoder(self.terminator)
        self._pty_worker: asyncio.Task[None] | None = None
        self.address: tuple[str, int] | None = None

    async def respond(self, command: str) -> str | None:
        raise NotImplementedError

    # -- TCP --
    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._handle_tcp, host, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        return self.address

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                          ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        link = _TcpLink(writer)
        decoder = LineDecoder(self.terminator)
        try:
            while not writer.is_closing():
                data = await reader.read(4096)
                if not data:
                    break
                for line in decoder.feed(data):
                    await self._serve_line(line, link)
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    # -- pty --
    def start_pty(self) -> str:
        """Open a pseudo-terminal (raw mode) and serve on its master; return the slave path."""
        self._pty_decoder.reset()
        self._pty = PtyEndpoint(self._on_pty_data)
        self.slave_path = self._pty.open()
        if self._pty_worker is None:
            self._pty_worker = asyncio.create_task(self._serve_pty(), name="pty-simulator")
        return self.slave_path

    def _on_pty_data(self, data: bytes) -> None:
        for line in self._pty_decoder.feed(data):
            self._pty_lines.put_nowait(line)

    async def _serve_pty(self) -> None:
        link = _PtyLink(self)
        while True:
            line = await self._pty_lines.get()
            await self._serve_line(line, link)

    def _close_pty_fds(self) -> None:
        pty, self._pty = self._pty, None
        if pty is not None:
            pty.close()

    def _hangup_pty(self) -> None:
        """A cable pull: the old pty goes away, a new one (a new path) takes its place."""
        self._close_pty_fds()
        while not self._pty_lines.empty():
            self._pty_lines.get_nowait()
        self.start_pty()

    # -- common --
    async def _serve_line(self, line: str, link: _Link) -> None:
        command = line.strip()
        if not command:
            return
        self.requests += 1
        self.last_command = command
        f = self.faults
        if f.disconnect:
            link.hangup()
            return
        if f.no_reply:
            return
        reply = await self.respond(command)
        if reply is None:
            return
        data = encode_line(reply, self.terminator)
        if f.garbage:
            data = GARBAGE + self.terminator
        elif f.truncated:
            data = data[: max(1, (len(data) - len(self.terminator)) // 2)]
        if f.late_reply_s > 0:
            await asyncio.sleep(f.late_reply_s)
        link.send(data)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await hang_up(self._writers, self._tasks)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._pty_worker is not None:
            self._pty_worker.cancel()
            await asyncio.gather(self._pty_worker, return_exceptions=True)
            self._pty_worker = None
        self._close_pty_fds()

    async def __aenter__(self) -> _TextSimulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ---------------------------------------------------------------------------------------------
# SCPI instruments


class _ScpiSimulator(_TextSimulator):
    terminator = b"\n"

    def __init__(self, identity: scpi.Identity, model: InstrumentModel) -> None:
        super().__init__()
        self.identity = identity
        self.model = model
        self.errors: list[tuple[int, str]] = []  # the SCPI error queue, oldest first

    def truth(self) -> Truth:
        return self.model.truth()

    def push_error(self, code: int, message: str) -> None:
        self.errors.append((code, message))

    def _pop_error(self) -> str:
        code, message = self.errors.pop(0) if self.errors else (0, "No error")
        return scpi.format_error(code, message)

    def _measurement(self, limit: float | None = None) -> str:
        """A reading as sent, honouring the stuck / out-of-range / instrument-error faults."""
        f = self.faults
        if f.instrument_error:
            self.push_error(-230, "Data corrupt or stale")
            return scpi.format_reading(scpi.NOT_A_NUMBER)
        if f.out_of_range:
            return scpi.format_reading(scpi.OVERLOAD)
        if f.stuck and self.model.last_displayed is not None:
            return scpi.format_reading(self.model.last_displayed)
        value = self.model.reading()
        if limit is not None and abs(value) > limit:
            return scpi.format_reading(math.copysign(scpi.OVERLOAD, value))
        text = scpi.format_reading(value)
        self.model.last_displayed = float(text)  # exactly what the wire carries
        return text

    async def respond(self, command: str) -> str | None:
        cmd = command.upper()
        if cmd == scpi.IDN:
            return scpi.format_idn(self.identity)
        if cmd == scpi.SYST_ERR:
            return self._pop_error()
        if cmd == "*CLS":
            self.errors.clear()
            return None
        return await self.respond_scpi(cmd)

    async def respond_scpi(self, cmd: str) -> str | None:
        raise NotImplementedError

    def _undefined(self) -> None:
        self.push_error(-113, "Undefined header")


class ScpiDmmSimulator(_ScpiSimulator):
    """A SCPI DMM (DC volts and resistance). Over 120 % of a fixed range reads 9.9E37."""

    OVERRANGE = 1.2

    def __init__(self, model: InstrumentModel | None = None,
                 identity: scpi.Identity | None = None) -> None:
        super().__init__(identity or scpi.Identity("DAQSIM", "DMM6500S", "SN000123", "1.0.0"),
                         model or InstrumentModel(10.0, "V", decimals=5))
        self.function = scpi.DmmFunction.VOLT_DC
        self.range: float | None = None  # None = AUTO

    def _limit(self) -> float | None:
        return None if self.range is None else self.range * self.OVERRANGE

    def _configure(self, text: str) -> bool:
        head, _, arg = text.partition(" ")
        try:
            function = scpi.DmmFunction(head)
        except ValueError:
            return False
        arg = arg.strip() or "AUTO"
        if self.faults.instrument_error:
            self.push_error(-222, "Data out of range")
            return True
        if arg in ("AUTO", "DEF"):
            rng = None
        else:
            try:
                rng = float(arg)
            except ValueError:
                self.push_error(-224, "Illegal parameter value")
                return True
            if not rng > 0:
                self.push_error(-222, "Data out of range")
                return True
        self.function, self.range = function, rng
        return True

    async def respond_scpi(self, cmd: str) -> str | None:
        if cmd == scpi.RST:
            self.function, self.range = scpi.DmmFunction.VOLT_DC, None
            return None
        if cmd.startswith("CONF:"):
            if not self._configure(cmd[5:]):
                self._undefined()
            return None
        if cmd in (scpi.READ, "FETC?"):
            return self._measurement(self._limit())
        if cmd.startswith("MEAS:") and cmd.endswith("?"):
            try:
                self.function = scpi.DmmFunction(cmd[5:-1])
            except ValueError:
                self._undefined()
                return None
            self.range = None
            return self._measurement()
        self._undefined()
        return None


class PrtReadoutSimulator(_ScpiSimulator):
    """A PRT readout with a Pt100 (Callendar–Van Dusen) at a settable true temperature."""

    def __init__(self, temperature_c: float = 0.0, *, r0: float = 100.0,
                 model: InstrumentModel | None = None,
                 identity: scpi.Identity | None = None) -> None:
        self.r0 = r0
        self.temperature_c = temperature_c
        super().__init__(identity or scpi.Identity("DAQSIM", "PRT-READOUT", "SN000456", "2.1"),
                         model or InstrumentModel(callendar_van_dusen(temperature_c, r0), "Ω",
                                                  decimals=4))
        self.set_temperature(temperature_c)

    def set_temperature(self, t_c: float) -> None:
        self.temperature_c = t_c
        self.model.true_value = callendar_van_dusen(t_c, self.r0)

    async def respond_scpi(self, cmd: str) -> str | None:
        if cmd == prt.MEASURE_RESISTANCE:
            return self._measurement()
        if cmd == prt.FETCH:
            last = self.model.last_displayed
            return self._measurement() if last is None else prt.format_resistance(last)
        self._undefined()
        return None


# ---------------------------------------------------------------------------------------------
# MT-SICS balance


class MtSicsBalanceSimulator(_TextSimulator):
    """An MT-SICS balance: a settable load that settles over ``settling_s`` (``S D`` until
    then), ``S +`` above ``capacity``, ``S -`` below ``min_load``. ``S`` waits for
    stability up to ``stability_timeout_s``, then answers ``S I``."""

    terminator = mtsics.TERMINATOR

    def __init__(self, model: InstrumentModel | None = None, *, capacity: float = 220.0,
                 min_load: float = -1.0, settling_s: float = 0.2,
                 stability_timeout_s: float = 1.0) -> None:
        super().__init__()
        self.model = model or InstrumentModel(0.0, "g", decimals=2)
        self.capacity = capacity
        self.min_load = min_load
        self.settling_s = settling_s
        self.stability_timeout_s = stability_timeout_s
        self._previous = self.model.true_value
        self._changed_at = self.model.clock() - settling_s
        self.last_stable: bool | None = None

    def set_load(self, grams: float) -> None:
        self._previous = self._present_load()
        self.model.true_value = grams
        self._changed_at = self.model.clock()

    def truth(self) -> Truth:
        return self.model.truth()

    def _elapsed(self) -> float:
        return self.model.clock() - self._changed_at

    @property
    def settled(self) -> bool:
        return self._elapsed() >= self.settling_s

    def _present_load(self) -> float:
        """What the load cell feels: the new load approached linearly over settling_s."""
        if self.settled:
            return self.model.true_value
        frac = self._elapsed() / self.settling_s
        return self._previous + (self.model.true_value - self._previous) * frac

    def _weight(self) -> str:
        f = self.faults
        if f.out_of_range or self.model.true_value > self.capacity:
            return "S +"
        if self.model.true_value < self.min_load:
            return "S -"
        stable = self.settled
        if f.stuck and self.model.last_displayed is not None:
            value = self.model.last_displayed
        else:
            value = self.model.reading(self._present_load())
        self.last_stable = stable
        return mtsics.format_weight(value, self.model.unit, stable, self.model.decimals)

    async def respond(self, command: str) -> str | None:
        if self.faults.instrument_error:
            return "EL"
        if command == mtsics.WEIGHT_IMMEDIATELY:
            return self._weight()
        if command == mtsics.STABLE_WEIGHT:
            wait = self.settling_s - self._elapsed()
            if wait > self.stability_timeout_s:
                await asyncio.sleep(self.stability_timeout_s)
                return "S I"
            if wait > 0:
                await asyncio.sleep(wait)
            return self._weight()
        return "ES"
