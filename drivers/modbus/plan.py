"""Read coalescing: turn a profile's channels into as few Modbus read requests as possible.

Channels of one function code whose registers lie within ``max_gap`` unused registers of each
other share a request of at most ``max_count`` registers. A channel is never split across
requests. The plan is computed once per device and reused on every poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from daq.config.profiles import ModbusChannel
from drivers.modbus.codec import MAX_READ_REGISTERS, ModbusProtocolError

__all__ = ["ReadPlan", "describe_plan", "plan_reads"]


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """One read request and the channels it serves.

    ``offsets[i]`` is where ``channels[i]`` starts within the response's registers.
    """

    function: int
    address: int
    count: int
    channels: tuple[ModbusChannel, ...]
    offsets: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.offsets):
            raise ValueError("channels and offsets differ in length")
        for ch, off in zip(self.channels, self.offsets, strict=True):
            if off < 0 or off + ch.count > self.count:
                raise ValueError(f"channel {ch.id!r} lies outside the request")

    @property
    def end(self) -> int:
        """First register after the request."""
        return self.address + self.count

    def split(self, registers: Sequence[int]) -> list[Sequence[int]]:
        """Slice a response's registers into one register list per channel (in plan order)."""
        if len(registers) != self.count:
            raise ModbusProtocolError(
                f"FC{self.function} 0x{self.address:04X}: expected {self.count} registers, "
                f"got {len(registers)}"
            )
        return [
            registers[off : off + ch.count]
            for ch, off in zip(self.channels, self.offsets, strict=True)
        ]

    def describe(self) -> str:
        n = len(self.channels)
        ids = self.channels[0].id if n == 1 else f"{self.channels[0].id} … {self.channels[-1].id}"
        noun = "channel" if n == 1 else "channels"
        return f"FC{self.function} 0x{self.address:04X}+{self.count} ({n} {noun}: {ids})"


def plan_reads(
    channels: Sequence[ModbusChannel], max_gap: int = 16, max_count: int = MAX_READ_REGISTERS
) -> list[ReadPlan]:
    """Coalesce channels into read requests, ordered by function code, then address.

    Two neighbouring channels share a request when at most ``max_gap`` unused registers lie
    between them and the request stays within ``max_count`` registers. Overlapping channels
    are allowed. Raises ``ValueError`` for a channel longer than ``max_count`` or bad limits.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    if not 1 <= max_count <= MAX_READ_REGISTERS:
        raise ValueError(f"max_count must be 1..{MAX_READ_REGISTERS}, got {max_count}")
    for ch in channels:
        if ch.count > max_count:
            raise ValueError(
                f"channel {ch.id!r} needs {ch.count} registers, more than one request "
                f"may read ({max_count})"
            )

    ordered = sorted(channels, key=lambda c: (c.function, c.address, c.count))
    plans: list[ReadPlan] = []
    group: list[ModbusChannel] = []
    start = end = function = 0

    def flush() -> None:
        if group:
            plans.append(
                ReadPlan(function, start, end - start, tuple(group),
                         tuple(c.address - start for c in group))
            )

    for ch in ordered:
        ch_end = ch.address + ch.count
        if (
            group
            and ch.function == function
            and ch.address - end <= max_gap
            and max(end, ch_end) - start <= max_count
        ):
            group.append(ch)
            end = max(end, ch_end)
            continue
        flush()
        group = [ch]
        function, start, end = ch.function, ch.address, ch_end
    flush()
    return plans


def plan_device(channels: Sequence[ModbusChannel], max_gap: int = 16, max_count: int = 125,
                one_request_per_channel: bool = False) -> list[ReadPlan]:
    """The reads of one poll: coalesced, or one per channel for meters that need it."""
    if one_request_per_channel:
        return [plan_reads([ch], 0, max_count)[0] for ch in channels]
    return plan_reads(channels, max_gap, max_count)


def describe_plan(plans: Sequence[ReadPlan]) -> list[str]:
    """One human-readable line per request, e.g. for ``daq config check``."""
    return [p.describe() for p in plans]
