"""A DL/T 645 meter as the gateway polls it: an address on a line and its channels."""

from __future__ import annotations

import time
from collections.abc import Sequence

from daq.config.profiles import Dlt645Channel
from drivers.dlt645.codec import Dlt645Error, identifiers
from drivers.dlt645.driver import Dlt645Client
from drivers.errors import (
    DecodeError,
    DeviceConnectionError,
    DeviceTimeout,
    DriverError,
)
from drivers.result import ChannelResult


class Dlt645Device:
    """Reads each channel's data identifier in turn (DL/T 645 has no multi-identifier read).

    A timeout or a lost line ends the poll: the remaining channels get the same error
    without being asked, so a dead meter holds its line for one timeout per poll.
    """

    def __init__(self, client: Dlt645Client, address: str,
                 channels: Sequence[Dlt645Channel]) -> None:
        table = identifiers()
        for ch in channels:
            if ch.di_value not in table:
                raise ValueError(f"channel {ch.id}: data identifier {ch.di} is not in "
                                 "drivers/dlt645/identifiers.yaml")
        self.client = client
        self.address = address
        self.channels = list(channels)

    async def poll(self) -> list[ChannelResult]:
        results: list[ChannelResult] = []
        abort: DriverError | None = None
        table = identifiers()
        for ch in self.channels:
            if abort is not None:
                results.append(ChannelResult(ch, time.time_ns(), None, None, abort))
                continue
            try:
                payload = await self.client.read(self.address, ch.di_value)
                ts = time.time_ns()
                try:
                    raw = table[ch.di_value].decode(payload)
                except Dlt645Error as exc:
                    raise DecodeError(f"{ch.id}: {exc}") from exc
            except DriverError as err:
                results.append(ChannelResult(ch, time.time_ns(), None, None, err))
                if isinstance(err, DeviceTimeout | DeviceConnectionError):
                    abort = err
                continue
            value = raw if ch.scale == 1.0 and ch.offset == 0.0 else raw * ch.scale + ch.offset
            results.append(ChannelResult(ch, ts, raw, value))
        return results

    async def close(self) -> None:
        await self.client.close()
