"""What every driver's poll returns: one :class:`ChannelResult` per channel."""

from __future__ import annotations

from dataclasses import dataclass

from daq.config.profiles import Dlt645Channel, InstrumentChannel, ModbusChannel
from drivers.errors import DriverError

RawValue = int | float | str
Channel = ModbusChannel | Dlt645Channel | InstrumentChannel


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """One channel's outcome of a poll: a value, or an error with a reason.

    ``ts_ns`` is ``time.time_ns()`` when the response (or the failure) of the channel's
    request arrived. ``raw`` is the decoded, unscaled value the device sent; ``value`` is
    ``raw × scale + offset``. Exactly one of ``value`` and ``error`` is ``None``.
    ``uncertain`` (a reason code) marks a value the device itself flags as not settled, e.g.
    a balance's dynamic weight.
    """

    channel: Channel
    ts_ns: int
    raw: RawValue | None
    value: RawValue | None
    error: DriverError | None = None
    uncertain: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
