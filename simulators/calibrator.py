"""A simulated multifunction calibrator (a DC voltage source speaking SCPI over TCP) and a
DMM that measures its output, connected in-process so the truth is known exactly.

:class:`Source` is the physical output: the calibrator programs ``setting`` and switches it
on; its true output is ``setting·(1 + gain) + offset`` (the calibrator's own small, known
error, which its certificate describes), 0 V when off. :class:`CalibratorSimulator` is the
SCPI dialect of :mod:`drivers.text.calibrator` in the server role over that source;
:class:`SourcedDmmSimulator` is the SCPI DMM simulator whose measurand is the source's true
output at every reading, with the DMM's own injected error (gain, offset, noise) in its
:class:`~simulators.instruments.InstrumentModel`.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.text import calibrator, scpi
from simulators.instruments import InstrumentModel, ScpiDmmSimulator, _ScpiSimulator

__all__ = ["CalibratorSimulator", "Source", "SourcedDmmSimulator"]


@dataclass
class Source:
    """The calibrator's output terminals: programmed setting, on/off, and its true error."""

    gain: float = 0.0
    offset: float = 0.0
    setting: float = 0.0
    on: bool = False
    limit: float = 11.0  # |setting| above this is refused (SCPI −222)

    def output(self) -> float:
        """The true voltage at the terminals."""
        return self.setting * (1.0 + self.gain) + self.offset if self.on else 0.0


class CalibratorSimulator(_ScpiSimulator):
    """``SOUR:VOLT <v>``, ``SOUR:VOLT?``, ``OUTP ON|OFF``, ``OUTP?``, ``*OPC?``, ``*RST``."""

    def __init__(self, source: Source | None = None,
                 identity: scpi.Identity | None = None) -> None:
        super().__init__(identity or scpi.Identity("DAQSIM", "MFC-5500S", "SN000789", "3.0"),
                         InstrumentModel(0.0, "V"))
        self.source = source or Source()
        self.commands: list[str] = []  # every set command accepted, in order

    async def respond_scpi(self, cmd: str) -> str | None:
        src = self.source
        if cmd == scpi.RST:
            src.setting, src.on = 0.0, False
            return None
        if cmd == calibrator.OPC:
            return "1"
        if cmd == calibrator.VOLTAGE_SETTING:
            return calibrator.format_setting(src.setting)
        if cmd == calibrator.OUTPUT_STATE:
            return calibrator.format_state(src.on)
        if cmd in (calibrator.OUTPUT_ON, calibrator.OUTPUT_OFF):
            src.on = cmd == calibrator.OUTPUT_ON
            self.commands.append(cmd)
            return None
        if cmd.startswith("SOUR:VOLT "):
            try:
                value = float(cmd[len("SOUR:VOLT "):])
            except ValueError:
                self.push_error(-224, "Illegal parameter value")
                return None
            if abs(value) > src.limit:
                self.push_error(-222, "Data out of range")
                return None
            src.setting = value
            self.commands.append(cmd)
            return None
        self._undefined()
        return None


class SourcedDmmSimulator(ScpiDmmSimulator):
    """A SCPI DMM whose measurand is ``source.output()`` at each reading."""

    def __init__(self, source: Source, model: InstrumentModel | None = None,
                 identity: scpi.Identity | None = None) -> None:
        super().__init__(model or InstrumentModel(0.0, "V", decimals=6), identity)
        self.source = source

    def _measurement(self, limit: float | None = None) -> str:
        self.model.true_value = self.source.output()
        return super()._measurement(limit)
