"""A multifunction calibrator as a DC voltage source: SCPI commands to build, replies to parse
(no I/O).

The common SCPI subset of bench calibrators: ``SOUR:VOLT <value>`` sets the DC output,
``SOUR:VOLT?`` returns the present setting (NR3), ``OUTP ON`` / ``OUTP OFF`` switch the
output terminals, ``OUTP?`` → ``1`` or ``0``, ``*OPC?`` → ``1`` once the output has settled;
``*IDN?`` and ``SYST:ERR?`` as in :mod:`drivers.text.scpi`. Set commands have no reply: a
driver checks the error queue after them.
"""

from __future__ import annotations

import math

from drivers.text.codec import TextProtocolError
from drivers.text.scpi import format_reading, parse_reading

__all__ = [
    "OPC",
    "OUTPUT_OFF",
    "OUTPUT_ON",
    "OUTPUT_STATE",
    "VOLTAGE_SETTING",
    "format_setting",
    "format_state",
    "parse_opc",
    "parse_setting",
    "parse_state",
    "set_voltage_command",
]

VOLTAGE_SETTING = "SOUR:VOLT?"
OUTPUT_ON = "OUTP ON"
OUTPUT_OFF = "OUTP OFF"
OUTPUT_STATE = "OUTP?"
OPC = "*OPC?"


def set_voltage_command(volts: float) -> str:
    if not math.isfinite(volts):
        raise TextProtocolError(f"not a finite voltage: {volts!r}")
    return f"SOUR:VOLT {volts:.9G}"


def parse_setting(line: str) -> float:
    """The reply to ``SOUR:VOLT?`` (an NR3 number)."""
    return parse_reading(line)


def format_setting(volts: float) -> str:
    return format_reading(volts)


def parse_state(line: str) -> bool:
    text = line.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise TextProtocolError(f"not an output state (1/0): {line!r}")


def format_state(on: bool) -> str:
    return "1" if on else "0"


def parse_opc(line: str) -> None:
    if line.strip() != "1":
        raise TextProtocolError(f"not an *OPC? reply (1): {line!r}")
