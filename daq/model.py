"""The core data model: readings and the metadata that describes them once.

A :class:`Reading` is one value of one channel of one device at one instant. It carries its
own quality and, once calibration lands, its expanded uncertainty. Device and channel
metadata (:class:`DeviceMeta`, :class:`ChannelMeta`) are described once and published
retained; readings carry values, timestamps, uncertainty and quality.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Quality(StrEnum):
    """Quality of a reading (OPC-UA-like, three states)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class Reason(StrEnum):
    """Why a reading is not good. Stable codes: dashboards and alarms key on them.

    The one list of them: ``docs/mqtt-payload.schema.json`` repeats it and a test holds the
    two equal. Several reasons travel in one string, joined by :func:`join_reasons`.
    """

    TIMEOUT = "timeout"
    CONNECTION = "connection"  # refused, reset, unreachable
    PROTOCOL = "protocol"  # malformed frame, CRC error, unexpected reply
    DEVICE_EXCEPTION = "device_exception"  # Modbus exception response, DL/T 645 abnormal reply
    DECODE = "decode"  # registers received but not decodable (NaN, bad string)
    OUT_OF_RANGE = "out_of_range"
    DYNAMIC = "dynamic"  # the device flags its value as not settled (a balance in motion)
    STUCK = "stuck"  # every value identical for `stuck_after` polls: a frozen device
    INTERNAL = "internal"  # a bug in daq itself: logged with its traceback
    # calibration and legal metrology (the reading is kept, quality uncertain):
    OUTSIDE_CALIBRATED_RANGE = "outside_calibrated_range"  # raw outside the calibrated points
    CALIBRATION_EXPIRED = "calibration_expired"  # the instrument's certificate has expired
    CHAIN_BROKEN = "chain_broken"  # the traceability chain does not reach a national standard
    NOT_CALIBRATED = "not_calibrated"  # the channel names an instrument without a certificate
    VERIFICATION_OVERDUE = "verification_overdue"  # mandatory verification (强制检定) overdue
    # (or never done)
    VERIFICATION_FAILED = "verification_failed"  # the last verification failed
    SERVICE_LIFE_ENDED = "service_life_ended"  # first-verification-only meter past its life
    # neither the instrument record nor its certificate states the repeatability of one
    # reading: u counts only the calibration, resolution and drift (corrected, with u/k/cert)
    REPEATABILITY_UNKNOWN = "repeatability_unknown"


REASON_SEPARATOR = ","


def join_reasons(reasons: Iterable[Reason | str]) -> str | None:
    """Several reasons as the one string a reading carries (``"stuck,not_calibrated"``),
    first first, each once; ``None`` for none. The inverse is :func:`split_reasons`."""
    seen: list[str] = []
    for r in reasons:
        code = str(r)
        if code and code not in seen:
            seen.append(code)
    return REASON_SEPARATOR.join(seen) or None


def split_reasons(reason: str | None) -> list[str]:
    """The codes in a reading's ``reason`` (unknown ones kept: a newer gateway's)."""
    return [r for r in (reason or "").split(REASON_SEPARATOR) if r]


Value = float | int | str


@dataclass(slots=True)
class Reading:
    """One value of one channel at one instant.

    ``ts_ns`` is the acquisition time (UTC, nanoseconds since the epoch), taken when the
    device's response arrived. ``value`` is the engineering value (raw × scale + offset, then
    the calibration correction of the channel's instrument); ``raw`` is what the device sent,
    decoded but unscaled. A bad reading has ``value is None`` and a ``reason``; a reading that
    is not good has a ``reason``: a :class:`Reason` code, or several joined by
    :func:`join_reasons` when more than one applies.

    Where a calibration applies: ``u`` is the combined standard uncertainty of ``value``,
    ``k`` the coverage factor for ≈95 % coverage and :attr:`U` = k·u the expanded
    uncertainty; ``cert`` is the id of the certificate whose correction was applied.
    ``verification`` is set when the instrument's mandatory verification is not in order
    (``overdue``, ``service_life_ended``, …): the reading is kept and flagged, never dropped.
    """

    ts_ns: int
    enterprise: str
    gateway: str
    device: str
    channel: str
    quantity: str
    unit: str
    value: Value | None
    raw: Value | None = None
    quality: Quality = Quality.GOOD
    reason: str | None = None
    u: float | None = None
    k: float | None = None
    cert: str | None = None
    verification: str | None = None

    def __post_init__(self) -> None:
        if self.value is None and self.quality is not Quality.BAD:
            raise ValueError("a reading without a value must have quality 'bad'")

    @property
    def U(self) -> float | None:  # the symbol of expanded uncertainty (GUM)
        """Expanded uncertainty k·u, or ``None`` without a calibration."""
        if self.u is None or self.k is None:
            return None
        return self.u * self.k

    def flag(self, reason: Reason) -> None:
        """Mark the reading uncertain for ``reason`` (kept, never dropped); a bad reading
        stays bad and keeps its reason first."""
        if self.quality is Quality.GOOD:
            self.quality = Quality.UNCERTAIN
        self.reason = join_reasons([*split_reasons(self.reason), reason])


@dataclass(frozen=True, slots=True)
class ChannelMeta:
    """What a channel measures, described once."""

    id: str
    quantity: str
    unit: str
    description: str = ""
    range_min: float | None = None
    range_max: float | None = None
    resolution: float | None = None
    instrument: str | None = None  # the calibration registry's instrument, if mapped

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "quantity": self.quantity,
            "unit": self.unit,
            "description": self.description,
            "range": [self.range_min, self.range_max],
            "resolution": self.resolution,
        }
        if self.instrument is not None:
            d["instrument"] = self.instrument
        return d


@dataclass(frozen=True, slots=True)
class DeviceMeta:
    """A device and its channels, published retained on ``…/{device}/meta``."""

    enterprise: str
    gateway: str
    device: str
    profile: str
    maker: str
    model: str
    interval_ms: int
    channels: tuple[ChannelMeta, ...] = field(default_factory=tuple)
    instrument: str | None = None  # the calibration registry's instrument the device is

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "enterprise": self.enterprise,
            "gateway": self.gateway,
            "device": self.device,
            "profile": self.profile,
            "maker": self.maker,
            "model": self.model,
            "interval_ms": self.interval_ms,
            "channels": [c.as_dict() for c in self.channels],
        }
        if self.instrument is not None:
            d["instrument"] = self.instrument
        return d


def now_ns() -> int:
    """Wall-clock time in UTC nanoseconds: the one clock readings are stamped with."""
    return time.time_ns()
