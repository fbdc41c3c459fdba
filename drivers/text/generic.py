"""A generic text instrument described entirely as data (no code per instrument).

A :class:`GenericTextProfile` says which command to send, how lines end, and a regular
expression that picks the number (named group ``value``) and optionally the unit (named
group ``unit``) out of the reply. The engineering value is ``raw × scale + offset``. When
the reply carries a unit it must equal the profile's unit: a balance switched from g to
mg must not be read as grams. An optional ``error_regex`` recognises replies in which the
instrument reports an error (group ``code`` if present).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from drivers.text.codec import InstrumentReportedError, TextProtocolError, encode_line

__all__ = ["GenericReading", "GenericTextProfile", "parse_generic_reply"]

_TERMINATORS = {"\r\n": b"\r\n", "\n": b"\n", "\r": b"\r"}


class GenericTextProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str
    terminator: Literal["\r\n", "\n", "\r"] = "\r\n"
    reply_regex: str
    unit: str
    quantity: str
    scale: float = 1.0
    offset: float = 0.0
    error_regex: str | None = None
    encoding: str = "ascii"

    @field_validator("command")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if not v or "\r" in v or "\n" in v:
            raise ValueError("command must be one non-empty line")
        return v

    @field_validator("reply_regex")
    @classmethod
    def _has_value_group(cls, v: str) -> str:
        try:
            pattern = re.compile(v)
        except re.error as exc:
            raise ValueError(f"reply_regex does not compile: {exc}") from exc
        if "value" not in pattern.groupindex:
            raise ValueError("reply_regex needs a named group 'value'")
        return v

    @field_validator("error_regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"error_regex does not compile: {exc}") from exc
        return v

    @field_validator("scale", "offset")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    @property
    def terminator_bytes(self) -> bytes:
        return _TERMINATORS[self.terminator]

    def request(self) -> bytes:
        return encode_line(self.command, self.terminator_bytes, self.encoding)


@dataclass(frozen=True, slots=True)
class GenericReading:
    value: float
    raw: float
    unit: str
    quantity: str


def parse_generic_reply(profile: GenericTextProfile, line: str) -> GenericReading:
    text = line.strip()
    if profile.error_regex is not None:
        err = re.fullmatch(profile.error_regex, text)
        if err is not None:
            code = err.groupdict().get("code") or text
            raise InstrumentReportedError(code, text)
    m = re.fullmatch(profile.reply_regex, text)
    if m is None:
        raise TextProtocolError(f"reply does not match the profile: {line!r}")
    try:
        raw = float(m.group("value").replace(" ", ""))
    except (TypeError, ValueError) as exc:
        raise TextProtocolError(f"value is not a number: {m.group('value')!r}") from exc
    if not math.isfinite(raw):
        raise TextProtocolError(f"value is not finite: {line!r}")
    unit = m.groupdict().get("unit")
    if unit is not None and unit != profile.unit:
        raise TextProtocolError(f"reply unit {unit!r}, profile expects {profile.unit!r}")
    return GenericReading(raw * profile.scale + profile.offset, raw, profile.unit,
                          profile.quantity)
