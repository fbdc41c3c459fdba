"""The three-phase load model: plausible, deterministic, and its energy integrates its power."""

from __future__ import annotations

import itertools
import math

import pytest

from simulators.meter import CHANNELS, ThreePhaseLoad

T0 = 1_700_000_000_000_000_000  # some wall-clock instant, ns
S = 1_000_000_000


def run(model: ThreePhaseLoad, times_s: list[float]) -> list[dict[str, float]]:
    return [model.values_at(T0 + round(t * S)) for t in times_s]


def test_every_channel_is_produced() -> None:
    values = ThreePhaseLoad(seed=1).values_at(T0)
    assert set(values) == set(CHANNELS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())


@pytest.mark.parametrize("seed", [0, 1, 42, 2024])
def test_values_stay_plausible(seed: int) -> None:
    model = ThreePhaseLoad(seed)
    for v in run(model, [0.25 * k for k in range(8000)]):  # 2000 s, over three "days"
        for n in (1, 2, 3):
            volts, amps, watts = v[f"voltage_l{n}"], v[f"current_l{n}"], v[f"power_l{n}"]
            assert 220.0 < volts < 240.0
            assert 0.0 < amps < 80.0
            assert 0.85 * volts * amps - 1e-9 <= watts <= 0.99 * volts * amps + 1e-9
        total = v["power_l1"] + v["power_l2"] + v["power_l3"]
        assert v["power_total"] == pytest.approx(total, rel=1e-12)
        assert 0.85 <= v["power_factor"] <= 0.99
        assert 49.95 <= v["frequency"] <= 50.05
        assert v["energy_export"] == model.export_kwh
        assert 0.0 <= v["energy_export"] < 20.0


def test_load_follows_a_curve_with_unbalanced_phases() -> None:
    values = run(ThreePhaseLoad(seed=3), [float(t) for t in range(1200)])
    currents = [v["current_l1"] for v in values]
    assert max(currents) > 1.3 * min(currents)  # the compressed day is visible
    steps = [abs(b - a) for a, b in itertools.pairwise(currents)]
    assert max(steps) < 0.1 * max(currents)  # smooth: no jumps between seconds
    mean = [sum(v[f"current_l{n}"] for v in values) / len(values) for n in (1, 2, 3)]
    assert len({round(m, 3) for m in mean}) == 3  # the phases differ


def test_energy_starts_from_a_plausible_counter() -> None:
    model = ThreePhaseLoad(seed=7)
    first = model.values_at(T0)["energy_import"]
    assert first == model.initial_import_kwh
    assert 1_000.0 <= first <= 50_000.0
    assert round(first, 1) == first
    assert ThreePhaseLoad(seed=8).initial_import_kwh != first


def test_energy_is_the_trapezoidal_integral_of_power() -> None:
    model = ThreePhaseLoad(seed=5)
    times = [0.0, 0.5, 1.7, 2.0, 9.3, 60.0, 61.0, 300.0]
    values = run(model, times)
    expected = values[0]["energy_import"]
    for k in range(1, len(times)):
        mean_power_w = (values[k - 1]["power_total"] + values[k]["power_total"]) / 2
        expected += mean_power_w * (times[k] - times[k - 1]) / 3.6e6
        assert values[k]["energy_import"] == pytest.approx(expected, rel=1e-12)
        assert values[k]["energy_import"] > values[k - 1]["energy_import"]


def test_energy_approximates_the_true_integral() -> None:
    """Coarse and fine sampling of the same load accumulate nearly the same energy."""
    coarse = run(ThreePhaseLoad(seed=9), [float(t) for t in range(0, 121, 5)])
    fine = run(ThreePhaseLoad(seed=9), [t / 10 for t in range(1201)])
    used_coarse = coarse[-1]["energy_import"] - coarse[0]["energy_import"]
    used_fine = fine[-1]["energy_import"] - fine[0]["energy_import"]
    assert used_fine > 0.1  # kWh in two minutes of a few kW
    assert used_coarse == pytest.approx(used_fine, rel=2e-3)
    mean_power_w = sum(v["power_total"] for v in fine) / len(fine)
    assert used_fine == pytest.approx(mean_power_w * 120 / 3.6e6, rel=1e-2)


def test_energy_never_decreases() -> None:
    model = ThreePhaseLoad(seed=11)
    energies = [v["energy_import"] for v in run(model, [0.01 * k for k in range(5000)])]
    assert all(b > a for a, b in itertools.pairwise(energies))


def test_same_time_twice_adds_nothing() -> None:
    model = ThreePhaseLoad(seed=2)
    model.values_at(T0)
    first = model.values_at(T0 + 10 * S)
    assert model.values_at(T0 + 10 * S) == first


def test_time_must_not_go_backwards() -> None:
    model = ThreePhaseLoad(seed=2)
    model.values_at(T0 + S)
    with pytest.raises(ValueError):
        model.values_at(T0)


def test_same_seed_same_values() -> None:
    times = [0.1 * k for k in range(500)]
    assert run(ThreePhaseLoad(seed=4), times) == run(ThreePhaseLoad(seed=4), times)
    assert run(ThreePhaseLoad(seed=4), times) != run(ThreePhaseLoad(seed=5), times)


def test_values_other_than_energy_do_not_depend_on_the_calling_pattern() -> None:
    often, rarely = ThreePhaseLoad(seed=6), ThreePhaseLoad(seed=6)
    run(often, [0.1 * k for k in range(1000)])
    run(rarely, [0.0, 37.0])
    a, b = often.values_at(T0 + 100 * S), rarely.values_at(T0 + 100 * S)
    del a["energy_import"], b["energy_import"]
    assert a == b


def test_start_ns_anchors_the_curve() -> None:
    anchored = ThreePhaseLoad(seed=1, start_ns=T0)
    lazy = ThreePhaseLoad(seed=1)
    lazy.values_at(T0)
    at = T0 + 50 * S
    assert anchored.values_at(at)["current_l2"] == lazy.values_at(at)["current_l2"]
