"""SCPI digital-multimeter dialect: commands to build, replies to parse (no I/O).

Modelled on the common SCPI (IEEE 488.2 + SCPI-1999) subset that bench DMMs share:
``*IDN?`` → ``maker,model,serial,firmware``; ``CONF:<function> <range>`` and ``READ?`` /
``MEAS:<function>?`` → one number in NR1/NR2/NR3 form (``+1.00023000E+01``); ``SYST:ERR?`` →
``<code>,"<message>"`` (``+0,"No error"``, ``-113,"Undefined header"``). A reading of
+9.9E37 (or −9.9E37) is SCPI's overload value, 9.91E37 its "not a number": they raise
:class:`RangeReportedError` and :class:`InvalidReading`; everything unparseable raises
:class:`TextProtocolError`. Set commands (``CONF``, ``*RST``) have no reply: a driver
checks the error queue after them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from drivers.text.codec import InvalidReading, RangeReportedError, TextProtocolError

__all__ = [
    "IDN",
    "NOT_A_NUMBER",
    "OVERLOAD",
    "READ",
    "RST",
    "SYST_ERR",
    "DmmFunction",
    "Identity",
    "configure_command",
    "format_error",
    "format_idn",
    "format_reading",
    "measure_command",
    "parse_error",
    "parse_idn",
    "parse_reading",
]

IDN = "*IDN?"
RST = "*RST"
READ = "READ?"
SYST_ERR = "SYST:ERR?"
OVERLOAD = 9.9e37
NOT_A_NUMBER = 9.91e37

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ERROR = re.compile(r'([+-]?\d+)\s*,\s*"([^"]*)"')
_RANGE = re.compile(r"(?:AUTO|MIN|MAX|DEF|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", re.I)


class DmmFunction(StrEnum):
    """Measurement functions (the SCPI short form used on the wire)."""

    VOLT_DC = "VOLT:DC"
    RES = "RES"


@dataclass(frozen=True, slots=True)
class Identity:
    maker: str
    model: str
    serial: str
    firmware: str


def configure_command(function: DmmFunction | str, range_: float | str = "AUTO") -> str:
    fn = DmmFunction(function)
    text = range_ if isinstance(range_, str) else f"{range_:G}"
    if not _RANGE.fullmatch(text):
        raise TextProtocolError(f"not a SCPI range: {range_!r}")
    return f"CONF:{fn} {text.upper()}"


def measure_command(function: DmmFunction | str) -> str:
    return f"MEAS:{DmmFunction(function)}?"


def parse_idn(line: str) -> Identity:
    parts = [p.strip() for p in line.strip().split(",")]
    if len(parts) != 4 or not parts[0] or not parts[1]:
        raise TextProtocolError(f"not an *IDN? reply (maker,model,serial,firmware): {line!r}")
    return Identity(*parts)


def format_idn(identity: Identity) -> str:
    return ",".join((identity.maker, identity.model, identity.serial, identity.firmware))


def parse_reading(line: str) -> float:
    """One NR1/NR2/NR3 number; overload and NaN markers raise their typed errors."""
    text = line.strip()
    if not _NUMBER.fullmatch(text):
        raise TextProtocolError(f"not a SCPI number: {line!r}")
    value = float(text)
    if math.isclose(abs(value), NOT_A_NUMBER, rel_tol=1e-4):
        raise InvalidReading(text, "instrument reports no valid reading (SCPI NaN 9.91E37)")
    if abs(value) >= OVERLOAD * (1 - 1e-4):
        direction = "over" if value > 0 else "under"
        raise RangeReportedError(text, f"{direction}load (SCPI 9.9E37)", direction)
    return value


def format_reading(value: float) -> str:
    """A reading as a DMM sends it: ``+1.00023000E+01`` (9 significant digits)."""
    return f"{value:+.8E}"


def parse_error(line: str) -> tuple[int, str]:
    """``SYST:ERR?`` reply → ``(code, message)``; code 0 means the queue is empty."""
    m = _ERROR.fullmatch(line.strip())
    if m is None:
        raise TextProtocolError(f'not a SYST:ERR? reply (<code>,"<message>"): {line!r}')
    return int(m.group(1)), m.group(2)


def format_error(code: int, message: str) -> str:
    return f'{code:+d},"{message}"'
