"""Physical models of the simulated text instruments: known truth in, known errors out."""

from __future__ import annotations

import pytest

from simulators.instruments import (
    InstrumentModel,
    MtSicsBalanceSimulator,
    PrtReadoutSimulator,
    TextFaults,
    callendar_van_dusen,
)


@pytest.mark.parametrize(("t", "ohms"), [(100.0, 138.5055), (-100.0, 60.2558), (0.0, 100.0)])
def test_callendar_van_dusen_check_values(t: float, ohms: float) -> None:
    assert callendar_van_dusen(t) == pytest.approx(ohms, abs=5e-5)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_instrument_error_terms() -> None:
    clock = FakeClock()
    m = InstrumentModel(10.0, "V", offset=0.001, gain=1e-4, nonlinearity=1e-5,
                        drift_per_day=2e-4, decimals=6, clock=clock)
    assert m.indication() == pytest.approx(10.0 * 1.0001 + 0.001 + 1e-3)
    clock.t += 86400 * 2
    assert m.indication() == pytest.approx(10.0 * 1.0001 + 0.001 + 1e-3 + 4e-4)
    shown = m.reading()
    assert m.truth().displayed == shown == round(m.indication(), 6)
    assert m.truth().true_value == 10.0


def test_resolution_and_seeded_noise() -> None:
    a = InstrumentModel(1.0, "V", noise=1e-3, decimals=3, seed=7)
    b = InstrumentModel(1.0, "V", noise=1e-3, decimals=3, seed=7)
    ra = [a.reading() for _ in range(20)]
    assert ra == [b.reading() for _ in range(20)]
    assert all(round(x, 3) == x for x in ra)
    assert len(set(ra)) > 1
    assert InstrumentModel(1.0, "V", noise=0.0, decimals=1).reading() == 1.0


def test_prt_truth_follows_temperature() -> None:
    sim = PrtReadoutSimulator(100.0)
    assert sim.model.true_value == pytest.approx(138.5055, abs=5e-5)
    sim.set_temperature(-100.0)
    assert sim.truth().true_value == pytest.approx(60.2558, abs=5e-5)


async def test_balance_settles_and_overloads() -> None:
    clock = FakeClock()
    sim = MtSicsBalanceSimulator(InstrumentModel(0.0, "g", decimals=2, clock=clock),
                                 capacity=200.0, settling_s=1.0)
    sim.set_load(100.0)
    clock.t += 0.5
    assert await sim.respond("SI") == "S D      50.00 g"
    clock.t += 0.5
    assert await sim.respond("SI") == "S S     100.00 g"
    assert sim.truth().displayed == 100.0
    sim.set_load(250.0)
    assert await sim.respond("SI") == "S +"
    sim.set_load(-5.0)
    assert await sim.respond("SI") == "S -"
    assert await sim.respond("XYZ") == "ES"


def test_faults_clear() -> None:
    f = TextFaults(no_reply=True, late_reply_s=1.0, stuck=True)
    f.clear()
    assert f == TextFaults()
