"""Calibration procedures as data: what to calibrate, against what, at which setpoints, how to
decide conformity and which uncertainty contributions to add to the measured ones.

A procedure is a YAML file checked by the pydantic models below (built in:
``daq/data/procedures/<id>.yaml``; a site's own procedure folders override them by id,
:func:`find_procedure`); unknown fields are errors and every error names
``FILE:LINE: field: message`` (:func:`load_procedure`). Field by field documentation:
``docs/calibration-sessions.md``.

Pure: no I/O except reading the procedure file itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from calibration.decision import Rule
from calibration.errors import located
from calibration.uncertainty import Distribution
from daq.config.yamlsrc import (
    Located,
    Path_,
    SourceErrors,
    load_yaml,
    load_yaml_text,
    validated,
)
from daq.paths import builtin_data

__all__ = [
    "Acceptance",
    "Connection",
    "ContributionSpec",
    "Cvd",
    "Fit",
    "InstrumentSpec",
    "Laboratory",
    "Mpe",
    "Procedure",
    "Setpoint",
    "find_procedure",
    "load_procedure",
    "procedure_from_text",
]

BUILTIN_PROCEDURE_DIR = builtin_data("procedures")

DriverKind = Literal["scpi-dmm", "prt-readout", "calibrator"]
#: Driver kinds whose instrument is a source the software can command.
SOURCE_DRIVERS: frozenset[str] = frozenset({"calibrator"})


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Connection(_Spec):
    """Where an instrument is: TCP (``host`` + ``port``) or a serial line (``serial``)."""

    host: str | None = None
    port: int | None = Field(default=None, gt=0, lt=65536)
    serial: str | None = Field(default=None, min_length=1)
    baudrate: int = Field(default=9600, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> Connection:
        tcp = self.host is not None or self.port is not None
        if tcp == (self.serial is not None):
            raise ValueError("give either host and port, or serial")
        if tcp and (self.host is None or self.port is None):
            raise ValueError("a TCP connection needs both host and port")
        return self

    @property
    def bus(self) -> str:
        """Instruments with the same bus key share one physical link (readings interleave)."""
        return f"serial:{self.serial}" if self.serial else f"tcp:{self.host}:{self.port}"


class Cvd(_Spec):
    """Callendar–Van Dusen coefficients converting a resistance reading (Ω) to °C."""

    r0: float = Field(gt=0)
    a: float
    b: float
    c: float = 0.0


class InstrumentSpec(_Spec):
    """The DUT or the reference: registry id (overridable by ``--dut`` / ``--ref``), driver and
    connection; ``function``/``range`` configure a DMM, ``cvd`` converts ohms to °C."""

    instrument: str | None = Field(default=None, min_length=1)
    driver: DriverKind
    connection: Connection
    function: str = "VOLT:DC"
    range: float | str = "AUTO"
    timeout_s: float = Field(default=2.0, gt=0)
    cvd: Cvd | None = None

    @property
    def is_source(self) -> bool:
        return self.driver in SOURCE_DRIVERS


class Mpe(_Spec):
    """Maximum permissible error ±(``absolute`` + ``pct_reading`` % of |nominal| +
    ``pct_range`` % of ``range``), or ``from_dut: true`` for the DUT's accuracy in the
    registry (a % of reading + b % of the larger end of its range)."""

    absolute: float = Field(default=0.0, ge=0)
    pct_reading: float = Field(default=0.0, ge=0)
    pct_range: float = Field(default=0.0, ge=0)
    range: float | None = Field(default=None, gt=0)
    from_dut: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Mpe:
        given = self.absolute or self.pct_reading or self.pct_range
        if self.from_dut and given:
            raise ValueError("give from_dut or the MPE terms, not both")
        if not self.from_dut and not given:
            raise ValueError("an MPE needs absolute, pct_reading or pct_range (or from_dut)")
        if self.pct_range and self.range is None:
            raise ValueError("pct_range needs range")
        return self

    def at(self, nominal: float) -> float:
        """The MPE at ``nominal`` (not for ``from_dut``: resolve it first)."""
        if self.from_dut:
            raise ValueError("MPE from the DUT's accuracy: resolve it against the registry")
        return (self.absolute + self.pct_reading / 100.0 * abs(nominal)
                + self.pct_range / 100.0 * (self.range or 0.0))


class Acceptance(_Spec):
    """Decision rule (ILAC-G8): ``simple`` (w = 0) or ``guarded`` (w = U)."""

    rule: Rule = Rule.SIMPLE
    mpe: Mpe | None = None


class ContributionSpec(_Spec):
    """A Type B contribution beyond the measured ones.

    ``source``: ``reference_certificate`` (U/k of the reference's certificate at the point,
    normal), ``dut_resolution`` (half a resolution step, rectangular; ``value`` or the DUT's
    registry resolution), or ``given`` (``value`` + ``ppm`` of |nominal|, with ``distribution``
    and ``k``). ``kind`` only labels it in the budget (drift, environment, …).

    ``shared``: the term is one and the same error at every point of the session (a property
    of the reference, or of a set-up that stays), so the session's fit carries it once
    instead of averaging it down; default: true for ``reference_certificate``, false
    otherwise (see docs/calibration-sessions.md, "Correlation between points").
    """

    name: str = Field(min_length=1)
    source: Literal["reference_certificate", "dut_resolution", "given"] = "given"
    kind: Literal["reference", "drift", "resolution", "environment", "other"] = "other"
    value: float | None = Field(default=None, ge=0)
    ppm: float = Field(default=0.0, ge=0)
    distribution: Distribution = Distribution.RECTANGULAR
    k: float = Field(default=1.0, gt=0)
    sensitivity: float = 1.0
    dof: float | None = Field(default=None, gt=0)
    shared: bool | None = None

    @property
    def is_shared(self) -> bool:
        """Whether the term is common to every point of the session."""
        return self.source == "reference_certificate" if self.shared is None else self.shared

    @model_validator(mode="after")
    def _has_value(self) -> ContributionSpec:
        if self.source == "given" and self.value is None and not self.ppm:
            raise ValueError("a given contribution needs value or ppm")
        if self.source == "reference_certificate" and (self.value is not None or self.ppm):
            raise ValueError("the reference certificate's U/k is taken from the certificate; "
                             "value and ppm are not allowed")
        return self


class Setpoint(_Spec):
    """One calibration point. ``command`` (SCPI, ``{nominal}`` substituted) sets a source;
    ``prompt`` asks the technician. Unset fields come from the procedure's ``defaults``."""

    nominal: float
    settle_s: float | None = Field(default=None, ge=0)
    readings: int | None = Field(default=None, ge=2)
    command: list[str] | None = None
    prompt: str | None = Field(default=None, min_length=1)
    mpe: float | None = Field(default=None, gt=0)


class Defaults(_Spec):
    settle_s: float = Field(default=5.0, ge=0)
    readings: int = Field(default=10, ge=2)
    command: list[str] | None = None
    prompt: str | None = Field(default=None, min_length=1)
    #: a setpoint is flagged unstable when the means of the first and second half of its
    #: readings differ by more than this (in the unit); None: no check
    stability: float | None = Field(default=None, gt=0)


class Fit(_Spec):
    """The DUT's correction model fitted over the session: ``linear`` (gain and offset),
    ``polynomial`` of ``degree``, or ``cvd`` (R0, A, B of the DUT's PRT, plus a quadratic
    correction in °C for the certificate)."""

    kind: Literal["linear", "polynomial", "cvd"] = "linear"
    degree: int = Field(default=1, ge=0, le=5)


class Laboratory(_Spec):
    name: str = Field(min_length=1)
    accreditation: str = Field(min_length=1)


class Procedure(_Spec):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    title: str = Field(min_length=1)
    quantity: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    method: str = Field(min_length=1)
    dut: InstrumentSpec
    reference: InstrumentSpec
    defaults: Defaults = Field(default_factory=Defaults)
    setpoints: list[Setpoint] = Field(min_length=1)
    acceptance: Acceptance = Field(default_factory=Acceptance)
    contributions: list[ContributionSpec] = Field(default_factory=list)
    fit: Fit = Field(default_factory=Fit)
    laboratory: Laboratory
    interval_days: int = Field(default=365, gt=0)
    environment: dict[str, str | int | float] = Field(default_factory=dict)

    # -- per setpoint, defaults applied ---------------------------------------------------
    def settle_s(self, i: int) -> float:
        v = self.setpoints[i].settle_s
        return self.defaults.settle_s if v is None else v

    def readings(self, i: int) -> int:
        v = self.setpoints[i].readings
        return self.defaults.readings if v is None else v

    def commands(self, i: int) -> list[str] | None:
        """The source commands of setpoint ``i`` with ``{nominal}`` filled in, or None when
        the technician sets the point (prompt)."""
        sp = self.setpoints[i]
        if sp.prompt is not None:
            return None
        cmds = sp.command if sp.command is not None else self.defaults.command
        if cmds is None:
            return None
        return [c.format(nominal=sp.nominal, unit=self.unit) for c in cmds]

    def prompt(self, i: int) -> str:
        sp = self.setpoints[i]
        text = sp.prompt or self.defaults.prompt or "Set the reference, press Enter"
        return text.format(nominal=sp.nominal, unit=self.unit)

    def commandable(self) -> bool:
        """True when every setpoint is set by command: ``--yes`` may run unattended."""
        return all(self.commands(i) is not None for i in range(len(self.setpoints)))


def problems(proc: Procedure) -> list[tuple[Path_, str]]:
    """Checks across fields, as (path in the file, message)."""
    out: list[tuple[Path_, str]] = []
    if proc.dut.is_source:
        out.append((("dut", "driver"), "the DUT cannot be a source (driver calibrator)"))
    for i, sp in enumerate(proc.setpoints):
        command = sp.command if sp.command is not None else proc.defaults.command
        prompt = sp.prompt if sp.prompt is not None else proc.defaults.prompt
        if sp.command is not None and sp.prompt is not None:
            out.append((("setpoints", i), "give command or prompt, not both"))
        elif command is None and prompt is None:
            out.append((("setpoints", i), "no command and no prompt (set one here or in "
                                          "defaults)"))
        elif sp.prompt is None and command is not None and not proc.reference.is_source:
            out.append((("setpoints", i), "a command needs a reference the software can "
                                          "command (driver calibrator); use a prompt"))
    seen: set[str] = set()
    for i, c in enumerate(proc.contributions):
        if c.name in seen:
            out.append((("contributions", i, "name"), f"duplicate name {c.name!r}"))
        seen.add(c.name)
    if proc.fit.kind == "cvd" and proc.dut.cvd is None:
        out.append((("fit", "kind"), "cvd needs the DUT's nominal coefficients (dut.cvd)"))
    if proc.fit.kind == "polynomial" and proc.fit.degree + 1 > len(proc.setpoints):
        out.append((("fit", "degree"), f"degree {proc.fit.degree} needs at least "
                                       f"{proc.fit.degree + 1} setpoints"))
    return out


@located
def procedure_from_located(loc: Located) -> Procedure:
    if not isinstance(loc.data, dict):
        raise SourceErrors([loc.error((), "expected a mapping (a calibration procedure)")])
    proc = validated(Procedure, loc)
    found = problems(proc)
    if found:
        raise SourceErrors(sorted((loc.error(p, m) for p, m in found), key=lambda e: e.line))
    return proc


def find_procedure(name: str, dirs: Iterable[Path] = ()) -> Path | None:
    """A procedure by id: ``<name>.yaml`` in the first of ``dirs`` (a site's own folders)
    that has it, else the built-in one; None when there is none."""
    for d in [*dirs, BUILTIN_PROCEDURE_DIR]:
        candidate = d / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


@located
def load_procedure(file: str | Path) -> Procedure:
    """Load and check a procedure file; :class:`SourceErrors` with FILE:LINE: field: message.
    ``${ENV_VAR:-default}`` in strings is substituted (e.g. a simulator's port)."""
    return procedure_from_located(load_yaml(file))


@located
def procedure_from_text(text: str, name: str) -> Procedure:
    """The same from text (a session journal keeps the procedure it ran)."""
    return procedure_from_located(load_yaml_text(text, name))
