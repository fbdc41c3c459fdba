"""Serial-bus rows: read coalescing per profile, and RS-485 utilisation at 9600 baud.

Utilisation: an :class:`~drivers.modbus.rtu.RtuReader` reads as fast as it can from an
:class:`~simulators.modbus_rtu.RtuBusSimulator` on a pseudo-terminal that delays each reply
by the true wire time of request and reply at 9600 8E1. The wire-time limit per
transaction is (request + reply bytes) × 11 bits / 9600 + the 3.5-character silence; the row
gives achieved transactions/s as a fraction of that limit (the issue's target: ≥ 0.9).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from daq.config.profiles import load_modbus_profile
from drivers.modbus.plan import plan_reads
from drivers.modbus.rtu import RtuReader
from drivers.transport import SerialSettings
from simulators.modbus_meter import ModbusMeterSimulator
from simulators.modbus_rtu import RtuBusSimulator

BAUD = 9600


@dataclass(frozen=True)
class CoalescingRow:
    profile: str
    requests: int  # with the default max_gap (16)
    minimum: int  # fewest possible: any gap bridged, 125 registers per request
    registers_read: int
    registers_used: int


@dataclass(frozen=True)
class UtilisationRow:
    registers: int
    transactions_per_s: float
    limit_per_s: float

    @property
    def utilisation(self) -> float:
        return self.transactions_per_s / self.limit_per_s


def coalescing(profiles: tuple[str, ...] = ("sdm630", "dtsu666")) -> list[CoalescingRow]:
    rows = []
    for name in profiles:
        p = load_modbus_profile(name)
        plans = plan_reads(p.channels, 16, 125)
        rows.append(CoalescingRow(name, len(plans), len(plan_reads(p.channels, 125, 125)),
                                  sum(pl.count for pl in plans),
                                  sum(ch.count for ch in p.channels)))
    return rows


async def _utilisation(registers: int, seconds: float) -> UtilisationRow:
    line = SerialSettings("(simulated)", BAUD, 8, "E", 1)
    meter = ModbusMeterSimulator(load_modbus_profile("sdm630"), unit_id=1)
    async with RtuBusSimulator({1: meter}, wire_settings=line) as sim:
        reader = RtuReader(SerialSettings(sim.path, BAUD, 8, "E", 1), timeout_s=2.0)
        try:
            await reader.read_registers(1, 4, 0, registers)  # open and warm up
            n = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                await reader.read_registers(1, 4, 0, registers)
                n += 1
            elapsed = time.perf_counter() - t0
        finally:
            await reader.close()
    per_tx = line.wire_time_s(8 + 5 + 2 * registers) + line.modbus_silence_s()
    return UtilisationRow(registers, n / elapsed, 1 / per_tx)


def run_bus(seconds: float = 5.0) -> tuple[list[CoalescingRow], list[UtilisationRow]]:
    async def both() -> list[UtilisationRow]:
        return [await _utilisation(2, seconds), await _utilisation(60, seconds)]

    return coalescing(), asyncio.run(both())
