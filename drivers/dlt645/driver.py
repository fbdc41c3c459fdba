"""The DL/T 645 driver: polls one meter (an address on a line) for its profile's channels,
over a :class:`~drivers.dlt645.link.Dlt645Link` shared by the meters of the line."""

from __future__ import annotations

from collections.abc import Sequence

from daq.config.profiles import Dlt645Channel
from drivers.dlt645.codec import Dlt645Error, identifiers
from drivers.dlt645.link import Dlt645Link
from drivers.errors import DecodeError
from drivers.poll import Outcome, poll
from drivers.result import ChannelResult


class Dlt645Driver:
    """Reads each channel's data identifier in turn (DL/T 645 has no multi-identifier read).

    ``poll()`` is :func:`drivers.poll.poll` with one request per channel: a timeout or a lost
    line ends the poll, so a dead meter holds its line for one timeout per poll.
    """

    def __init__(self, link: Dlt645Link, address: str,
                 channels: Sequence[Dlt645Channel]) -> None:
        table = identifiers()
        for ch in channels:
            if ch.di_value not in table:
                raise ValueError(f"channel {ch.id}: data identifier {ch.di} is not in "
                                 "drivers/dlt645/identifiers.yaml")
        self.link = link
        self.address = address
        self.channels = list(channels)

    async def poll(self) -> list[ChannelResult]:
        return await poll([(ch, (ch,)) for ch in self.channels], self._fetch)

    async def _fetch(self, ch: Dlt645Channel) -> list[Outcome]:
        payload = await self.link.read(self.address, ch.di_value)
        try:
            return [identifiers()[ch.di_value].decode(payload)]
        except Dlt645Error as exc:
            raise DecodeError(f"{ch.id}: {exc}") from exc

    async def close(self) -> None:
        await self.link.close()
