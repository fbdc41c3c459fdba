"""Polling arithmetic, back-off and the coordinator's supervision of a driver's bugs.

(A cancellation that pymodbus loses is the Modbus TCP reader's business:
tests/integration/drivers/test_modbus_driver.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from daq.config import load_config
from daq.model import Reading
from gateway.acquisition.poller import DeviceCoordinator, build_coordinators, next_tick_ns

SITE = """
enterprise: {id: e}
gateways:
  - id: g
    buses:
      - id: b
        protocol: modbus-tcp
        host: 127.0.0.1
        port: 1
        devices:
          - {id: m, profile: sdm630, interval_ms: 10, failures_before_backoff: 2,
             max_backoff_s: 0.08}
"""


def test_ticks_are_aligned_to_the_wall_clock() -> None:
    s = 1_000_000_000
    assert next_tick_ns(5 * s + 1, s) == 6 * s
    assert next_tick_ns(5 * s, s) == 6 * s  # strictly after
    assert next_tick_ns(5 * s + 1, s, skip=3) == 9 * s
    assert next_tick_ns(5 * s + 1, 250_000_000) == 5 * s + 250_000_000


class BrokenReader:
    """A register reader with a bug in it."""

    connected = True

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def read_registers(self, unit: int, function: int, address: int,
                             count: int) -> list[int]:
        raise ZeroDivisionError("a bug")


async def until(predicate: Callable[[], bool], timeout_s: float = 2.0) -> None:
    for _ in range(int(timeout_s * 1000)):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def coordinator(tmp_path: Path, sink: object) -> DeviceCoordinator:
    (tmp_path / "s.yaml").write_text(SITE)
    loaded = load_config(tmp_path / "s.yaml")
    (coord,) = build_coordinators(loaded, loaded.gateway(), sink)  # type: ignore[arg-type]
    return coord


def test_backoff_doubles_up_to_the_maximum(tmp_path: Path) -> None:
    coord = coordinator(tmp_path, None)
    ticks = []
    for failures in range(7):
        coord.state.consecutive_failures = failures
        ticks.append(coord.backoff_ticks())
    # healthy, then 1, 3, 7 ticks skipped (every 2nd, 4th, 8th tick) capped at 80 ms = 8 ticks
    assert ticks == [0, 0, 1, 3, 7, 7, 7]


async def test_an_unexpected_error_marks_the_poll_bad_and_polling_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    got: list[list[Reading]] = []

    async def sink(readings: list[Reading]) -> None:
        got.append(readings)

    coord = coordinator(tmp_path, sink)
    coord.driver.reader = BrokenReader()
    task = asyncio.create_task(coord.run())
    await until(lambda: len(got) >= 2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert all(r.reason == "internal" and r.value is None for rs in got for r in rs)
    assert "ZeroDivisionError" in caplog.text
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(tracebacks) == 1  # once per failure, not once per poll
    assert tracebacks[0].exc_info is not None


class FlakyReader(BrokenReader):
    """A bug on the first two polls, then zeros."""

    def __init__(self) -> None:
        self.calls = 0

    async def read_registers(self, unit: int, function: int, address: int,
                             count: int) -> list[int]:
        self.calls += 1
        if self.calls <= 2:
            raise ZeroDivisionError("a bug")
        return [0] * count


async def test_an_unexpected_error_is_logged_once_and_its_end_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    coord = coordinator(tmp_path, None)
    coord.driver.reader = FlakyReader()
    polls = [await coord.poll_once() for _ in range(4)]
    assert [rs[0].reason for rs in polls] == ["internal", "internal", None, None]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    again = [r for r in caplog.records if "again" in r.getMessage()]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert len(again) == 1
