"""A precision-thermometer readout (PRT resistance bridge) dialect: generic, not one maker's.

Modelled after the SCPI-like subset common to PRT readouts and resistance bridges; it does
not claim to be any specific maker's protocol (none was checked). Commands end in LF:

* ``*IDN?`` → ``maker,model,serial,firmware`` (as in :mod:`drivers.text.scpi`);
* ``MEAS:RES?`` → a new measurement of the sensor resistance in ohms, NR3
  (``+1.38505500E+02``); ``FETC?`` → the last measured value without a new conversion;
* ``SYST:ERR?`` → ``<code>,"<message>"``.

An open or over-range sensor is reported as +9.9E37 (:class:`RangeReportedError`), an
invalid conversion as 9.91E37 (:class:`InvalidReading`); the error queue says why.
Temperature is *not* computed here: converting ohms to kelvin is a calibration function
(the sensor's certificate), which lives in ``calibration/``.
"""

from __future__ import annotations

from drivers.text.codec import TextProtocolError
from drivers.text.scpi import format_reading, parse_reading

__all__ = ["FETCH", "MEASURE_RESISTANCE", "format_resistance", "parse_resistance"]

MEASURE_RESISTANCE = "MEAS:RES?"
FETCH = "FETC?"


def parse_resistance(line: str) -> float:
    """A resistance reply → ohms; a negative resistance is not a valid reply."""
    ohms = parse_reading(line)
    if ohms < 0:
        raise TextProtocolError(f"negative resistance: {line!r}")
    return ohms


def format_resistance(ohms: float) -> str:
    return format_reading(ohms)
