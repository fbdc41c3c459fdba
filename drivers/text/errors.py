"""Typed errors of the text-instrument drivers, on top of :mod:`drivers.errors`."""

from __future__ import annotations

from daq.model import Reason
from drivers.errors import DriverError

__all__ = ["InstrumentError", "InstrumentOutOfRange"]


class InstrumentError(DriverError):
    """The instrument answered, and its answer reports an error (SCPI error queue, MT-SICS
    ``ES``/``EL``/``ET``/``S I``). ``code`` is the instrument's own code as text."""

    reason = Reason.DEVICE_EXCEPTION

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"instrument error {code}: {message}")


class InstrumentOutOfRange(InstrumentError):
    """The instrument reports its input over or under its range (SCPI 9.9E37, ``S +``)."""

    reason = Reason.OUT_OF_RANGE

    def __init__(self, code: str, message: str, direction: str) -> None:
        self.direction = direction
        super().__init__(code, message)
