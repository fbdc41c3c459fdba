"""Faults on a shared RS-485 line (a pty), against the running pollers: the affected unit's
readings are bad with the right reason, its neighbour on the same line keeps its poll rate
within 10 %, and the unit recovers by itself when the fault clears."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from daq.config import load_config
from daq.config.profiles import load_modbus_profile
from daq.model import Quality, Reading
from gateway.acquisition.poller import DeviceCoordinator
from simulators.modbus_meter import ModbusMeterSimulator
from simulators.modbus_rtu import RtuBusSimulator
from tests.integration.pathrun import polling

INTERVAL_MS = 250
RUN_S = 2.5


@dataclass
class Line:
    sim: RtuBusSimulator
    coords: dict[str, DeviceCoordinator]
    got: list[list[Reading]]


def meter(profile: str, unit: int) -> ModbusMeterSimulator:
    return ModbusMeterSimulator(load_modbus_profile(profile), unit_id=unit, seed=unit)


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[Line]:
    async with RtuBusSimulator({1: meter("sdm630", 1), 2: meter("dtsu666", 2)}) as sim:
        (tmp_path / "s.yaml").write_text(f"""
enterprise: {{id: e}}
gateways:
  - id: g
    buses:
      - id: rs485
        protocol: modbus-rtu
        serial: {{port: {sim.path}, baudrate: 115200}}
        timeout_ms: 100
        devices:
          - {{id: steady, profile: sdm630, unit_id: 1, interval_ms: {INTERVAL_MS},
             stuck_after: 3, max_backoff_s: 0.5}}
          - {{id: faulty, profile: dtsu666, unit_id: 2, interval_ms: {INTERVAL_MS},
             failures_before_backoff: 2, max_backoff_s: 0.5}}
""")
        async with polling(load_config(tmp_path / "s.yaml")) as run:
            yield Line(sim, run.coords, run.got)


def silence_unit_2(line: Line) -> Callable[[], None]:
    line.sim.meters[2].faults.silent = True
    return lambda: setattr(line.sim.meters[2].faults, "silent", False)


def exception_unit_2(line: Line) -> Callable[[], None]:
    line.sim.meters[2].faults.exception_code = 4
    return lambda: setattr(line.sim.meters[2].faults, "exception_code", None)


def late_unit_2(line: Line) -> Callable[[], None]:
    line.sim.meters[2].faults.delay_s = 0.15  # answers after the 100 ms timeout
    return lambda: setattr(line.sim.meters[2].faults, "delay_s", 0.0)


def corrupt_every_reply(line: Line) -> Callable[[], None]:
    line.sim.faults.corrupt_crc = 10**9  # every reply, both units
    return lambda: setattr(line.sim.faults, "corrupt_crc", 0)


@pytest.mark.parametrize(("fault", "reason", "steady_affected"), [
    (silence_unit_2, "timeout", False),
    (exception_unit_2, "device_exception", False),
    (late_unit_2, "timeout", False),
    (corrupt_every_reply, "protocol", True),
])
async def test_fault_on_a_shared_line(line: Line, fault: Callable[[Line], Callable[[], None]],
                                      reason: str, steady_affected: bool) -> None:
    await asyncio.sleep(0.6)  # both healthy first
    before = {k: c.state.polls for k, c in line.coords.items()}
    clear = fault(line)
    # a poll already under way when the fault began may finish with some good channels
    # (its first request answered before): judge the polls that start after it
    await asyncio.sleep(INTERVAL_MS / 1000)
    start = len(line.got)
    await asyncio.sleep(RUN_S)
    during = line.got[start:]
    faulty = [r for rs in during if rs[0].device == "faulty" for r in rs]
    assert faulty
    assert all(r.quality is Quality.BAD for r in faulty)
    assert {r.reason for r in faulty} == {reason}
    if not steady_affected:
        polls = line.coords["steady"].state.polls - before["steady"]
        expected = RUN_S * 1000 / INTERVAL_MS
        assert polls >= 0.9 * expected, f"steady polled {polls} times, expected ~{expected}"
        steady = [r for rs in during if rs[0].device == "steady" for r in rs]
        assert all(r.quality is Quality.GOOD for r in steady)
    clear()
    await asyncio.sleep(1.2)  # back-off is at most 0.5 s
    for name in ("steady", "faulty"):
        last = [rs for rs in line.got if rs[0].device == name][-1]
        assert all(r.quality is Quality.GOOD for r in last), name
        assert not line.coords[name].state.degraded


async def test_an_out_of_range_value_is_kept_but_flagged(line: Line) -> None:
    line.sim.meters[2].faults.override = {"voltage_l1": 5000.0}  # profile range 0…300 V
    start = len(line.got)
    await asyncio.sleep(0.8)
    polls = [rs for rs in line.got[start:] if rs[0].device == "faulty"]
    assert polls
    last = {r.channel: r for r in polls[-1]}
    assert last["voltage_l1"].quality is Quality.UNCERTAIN
    assert last["voltage_l1"].reason == "out_of_range"
    assert last["voltage_l1"].value == pytest.approx(5000.0)  # nothing dropped
    assert all(r.quality is Quality.GOOD for c, r in last.items() if c != "voltage_l1")
    line.sim.meters[2].faults.override = {}
    await asyncio.sleep(0.6)
    last_poll = [rs for rs in line.got if rs[0].device == "faulty"][-1]
    assert all(r.quality is Quality.GOOD for r in last_poll)


async def test_a_stuck_meter_is_flagged_after_stuck_after_polls(line: Line) -> None:
    await asyncio.sleep(0.6)
    assert all(r.quality is Quality.GOOD for r in line.got[-1])
    line.sim.meters[1].faults.stuck = True
    start = len(line.got)
    await asyncio.sleep(1.3)
    polls = [rs for rs in line.got[start:] if rs[0].device == "steady"]
    assert len(polls) >= 4
    assert len({tuple(r.value for r in rs) for rs in polls}) == 1  # frozen
    assert all(r.quality is Quality.GOOD for r in polls[0])  # not yet: 2 identical polls
    assert all(r.quality is Quality.UNCERTAIN and r.reason == "stuck" for r in polls[-1])
    line.sim.meters[1].faults.stuck = False
    await asyncio.sleep(0.6)
    last = [rs for rs in line.got if rs[0].device == "steady"][-1]
    assert all(r.quality is Quality.GOOD for r in last)


async def test_garbage_on_the_line_before_replies_is_skipped(line: Line) -> None:
    line.sim.faults.garbage = b"\x00\xff\x13\x37noise"
    start = len(line.got)
    await asyncio.sleep(1.0)
    polls = line.got[start:]
    assert {rs[0].device for rs in polls} == {"steady", "faulty"}
    assert all(r.quality is Quality.GOOD for rs in polls for r in rs)
