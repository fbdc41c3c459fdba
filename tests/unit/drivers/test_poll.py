"""The one poll loop (drivers.poll) with a request function in memory, and the one formula."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from daq.config.profiles import InstrumentChannel
from daq.model import Reason
from drivers.errors import (
    DecodeError,
    DeviceConnectionError,
    DeviceException,
    DeviceTimeout,
    DriverError,
)
from drivers.poll import Decoded, Outcome, poll
from drivers.result import engineering_value


def channel(id_: str, scale: float = 1.0, offset: float = 0.0) -> InstrumentChannel:
    return InstrumentChannel(id=id_, quantity="q", unit="u", scale=scale, offset=offset)


A, B, C, D, E = (channel(n) for n in "abcde")
SCALED = channel("s", scale=0.1, offset=2.0)


class Device:
    """Answers each request from a table: a list of outcomes, or an error to raise."""

    def __init__(self, answers: dict[str, Sequence[Outcome] | DriverError]) -> None:
        self.answers = answers
        self.sent: list[str] = []

    async def fetch(self, request: str) -> Sequence[Outcome]:
        self.sent.append(request)
        answer = self.answers[request]
        if isinstance(answer, DriverError):
            raise answer
        return answer


def test_engineering_value() -> None:
    assert engineering_value(2301, 0.1, 0.0) == pytest.approx(230.1)
    assert engineering_value(7, 1.0, 0.0) == 7
    assert isinstance(engineering_value(7, 1.0, 0.0), int)
    assert engineering_value(100, 2.0, -5.0) == 195.0
    assert engineering_value("abc", 0.1, 3.0) == "abc"


async def test_every_channel_gets_a_value_scaled_once() -> None:
    dev = Device({"r1": [10, 2301], "r2": ["text"]})
    before = time.time_ns()
    results = await poll([("r1", (A, SCALED)), ("r2", (B,))], dev.fetch)
    assert dev.sent == ["r1", "r2"]
    assert [r.channel.id for r in results] == ["a", "s", "b"]
    assert [(r.raw, r.value) for r in results] == [
        (10, 10), (2301, pytest.approx(2301 * 0.1 + 2.0)), ("text", "text")]
    assert all(r.ok and r.uncertain is None and r.ts_ns >= before for r in results)


@pytest.mark.parametrize("fatal", [DeviceTimeout("silent"), DeviceConnectionError("reset")])
async def test_a_timeout_or_a_lost_connection_ends_the_poll(fatal: DriverError) -> None:
    dev = Device({"r1": [1], "r2": fatal, "r3": [3], "r4": [4, 5]})
    results = await poll([("r1", (A,)), ("r2", (B,)), ("r3", (C,)), ("r4", (D, E))], dev.fetch)
    assert dev.sent == ["r1", "r2"]  # r3 and r4 never sent
    assert results[0].value == 1
    assert [r.error for r in results[1:]] == [fatal] * 4
    assert all(r.raw is None and r.value is None for r in results[1:])


async def test_other_errors_affect_only_their_own_request() -> None:
    exc = DeviceException(2, 3, name="illegal data address")
    dev = Device({"r1": exc, "r2": [2]})
    results = await poll([("r1", (A, B)), ("r2", (C,))], dev.fetch)
    assert dev.sent == ["r1", "r2"]
    assert [r.error for r in results] == [exc, exc, None]
    assert results[2].value == 2


async def test_per_channel_outcomes_errors_and_unsettled_values() -> None:
    bad = DecodeError("non-finite")
    dev = Device({"r": [Decoded(float("inf"), bad), Decoded(5, uncertain=Reason.DYNAMIC), 7]})
    results = await poll([("r", (A, SCALED, C))], dev.fetch)
    assert (results[0].raw, results[0].value, results[0].error) == (float("inf"), None, bad)
    assert (results[1].raw, results[1].value, results[1].uncertain) == (
        5, pytest.approx(2.5), Reason.DYNAMIC)
    assert results[1].ok
    assert results[2].value == 7


async def test_a_fetch_that_miscounts_its_channels_is_a_bug() -> None:
    dev = Device({"r": [1]})
    with pytest.raises(ValueError, match="zip"):
        await poll([("r", (A, B))], dev.fetch)


async def test_the_pause_is_taken_only_between_requests_that_are_sent() -> None:
    dev = Device({"r1": [1], "r2": [2], "r3": DeviceTimeout("x"), "r4": [4]})
    start = time.monotonic()
    await poll([("r1", (A,)), ("r2", (B,)), ("r3", (C,)), ("r4", (D,))], dev.fetch,
               pause_s=0.1)
    elapsed = time.monotonic() - start
    assert dev.sent == ["r1", "r2", "r3"]
    assert 0.2 <= elapsed < 0.28  # two pauses: before r2 and r3, none for r4
