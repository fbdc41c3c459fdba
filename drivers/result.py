"""What every driver's poll returns: one :class:`ChannelResult` per channel, and the one
formula from a device's raw value to an engineering value."""

from __future__ import annotations

from dataclasses import dataclass

from daq.config.profiles import Dlt645Channel, InstrumentChannel, ModbusChannel
from daq.model import Reason
from drivers.errors import DriverError

__all__ = ["Channel", "ChannelResult", "RawValue", "engineering_value"]

RawValue = int | float | str
Channel = ModbusChannel | Dlt645Channel | InstrumentChannel


def engineering_value(raw: RawValue, scale: float, offset: float) -> RawValue:
    """``raw × scale + offset`` for numbers (the one formula drivers and simulators share).

    Integers with scale 1 and offset 0 stay integers; strings pass through.
    """
    if isinstance(raw, str):
        return raw
    if scale == 1.0 and offset == 0.0:
        return raw
    return raw * scale + offset


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """One channel's outcome of a poll: a value, or an error with a reason.

    ``ts_ns`` is ``time.time_ns()`` when the response (or the failure) of the channel's
    request arrived. ``raw`` is the decoded, unscaled value the device sent; ``value`` is
    :func:`engineering_value` of it. Exactly one of ``value`` and ``error`` is ``None``.
    ``uncertain`` marks a value the device itself flags as not settled, e.g. a balance's
    dynamic weight (:attr:`Reason.DYNAMIC`).
    """

    channel: Channel
    ts_ns: int
    raw: RawValue | None
    value: RawValue | None
    error: DriverError | None = None
    uncertain: Reason | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
