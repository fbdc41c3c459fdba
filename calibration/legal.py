"""Legal-metrology data: default verification periods per instrument type
(``verification-periods.yaml``) and the accuracy classes GB 17167 requires per energy
type and measurement level (``gb17167-classes.yaml``). Both are built in (``daq/data/``); a
site's periods file lists only the instrument types it adds or changes and overrides the
built-in rules of those types (:func:`load_periods`); a classes file replaces the built-in
table whole (an edition is one regulation's table).

Both files are data validated by pydantic models; errors read ``FILE:LINE: field: message``.
Every figure carries its source and whether it could be confirmed from the regulation's text
(``confirmed``); see ``docs/verification.md``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from calibration.errors import located
from calibration.records import EnergyType, Instrument, MeasurementLevel
from daq.config.yamlsrc import load_yaml, validated
from daq.paths import builtin_data

DEFAULT_PERIODS = builtin_data("verification-periods.yaml")
DEFAULT_CLASSES = builtin_data("gb17167-classes.yaml")


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _DnRange(_Data):
    dn_over: int | None = Field(default=None, ge=0, description="DN > dn_over (mm)")
    dn_max: int | None = Field(default=None, gt=0, description="DN <= dn_max (mm)")

    @model_validator(mode="after")
    def _dn_ordered(self) -> _DnRange:
        if self.dn_over is not None and self.dn_max is not None \
                and not self.dn_over < self.dn_max:
            raise ValueError(f"dn_over {self.dn_over} must be below dn_max {self.dn_max}")
        return self

    @property
    def on_dn(self) -> bool:
        return self.dn_over is not None or self.dn_max is not None

    def matches_dn(self, dn: int | None) -> bool:
        if not self.on_dn:
            return True
        if dn is None:
            return False
        return (self.dn_over is None or dn > self.dn_over) and \
            (self.dn_max is None or dn <= self.dn_max)


class _Sourced(_DnRange):
    confirmed: bool
    note: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _unconfirmed_says_why(self) -> _Sourced:
        if not self.confirmed and self.note is None:
            raise ValueError("an unconfirmed figure needs a note saying what is not confirmed")
        return self


class PeriodRule(_Sourced):
    """A default verification mode for instruments of one type (and DN range)."""

    mode: Literal["periodic", "first_only"]
    period_months: int | None = Field(default=None, gt=0)
    service_life_years: float | None = Field(default=None, gt=0)
    regulation: str = Field(min_length=1)

    @model_validator(mode="after")
    def _fits_mode(self) -> PeriodRule:
        if self.mode == "periodic" and (self.period_months is None
                                        or self.service_life_years is not None):
            raise ValueError("a periodic rule gives period_months (and no service_life_years)")
        if self.mode == "first_only" and (self.service_life_years is None
                                          or self.period_months is not None):
            raise ValueError("a first_only rule gives service_life_years (and no period_months)")
        return self

    @property
    def source(self) -> str:
        return self.regulation + ("" if self.confirmed else ", unconfirmed")


class InstrumentType(_Data):
    name: str = Field(min_length=1)
    rules: list[PeriodRule] = Field(min_length=1)


class VerificationPeriods(_Data):
    """The content of ``verification-periods.yaml``."""

    types: dict[str, InstrumentType] = Field(default_factory=dict)

    def rule_for(self, instrument: Instrument) -> PeriodRule | None:
        """The first rule of the instrument's type matching its DN; None without a type,
        an unknown type or no matching rule (the caller says which)."""
        if instrument.instrument_type is None:
            return None
        t = self.types.get(instrument.instrument_type)
        if t is None:
            return None
        return next((r for r in t.rules if r.matches_dn(instrument.dn)), None)


class ClassRequirement(_Sourced):
    energy_type: EnergyType
    level: MeasurementLevel
    category: str | None = Field(default=None, min_length=1)
    class_: str = Field(alias="class", min_length=1)

    @model_validator(mode="after")
    def _class_parses(self) -> ClassRequirement:
        class_number(self.class_)
        return self


class Edition(_Data):
    edition: str = Field(min_length=1)
    in_force_from: dt.date
    in_force_until: dt.date | None = None
    requirements: list[ClassRequirement] = Field(default_factory=list)

    def in_force(self, at: dt.date) -> bool:
        return self.in_force_from <= at and (self.in_force_until is None
                                             or at <= self.in_force_until)

    def requirement_for(self, instrument: Instrument) -> ClassRequirement | None:
        """The most specific requirement matching the instrument (category and DN count)."""
        found = [r for r in self.requirements
                 if r.energy_type == instrument.energy_type
                 and r.level == instrument.measurement_level
                 and (r.category is None or r.category == instrument.metering_category)
                 and r.matches_dn(instrument.dn)]
        return max(found, key=lambda r: (r.category is not None, r.on_dn), default=None)

    def categories_for(self, energy_type: str, level: str) -> list[str]:
        return sorted({r.category for r in self.requirements if r.energy_type == energy_type
                       and r.level == level and r.category is not None})


class Gb17167Classes(_Data):
    """The content of ``gb17167-classes.yaml``."""

    editions: list[Edition] = Field(min_length=1)

    def edition_at(self, at: dt.date) -> Edition | None:
        return next((e for e in self.editions if e.in_force(at)), None)

    def edition_named(self, name: str) -> Edition | None:
        return next((e for e in self.editions if e.edition == name), None)


_CLASS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(S?)\s*$", re.IGNORECASE)


def class_number(name: str) -> tuple[float, int]:
    """An accuracy class as a sortable key, smaller is better: ``"0.5S"`` → (0.5, 0),
    ``"0.5"`` → (0.5, 1). Raises ValueError for a name that is not a number (+ S)."""
    m = _CLASS.match(name)
    if m is None:
        raise ValueError(f"accuracy class {name!r} is not a number optionally followed by S")
    return float(m.group(1)), 0 if m.group(2) else 1


@located
def load_periods(file: str | Path | None = None, *, over_builtin: bool = True
                 ) -> VerificationPeriods:
    """The verification periods: the built-in ones, with ``file``'s instrument types
    replacing the built-in rules of the same type id and adding new ones
    (``over_builtin=False``: ``file`` alone). :class:`SourceErrors` (FILE:LINE) on problems."""
    builtin = validated(VerificationPeriods, load_yaml(DEFAULT_PERIODS, env={}))
    if file is None or Path(file) == DEFAULT_PERIODS:
        return builtin
    own = validated(VerificationPeriods, load_yaml(file, env={}))
    if not over_builtin:
        return own
    return VerificationPeriods(types={**builtin.types, **own.types})


@located
def load_classes(file: str | Path = DEFAULT_CLASSES) -> Gb17167Classes:
    """Load ``gb17167-classes.yaml``; :class:`SourceErrors` (FILE:LINE) on problems."""
    return validated(Gb17167Classes, load_yaml(file, env={}))
