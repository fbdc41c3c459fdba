"""Mettler Toledo MT-SICS (level 0) balance dialect: weight commands and replies, no I/O.

What was checked, in public copies of Mettler Toledo's own texts (found with the project's
``search`` tool; the reference manual itself, "MT-SICS 11780711", was not available whole):

* Reference Manual "MT-SICS Interface Commands for XPR and XSR Balances", section
  "Command Formats": commands are upper-case ASCII, parameters separated by one space,
  and every command is closed by CR LF.
* New Classic / AT balance operating instructions (manualshelf.com, manymanuals copies),
  the ``S`` command: ``S S WeightValue Unit`` = stable weight; ``S I`` = command not
  executable (balance busy, e.g. taring, or time-out as stability was not reached);
  ``S +`` = balance in overload range; ``S -`` = balance in underload range; example
  ``S S     100.00 g``. The same command table lists ``SI`` = send weight value immediately.
* Mettler Toledo AE-series manual (manualslib), "Error messages from the balance": ``ET``
  transmission error (parity/framing), ``ES`` syntax error (command not recognised), ``EL``
  logical error (correct command that cannot be carried out).

Not verified in the retrieved text, taken from general MT-SICS knowledge: that ``SI``
answers ``S D WeightValue Unit`` while the weight is not stable (``D`` = dynamic), and that
the weight field is right-aligned in 10 characters (the parser does not rely on the width).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from daq.model import Quality
from drivers.text.codec import InstrumentReportedError, RangeReportedError, TextProtocolError

__all__ = [
    "GENERAL_ERRORS",
    "STABLE_WEIGHT",
    "TERMINATOR",
    "WEIGHT_IMMEDIATELY",
    "WeightResult",
    "format_weight",
    "parse_weight_reply",
]

TERMINATOR = b"\r\n"
STABLE_WEIGHT = "S"
WEIGHT_IMMEDIATELY = "SI"

GENERAL_ERRORS = {
    "ES": "syntax error: command not recognised",
    "ET": "transmission error: parity or framing",
    "EL": "logical error: command cannot be carried out",
}
_STATUS_ERRORS = {
    "I": "command understood but not executable now (busy, or no stability reached)",
}
_WEIGHT = re.compile(r"S\s+([SD])\s+([+-]?\s*(?:\d+\.?\d*|\.\d+))\s+(\S+)")
_SHORT = re.compile(r"S\s+([I+-])")


@dataclass(frozen=True, slots=True)
class WeightResult:
    value: float
    unit: str
    stable: bool

    @property
    def quality(self) -> Quality:
        """A dynamic (not yet stable) weight is a value, but an uncertain one."""
        return Quality.GOOD if self.stable else Quality.UNCERTAIN


def parse_weight_reply(line: str) -> WeightResult:
    """A reply to ``S`` or ``SI`` → :class:`WeightResult`, or a typed error."""
    text = line.strip()
    if text in GENERAL_ERRORS:
        raise InstrumentReportedError(text, GENERAL_ERRORS[text])
    m = _WEIGHT.fullmatch(text)
    if m is not None:
        status, value, unit = m.groups()
        return WeightResult(float(value.replace(" ", "")), unit, status == "S")
    m = _SHORT.fullmatch(text)
    if m is None:
        raise TextProtocolError(f"not an MT-SICS weight reply: {line!r}")
    status = m.group(1)
    if status == "+":
        raise RangeReportedError("S +", "balance in overload range", "over")
    if status == "-":
        raise RangeReportedError("S -", "balance in underload range", "under")
    raise InstrumentReportedError("S I", _STATUS_ERRORS["I"])


def format_weight(value: float, unit: str, stable: bool, decimals: int) -> str:
    """The balance's reply: ``S S     100.00 g`` (value right-aligned in 10 characters)."""
    return f"S {'S' if stable else 'D'} {value:>10.{decimals}f} {unit}"
