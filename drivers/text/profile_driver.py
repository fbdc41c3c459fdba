"""The text driver the gateway polls a laboratory device through: the dialect driver of its
profile's protocol (SCPI DMM, PRT readout, MT-SICS balance, generic text) plus the
profile's channels."""

from __future__ import annotations

from collections.abc import Sequence

from daq.config.profiles import InstrumentChannel, InstrumentProfile
from daq.model import Reason
from drivers.poll import ENDS_THE_POLL, Decoded, Outcome, poll
from drivers.result import ChannelResult
from drivers.text.driver import (
    GenericTextDriver,
    MtSicsBalanceDriver,
    Opener,
    PrtReadoutDriver,
    ScpiDmmDriver,
)
from drivers.text.generic import GenericTextProfile


class TextDriver:
    """Reads each channel of an instrument profile in turn, through its dialect's driver."""

    def __init__(self, profile: InstrumentProfile, opener: Opener, timeout_s: float) -> None:
        self.profile = profile
        self.channels: Sequence[InstrumentChannel] = profile.channels
        self._opener = opener
        self._timeout_s = timeout_s
        self._dmm: ScpiDmmDriver | None = None
        self._prt: PrtReadoutDriver | None = None
        self._balance: MtSicsBalanceDriver | None = None
        self._text: dict[str, GenericTextDriver] = {}
        kind = profile.protocol
        if kind == "scpi-dmm":
            self._dmm = ScpiDmmDriver(opener, timeout_s=timeout_s)
        elif kind == "prt-readout":
            self._prt = PrtReadoutDriver(opener, timeout_s=timeout_s)
        elif kind == "mtsics-balance":
            self._balance = MtSicsBalanceDriver(opener, timeout_s=timeout_s)
        self._configured: str | None = None  # the DMM function set last (one channel: once)

    async def _read(self, ch: InstrumentChannel) -> tuple[float, Reason | None]:
        """(raw value, uncertain-reason or None)."""
        if self._dmm is not None:
            assert ch.function is not None
            key = f"{ch.function} {ch.measure_range}"
            if key != self._configured or len(self.channels) > 1:
                await self._dmm.configure(ch.function, ch.measure_range
                                          if ch.measure_range is not None else "AUTO")
                self._configured = key
            return await self._dmm.read(), None
        if self._prt is not None:
            return await self._prt.read_resistance(), None
        if self._balance is not None:
            w = await self._balance.weigh(stable=ch.stable)
            return w.value, None if w.stable else Reason.DYNAMIC
        driver = self._text.get(ch.id)
        if driver is None:
            assert ch.command is not None
            assert ch.reply_regex is not None
            driver = GenericTextDriver(self._opener, GenericTextProfile(
                command=ch.command, terminator=ch.terminator, reply_regex=ch.reply_regex,
                unit=ch.unit, quantity=ch.quantity), timeout_s=self._timeout_s)
            self._text[ch.id] = driver
        return (await driver.read()).raw, None

    async def poll(self) -> list[ChannelResult]:
        """:func:`drivers.poll.poll` with one request per channel."""
        return await poll([(ch, (ch,)) for ch in self.channels], self._fetch)

    async def _fetch(self, ch: InstrumentChannel) -> list[Outcome]:
        try:
            raw, uncertain = await self._read(ch)
        except ENDS_THE_POLL:
            self._configured = None  # a reconnected instrument may have been reset
            raise
        return [raw if uncertain is None else Decoded(raw, uncertain=uncertain)]

    async def close(self) -> None:
        for d in (self._dmm, self._prt, self._balance, *self._text.values()):
            if d is not None:
                await d.close()
