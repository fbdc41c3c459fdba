"""Several simulated meters in one process, each on its own port.

:class:`MeterFleet` starts and stops them together; :func:`run_meters` is what
``daq simulate meter --profile sdm630 --port 5020 [--count N]`` runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from daq.config.profiles import Profile, load_modbus_profile, profile_dirs
from simulators.modbus_meter import ModbusMeterSimulator
from simulators.served import Served

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One meter of a fleet: which profile, where, and which seed drives its model.

    ``port=0`` picks a free port. ``name`` defaults to ``<profile>-<n>``, ``n`` counting the
    fleet's meters of that profile from 1.
    """

    profile_name: str
    port: int = 0
    unit_id: int = 1
    seed: int = 0
    name: str | None = None


class MeterFleet(Served):
    """Meters started and stopped together; ``fleet[name]`` is one simulator.

    Profiles are looked up in ``extra_profile_dirs`` first, then in the built-in ones
    (``daq/data/profiles``).
    """

    def __init__(self, specs: Iterable[MeterSpec], extra_profile_dirs: Iterable[Path] = ()) -> None:
        self.specs = list(specs)
        dirs = profile_dirs(extra_profile_dirs)
        profiles: dict[str, Profile] = {}
        counts: dict[str, int] = {}
        self.simulators: dict[str, ModbusMeterSimulator] = {}
        for spec in self.specs:
            if spec.profile_name not in profiles:
                profiles[spec.profile_name] = load_modbus_profile(spec.profile_name, dirs)
            counts[spec.profile_name] = counts.get(spec.profile_name, 0) + 1
            name = spec.name or f"{spec.profile_name}-{counts[spec.profile_name]}"
            if name in self.simulators:
                raise ValueError(f"two meters named {name!r}")
            self.simulators[name] = ModbusMeterSimulator(
                profiles[spec.profile_name],
                unit_id=spec.unit_id,
                seed=spec.seed,
                host=HOST,
                port=spec.port,
            )

    def __getitem__(self, name: str) -> ModbusMeterSimulator:
        return self.simulators[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.simulators)

    def __len__(self) -> int:
        return len(self.simulators)

    async def start(self) -> None:
        """Start every meter; if one cannot start, stop those already started and raise."""
        try:
            for sim in self.simulators.values():
                await sim.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for sim in self.simulators.values():
            await sim.stop()



async def serve_forever(
    specs: Iterable[MeterSpec], extra_profile_dirs: Iterable[Path] = ()
) -> None:
    """Serve the meters until cancelled, printing one line per meter once it listens."""
    async with MeterFleet(specs, extra_profile_dirs) as fleet:
        for sim in fleet.simulators.values():
            print(
                f"{sim.profile.id} meter on {sim.host}:{sim.port} (unit {sim.unit_id})", flush=True
            )
        await asyncio.Event().wait()


async def run_meters(
    profile: str, port: int, count: int = 1, unit_id: int = 1, seed: int = 0
) -> None:
    """Serve ``count`` meters of ``profile`` on ports ``port``, ``port + 1``, … until cancelled.

    Meter ``i`` (from 0) uses seed ``seed + i``, so the meters do not read alike.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    specs = [MeterSpec(profile, port + i if port else 0, unit_id, seed + i) for i in range(count)]
    await serve_forever(specs)
