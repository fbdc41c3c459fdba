"""Device profiles: register maps as data (built in: ``daq/data/profiles/*.yaml``; a site's own
in its ``profile_dirs``, which override the built-ins by id), validated here.

A profile names a device model and lists its channels. For Modbus, each channel says where
its value lives (function code, address), how it is encoded (data type, word and byte order)
and how the raw value becomes an engineering value (``value = raw × scale + offset``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from daq.config.yamlsrc import Located, SourceError, SourceErrors, load_yaml, validation_errors
from daq.model import ChannelMeta
from daq.paths import builtin_data

BUILTIN_PROFILE_DIR = builtin_data("profiles")


class DataType(StrEnum):
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    U64 = "u64"
    F32 = "f32"
    F64 = "f64"
    STRING = "string"


class WordOrder(StrEnum):
    """Byte order of a multi-register value, written as the letters of a 32-bit value.

    ``ABCD`` is big-endian words and bytes (Modbus's own order); ``DCBA`` little-endian both;
    ``BADC`` big-endian words with bytes swapped within each; ``CDAB`` little-endian words
    with big-endian bytes (the common "word-swapped" float). For 64-bit values the same
    rule extends to four registers.
    """

    ABCD = "ABCD"
    DCBA = "DCBA"
    BADC = "BADC"
    CDAB = "CDAB"


REGISTERS_PER_TYPE: dict[DataType, int] = {
    DataType.U16: 1,
    DataType.I16: 1,
    DataType.U32: 2,
    DataType.I32: 2,
    DataType.U64: 4,
    DataType.F32: 2,
    DataType.F64: 4,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusChannel(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    quantity: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]  # a measurement name
    unit: str
    description: str = ""
    function: Literal[3, 4]
    address: Annotated[int, Field(ge=0, le=0xFFFF)]
    type: DataType
    order: WordOrder = WordOrder.ABCD
    length: Annotated[int | None, Field(ge=1, le=125)] = None  # registers, strings only
    scale: float = 1.0
    offset: float = 0.0
    range: tuple[float, float] | None = None
    resolution: float | None = None

    @model_validator(mode="after")
    def _check_length(self) -> ModbusChannel:
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("a string channel needs 'length' (in registers)")
        if self.type is not DataType.STRING and self.length is not None:
            raise ValueError("'length' applies to string channels only")
        if self.address + self.count > 0x10000:
            raise ValueError("channel extends past register 0xFFFF")
        if self.scale == 0:
            raise ValueError("scale must not be 0 (the raw value could not be recovered)")
        return self

    @property
    def count(self) -> int:
        """Number of 16-bit registers the channel occupies."""
        if self.type is DataType.STRING:
            assert self.length is not None
            return self.length
        return REGISTERS_PER_TYPE[self.type]

    def meta(self) -> ChannelMeta:
        lo, hi = self.range if self.range else (None, None)
        return ChannelMeta(self.id, self.quantity, self.unit, self.description, lo, hi,
                           self.resolution)


class Dlt645Channel(_Strict):
    """A DL/T 645-2007 channel: one data identifier (``di``, eight hex digits DI3..DI0)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    quantity: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]  # a measurement name
    unit: str
    description: str = ""
    di: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{8}$")]
    scale: float = 1.0
    offset: float = 0.0
    range: tuple[float, float] | None = None
    resolution: float | None = None

    @property
    def di_value(self) -> int:
        return int(self.di, 16)

    def meta(self) -> ChannelMeta:
        lo, hi = self.range if self.range else (None, None)
        return ChannelMeta(self.id, self.quantity, self.unit, self.description, lo, hi,
                           self.resolution)


def _unique(channels: list[ModbusChannel] | list[Dlt645Channel] | list[InstrumentChannel]
            ) -> None:
    seen: set[str] = set()
    for ch in channels:
        if ch.id in seen:
            raise ValueError(f"duplicate channel id {ch.id!r}")
        seen.add(ch.id)
    if not channels:
        raise ValueError("a profile needs at least one channel")


class Dlt645Profile(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]
    maker: str
    model: str
    protocol: Literal["dlt645"]
    description: str = ""
    sources: list[str] = []
    unconfirmed: list[str] = []
    channels: list[Dlt645Channel]

    @field_validator("channels")
    @classmethod
    def _unique_ids(cls, channels: list[Dlt645Channel]) -> list[Dlt645Channel]:
        _unique(channels)
        return channels


class Profile(_Strict):
    """A Modbus device profile (register map)."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]
    maker: str
    model: str
    protocol: Literal["modbus"]
    description: str = ""
    sources: list[str] = []  # where the register map was confirmed (manual, version, page)
    unconfirmed: list[str] = []  # what could not be confirmed, said plainly
    channels: list[ModbusChannel]

    @field_validator("channels")
    @classmethod
    def _unique_ids(cls, channels: list[ModbusChannel]) -> list[ModbusChannel]:
        _unique(channels)
        ordered = sorted(channels, key=lambda c: (c.function, c.address))
        for a, b in itertools.pairwise(ordered):
            if a.function == b.function and b.address < a.address + a.count:
                raise ValueError(f"channels {a.id!r} and {b.id!r} overlap "
                                 f"(FC{a.function} 0x{b.address:04X})")
        return channels


def profile_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    """Where profiles are looked up, first match wins: a site's own folders, then the built-ins
    (so a site's ``<id>.yaml`` overrides the built-in profile of that id)."""
    return [*extra, BUILTIN_PROFILE_DIR]


def available_profiles(dirs: Iterable[Path]) -> list[str]:
    names: set[str] = set()
    for d in dirs:
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


class InstrumentChannel(_Strict):
    """One value an instrument delivers. Which fields apply depends on the profile's protocol:

    * ``scpi-dmm``: ``function`` (``VOLT:DC``, ``RES``, …) and ``measure_range`` (none: auto);
    * ``prt-readout``: nothing more (resistance in ohms);
    * ``mtsics-balance``: ``stable`` (``S``, wait for stability) or not (``SI``, immediate;
      a dynamic weight is then ``uncertain``);
    * ``text``: ``command``, ``reply_regex`` (named group ``value``, optional ``unit``) and
      ``terminator``.
    """

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    quantity: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]  # a measurement name
    unit: str
    description: str = ""
    function: str | None = None
    measure_range: float | None = None
    stable: bool = True
    command: str | None = None
    reply_regex: str | None = None
    terminator: Literal["\r\n", "\n", "\r"] = "\r\n"
    scale: float = 1.0
    offset: float = 0.0
    range: tuple[float, float] | None = None
    resolution: float | None = None

    def meta(self) -> ChannelMeta:
        lo, hi = self.range if self.range else (None, None)
        return ChannelMeta(self.id, self.quantity, self.unit, self.description, lo, hi,
                           self.resolution)


class InstrumentProfile(_Strict):
    """A laboratory instrument on its own serial line or TCP port (SCPI, MT-SICS, text)."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]
    maker: str
    model: str
    protocol: Literal["scpi-dmm", "prt-readout", "mtsics-balance", "text"]
    description: str = ""
    sources: list[str] = []
    unconfirmed: list[str] = []
    channels: list[InstrumentChannel]

    @model_validator(mode="after")
    def _fields_for_protocol(self) -> InstrumentProfile:
        _unique(self.channels)
        for ch in self.channels:
            if self.protocol == "scpi-dmm" and not ch.function:
                raise ValueError(f"channel {ch.id!r}: a scpi-dmm channel needs 'function'")
            if self.protocol == "text" and not (ch.command and ch.reply_regex):
                raise ValueError(f"channel {ch.id!r}: a text channel needs 'command' and "
                                 "'reply_regex'")
        return self


AnyProfile = Profile | Dlt645Profile | InstrumentProfile
_ANY_PROFILE: TypeAdapter[AnyProfile] = TypeAdapter(
    Annotated[AnyProfile, Field(discriminator="protocol")])


def load_profile_file(path: Path) -> AnyProfile:
    loc = load_yaml(path)
    return profile_from(loc)


def profile_from(loc: Located) -> AnyProfile:
    try:
        return _ANY_PROFILE.validate_python(loc.data)
    except ValidationError as exc:
        raise SourceErrors(validation_errors(exc, loc)) from exc


def find_profile(name: str, dirs: Iterable[Path]) -> Path | None:
    for d in dirs:
        candidate = d / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


def load_profile(name: str, dirs: Iterable[Path]) -> AnyProfile:
    """Find ``name`` in ``dirs`` (first match wins) and load it."""
    dirs = list(dirs)
    path = find_profile(name, dirs)
    if path is None:
        known = ", ".join(available_profiles(dirs)) or "none"
        raise SourceErrors([SourceError("<profiles>", 1, "", f"unknown profile {name!r} "
                                        f"(known: {known})")])
    return load_profile_file(path)


def load_modbus_profile(name: str, dirs: Iterable[Path] | None = None) -> Profile:
    """Like :func:`load_profile`, for callers that need a Modbus register map."""
    profile = load_profile(name, profile_dirs() if dirs is None else dirs)
    if not isinstance(profile, Profile):
        raise SourceErrors([SourceError("<profiles>", 1, "", f"profile {name!r} is "
                                        f"{profile.protocol}, not modbus")])
    return profile
