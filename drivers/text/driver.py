"""Async drivers for serial text instruments: a line codec plus an injected stream opener.

A driver is composition, not inheritance: :class:`TextLink` owns an *opener* — any async
callable returning an ``(asyncio.StreamReader, asyncio.StreamWriter)`` pair — a
:class:`~drivers.text.codec.LineDecoder` and one :class:`asyncio.Lock`, so one request is on
the wire at a time. The same driver thus runs over TCP (:func:`tcp_opener`), a serial port
or pseudo-terminal (:func:`tty_opener`), or anything else the caller supplies.

Error contract: every failure is a :class:`drivers.errors.DriverError`:

* no complete reply within ``timeout_s`` → :class:`DeviceTimeout`;
* refused, reset, closed or unreachable → :class:`DeviceConnectionError`;
* a line that does not parse → :class:`DeviceProtocolError`;
* the instrument reports an error → :class:`InstrumentError` (``Reason.DEVICE_EXCEPTION``),
  or :class:`InstrumentOutOfRange` (``Reason.OUT_OF_RANGE``) for overload/underload.

After a timeout or a connection error the link is closed and reopened by the next request:
a late reply or a half line cannot then be mistaken for the answer to the next command
(``tty_opener`` flushes the port's input when it opens). Lines that arrive while no
request is waiting are discarded before the next command goes out (``stale_lines``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import drivers.text.calibrator as calibrator
import drivers.text.mtsics as mtsics
import drivers.text.prt as prt
import drivers.text.scpi as scpi
from drivers.errors import (
    DeviceConnectionError,
    DeviceProtocolError,
    DeviceTimeout,
)
from drivers.text.codec import (
    InstrumentReportedError,
    InvalidReading,
    LineDecoder,
    RangeReportedError,
    TextProtocolError,
    encode_line,
)
from drivers.text.errors import InstrumentError, InstrumentOutOfRange
from drivers.text.generic import GenericReading, GenericTextProfile, parse_generic_reply
from drivers.transport import SerialSettings, open_serial, open_tcp

__all__ = [
    "CalibratorDriver",
    "GenericTextDriver",
    "MtSicsBalanceDriver",
    "Opener",
    "PrtReadoutDriver",
    "ScpiDmmDriver",
    "TextLink",
    "tcp_opener",
    "tty_opener",
]

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Opener = Callable[[], Awaitable[Streams]]
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Openers


def tcp_opener(host: str, port: int) -> Opener:
    async def open_() -> Streams:
        return await open_tcp(host, port)

    return open_


def tty_opener(path: str | Callable[[], str], baudrate: int | None = None) -> Opener:
    """Open a serial port or pty slave raw, 8N1 (through :func:`drivers.transport.open_serial`).

    ``path`` may be a callable, evaluated at each (re)connect: a USB adapter or a simulator's
    pty may come back under a new name.
    """

    async def open_() -> Streams:
        where = path() if callable(path) else path
        return await open_serial(SerialSettings(where, baudrate or 9600, 8, "N", 1))

    return open_


# ---------------------------------------------------------------------------------------------
# The link: one request at a time over one stream pair


class TextLink:
    """Line-oriented request/response over streams from ``opener``; raises DriverErrors."""

    def __init__(
        self,
        opener: Opener,
        *,
        terminator: bytes = b"\r\n",
        timeout_s: float = 1.0,
        connect_timeout_s: float | None = None,
        max_line: int = 4096,
        encoding: str = "ascii",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._opener = opener
        self.terminator = terminator
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s or timeout_s
        self.encoding = encoding
        self._decoder = LineDecoder(terminator, max_line, encoding)
        self._lines: deque[str] = deque()
        self._streams: Streams | None = None
        self._lock = asyncio.Lock()
        self.stale_lines = 0

    @property
    def connected(self) -> bool:
        return self._streams is not None

    @property
    def decoder(self) -> LineDecoder:
        return self._decoder

    async def connect(self) -> None:
        if self._streams is not None:
            return
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self._streams = await self._opener()
        except TimeoutError as exc:
            raise DeviceConnectionError(f"connect timed out after {self.connect_timeout_s} s"
                                        ) from exc
        except OSError as exc:
            raise DeviceConnectionError(f"cannot connect: {exc}") from exc
        self._decoder.reset()
        self._lines.clear()

    async def close(self) -> None:
        streams, self._streams = self._streams, None
        self._decoder.reset()
        self._lines.clear()
        if streams is None:
            return
        writer = streams[1]
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()

    async def __aenter__(self) -> TextLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, *commands: str) -> None:
        """Send commands that have no reply."""
        async with self._lock:
            await self._guarded(self._write(commands), None)

    async def query(self, *commands: str, timeout_s: float | None = None) -> str:
        """Send ``commands`` (only the last one answers) and return its reply line."""
        async with self._lock:
            return await self._guarded(self._write_and_read(commands), timeout_s)

    async def _guarded(self, work: Awaitable[T], timeout_s: float | None) -> T:
        limit = timeout_s or self.timeout_s
        try:
            async with asyncio.timeout(limit):
                return await work
        except TimeoutError as exc:
            await self.close()
            raise DeviceTimeout(f"no reply within {limit} s") from exc
        except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise DeviceConnectionError(f"connection lost: {exc!r}") from exc
        except DeviceConnectionError:
            await self.close()
            raise

    async def _write(self, commands: tuple[str, ...]) -> None:
        await self.connect()
        assert self._streams is not None
        try:
            data = b"".join(encode_line(c, self.terminator, self.encoding) for c in commands)
        except TextProtocolError as exc:
            raise DeviceProtocolError(str(exc)) from exc
        if self._lines:
            self.stale_lines += len(self._lines)
            self._lines.clear()
        writer = self._streams[1]
        writer.write(data)
        await writer.drain()

    async def _write_and_read(self, commands: tuple[str, ...]) -> str:
        await self._write(commands)
        assert self._streams is not None
        reader = self._streams[0]
        while True:
            while self._lines:
                line = self._lines.popleft()
                if line.strip():
                    return line
            data = await reader.read(4096)
            if not data:
                raise DeviceConnectionError("connection closed by the instrument")
            self._lines.extend(self._decoder.feed(data))


def _parse(parser: Callable[[str], T], line: str) -> T:
    """Run a codec parser; translate its errors into the driver's typed errors."""
    try:
        return parser(line)
    except RangeReportedError as exc:
        raise InstrumentOutOfRange(exc.code, exc.message, exc.direction) from exc
    except InstrumentReportedError as exc:
        raise InstrumentError(exc.code, exc.message) from exc
    except TextProtocolError as exc:
        raise DeviceProtocolError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# Instruments


class _ScpiLike:
    """Shared by SCPI-speaking instruments: identify, error queue, NaN → ask the queue."""

    def __init__(self, link: TextLink) -> None:
        self.link = link

    async def close(self) -> None:
        await self.link.close()

    async def identify(self) -> scpi.Identity:
        return _parse(scpi.parse_idn, await self.link.query(scpi.IDN))

    async def next_error(self) -> tuple[int, str]:
        """Pop one entry of the instrument's error queue (``0`` = empty)."""
        return _parse(scpi.parse_error, await self.link.query(scpi.SYST_ERR))

    async def _set(self, command: str) -> None:
        """A set command, then the error queue: raise if the instrument rejected it."""
        code, message = _parse(scpi.parse_error, await self.link.query(command, scpi.SYST_ERR))
        if code != 0:
            raise InstrumentError(str(code), message)

    async def _measure(self, command: str, parser: Callable[[str], float]) -> float:
        line = await self.link.query(command)
        try:
            return _parse(parser, line)
        except InstrumentError as exc:
            if not isinstance(exc.__cause__, InvalidReading):
                raise
        code, message = await self.next_error()  # the queue says why there is no reading
        if code != 0:
            raise InstrumentError(str(code), message)
        raise InstrumentError(line.strip(), "no valid reading and an empty error queue")


class ScpiDmmDriver(_ScpiLike):
    """A SCPI bench DMM: ``identify()``, ``configure(function, range)``, ``read()``."""

    def __init__(self, opener: Opener, *, timeout_s: float = 1.0, terminator: bytes = b"\n"
                 ) -> None:
        super().__init__(TextLink(opener, terminator=terminator, timeout_s=timeout_s))

    async def reset(self) -> None:
        await self._set(scpi.RST)

    async def configure(self, function: scpi.DmmFunction | str, range_: float | str = "AUTO"
                        ) -> None:
        try:
            command = scpi.configure_command(function, range_)
        except (TextProtocolError, ValueError) as exc:
            raise ValueError(str(exc)) from exc
        await self._set(command)

    async def read(self) -> float:
        """Trigger one measurement with the present configuration (``READ?``)."""
        return await self._measure(scpi.READ, scpi.parse_reading)

    async def measure(self, function: scpi.DmmFunction | str) -> float:
        return await self._measure(scpi.measure_command(function), scpi.parse_reading)


class PrtReadoutDriver(_ScpiLike):
    """A PRT readout (generic SCPI-like dialect of :mod:`drivers.text.prt`), ohms out."""

    def __init__(self, opener: Opener, *, timeout_s: float = 1.0, terminator: bytes = b"\n"
                 ) -> None:
        super().__init__(TextLink(opener, terminator=terminator, timeout_s=timeout_s))

    async def read_resistance(self, *, fetch: bool = False) -> float:
        """A new measurement (``MEAS:RES?``) or, with ``fetch``, the last one (``FETC?``)."""
        command = prt.FETCH if fetch else prt.MEASURE_RESISTANCE
        return await self._measure(command, prt.parse_resistance)


class MtSicsBalanceDriver:
    """An MT-SICS balance: ``weigh(stable=True)`` sends ``S``, ``weigh(stable=False)`` ``SI``.

    ``S`` makes the balance wait for stability, so it gets its own, longer timeout.
    """

    def __init__(self, opener: Opener, *, timeout_s: float = 1.0,
                 stable_timeout_s: float | None = None) -> None:
        self.link = TextLink(opener, terminator=mtsics.TERMINATOR, timeout_s=timeout_s)
        self.stable_timeout_s = stable_timeout_s or 3 * timeout_s

    async def close(self) -> None:
        await self.link.close()

    async def weigh(self, stable: bool = True) -> mtsics.WeightResult:
        if stable:
            line = await self.link.query(mtsics.STABLE_WEIGHT, timeout_s=self.stable_timeout_s)
        else:
            line = await self.link.query(mtsics.WEIGHT_IMMEDIATELY)
        return _parse(mtsics.parse_weight_reply, line)


class GenericTextDriver:
    """An instrument described by a :class:`GenericTextProfile`: one command, one value."""

    def __init__(self, opener: Opener, profile: GenericTextProfile, *, timeout_s: float = 1.0
                 ) -> None:
        self.profile = profile
        self.link = TextLink(opener, terminator=profile.terminator_bytes, timeout_s=timeout_s,
                             encoding=profile.encoding)

    async def close(self) -> None:
        await self.link.close()

    async def read(self) -> GenericReading:
        line = await self.link.query(self.profile.command)
        return _parse(lambda text: parse_generic_reply(self.profile, text), line)




class CalibratorDriver(_ScpiLike):
    """A multifunction calibrator sourcing DC voltage (:mod:`drivers.text.calibrator`):
    ``set_voltage``, ``output``, ``setting``, ``wait_complete`` and ``command`` for a set
    command given as text (a procedure's), each set checked against the error queue."""

    def __init__(self, opener: Opener, *, timeout_s: float = 1.0, terminator: bytes = b"\n"
                 ) -> None:
        super().__init__(TextLink(opener, terminator=terminator, timeout_s=timeout_s))

    async def command(self, text: str) -> None:
        """A set command (no reply), then the error queue; ``InstrumentError`` if rejected."""
        await self._set(text)

    async def set_voltage(self, volts: float) -> None:
        try:
            command = calibrator.set_voltage_command(volts)
        except TextProtocolError as exc:
            raise ValueError(str(exc)) from exc
        await self._set(command)

    async def output(self, on: bool) -> None:
        await self._set(calibrator.OUTPUT_ON if on else calibrator.OUTPUT_OFF)

    async def output_on(self) -> bool:
        return _parse(calibrator.parse_state, await self.link.query(calibrator.OUTPUT_STATE))

    async def setting(self) -> float:
        """The programmed output (``SOUR:VOLT?``): the nominal value the reference sources."""
        return await self._measure(calibrator.VOLTAGE_SETTING, calibrator.parse_setting)

    async def wait_complete(self, timeout_s: float | None = None) -> None:
        """``*OPC?``: returns once the calibrator reports its output settled."""
        _parse(calibrator.parse_opc, await self.link.query(calibrator.OPC, timeout_s=timeout_s))
