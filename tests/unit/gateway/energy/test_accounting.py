"""Energy accounting: intervals from cumulative registers (rollover, replacement, gaps,
completeness) and the standard-coal conversion, on hand-computed examples."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from daq.config.yamlsrc import SourceErrors, load_yaml
from gateway.energy.accounting import (
    KGCE_MJ,
    EnergyRules,
    IntervalStatus,
    Replacement,
    Sample,
    account,
    boundaries,
    parse_coefficients,
    tce,
)

NS = 1_000_000_000
REPO = Path(__file__).resolve().parents[4]
T0 = int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()) * NS  # a UTC midnight
MIN = 60 * NS
Q = 15 * MIN


def ramp(start_kwh: float, kw: float, minutes: range, step_min: int = 1) -> list[Sample]:
    """Samples every ``step_min`` minutes of a constant load ``kw`` from ``start_kwh``."""
    return [Sample(T0 + m * MIN, start_kwh + kw * m / 60) for m in minutes[::step_min]]


def test_constant_load_gives_its_energy_in_every_quarter_hour() -> None:
    samples = ramp(1000.0, 12.0, range(61))
    series = account(samples, [T0 + i * Q for i in range(5)])
    assert [i.status for i in series.intervals] == [IntervalStatus.MEASURED] * 4
    for i in series.intervals:
        assert i.kwh == pytest.approx(3.0, abs=1e-9)  # 12 kW × 0.25 h
    assert series.completeness == 1.0
    assert series.register_kwh == pytest.approx(12.0)


def test_rollover_at_999999_99_kwh() -> None:
    rules = EnergyRules(register_max=999_999.99, resolution=0.01)
    # 40 kW: 10 kWh per quarter hour; the register wraps at minute 9
    start = 999_999.99 - 6.0
    samples = [Sample(s.ts_ns, round(s.value % 1_000_000.0, 2))
               for s in ramp(start, 40.0, range(31))]
    assert any(s.value < 10 for s in samples)  # it did wrap
    series = account(samples, [T0, T0 + Q, T0 + 2 * Q], rules)
    assert series.rollovers == 1
    assert series.replacements == 0
    assert [i.status for i in series.intervals] == [IntervalStatus.MEASURED] * 2
    assert series.intervals[0].kwh == pytest.approx(10.0, abs=0.011)
    assert series.intervals[1].kwh == pytest.approx(10.0, abs=0.011)


def test_a_drop_far_from_the_top_is_a_replacement_not_a_rollover() -> None:
    rules = EnergyRules(register_max=999_999.99)
    old = ramp(52_000.0, 12.0, range(20))  # old meter until minute 19
    new = [Sample(s.ts_ns, s.value - 52_000.0 + 3.0)  # new meter from 3 kWh at minute 21
           for s in ramp(52_000.0, 12.0, range(21, 61))]
    series = account(old + new, [T0 + i * Q for i in range(5)], rules)
    assert series.rollovers == 0
    assert series.replacements == 1
    statuses = [i.status for i in series.intervals]
    # the quarter with the exchange has no known energy: nothing invented across it
    assert statuses == [IntervalStatus.MEASURED, IntervalStatus.MISSING,
                        IntervalStatus.MEASURED, IntervalStatus.MEASURED]
    assert series.intervals[1].kwh is None
    assert "replaced" in series.intervals[1].note
    assert series.intervals[2].kwh == pytest.approx(3.0)
    assert series.completeness == 0.75


def test_replacement_event_bridges_the_exchange() -> None:
    old = ramp(52_000.0, 12.0, range(20))
    # exchange at minute 20: old meter showed 52 004.0, new one starts at 3.0
    new = [Sample(T0 + m * MIN, 3.0 + 12.0 * (m - 20) / 60) for m in range(21, 61)]
    event = Replacement(T0 + 20 * MIN, old_final=52_004.0, new_initial=3.0)
    series = account(old + new, [T0 + i * Q for i in range(5)], EnergyRules(), [event])
    assert series.replacements == 1
    assert all(i.status is IntervalStatus.MEASURED for i in series.intervals)
    for i in series.intervals:
        assert i.kwh == pytest.approx(3.0)


def test_one_hour_gap_is_interpolated_and_flagged_within_the_limit() -> None:
    # samples every minute, none from 00:30 (exclusive) to 01:30 (exclusive)
    samples = ramp(500.0, 8.0, range(31)) + ramp(500.0, 8.0, range(90, 121))
    edges = [T0 + i * Q for i in range(9)]  # 00:00 … 02:00
    series = account(samples, edges, EnergyRules(max_interpolate_s=3600.0))
    statuses = [i.status for i in series.intervals]
    assert statuses == [IntervalStatus.MEASURED] * 2 + [IntervalStatus.INTERPOLATED] * 4 \
        + [IntervalStatus.MEASURED] * 2
    for i in series.intervals:  # constant load: interpolation is exact here
        assert i.kwh == pytest.approx(2.0)
    assert "gap" in series.intervals[3].note
    assert series.completeness == 0.5
    # the register saw the whole hour's energy anyway
    assert series.register_kwh == pytest.approx(16.0)


def test_one_hour_gap_beyond_the_limit_is_missing_not_invented() -> None:
    samples = ramp(500.0, 8.0, range(31)) + ramp(500.0, 8.0, range(90, 121))
    edges = [T0 + i * Q for i in range(9)]
    series = account(samples, edges, EnergyRules(max_interpolate_s=1800.0))
    statuses = [i.status for i in series.intervals]
    assert statuses == [IntervalStatus.MEASURED] * 2 + [IntervalStatus.MISSING] * 4 \
        + [IntervalStatus.MEASURED] * 2
    assert all(i.kwh is None for i in series.intervals[2:6])
    assert series.allocated_kwh == pytest.approx(8.0)
    assert series.register_kwh == pytest.approx(16.0)


def test_intervals_outside_the_data_are_missing_and_lower_completeness() -> None:
    samples = ramp(10.0, 4.0, range(46))  # 00:00 … 00:45
    series = account(samples, [T0 + i * Q for i in range(5)])
    assert [i.status for i in series.intervals] == [IntervalStatus.MEASURED] * 3 \
        + [IntervalStatus.MISSING]
    assert series.expected == 4
    assert series.received == 3
    assert series.completeness == 0.75


def test_sparse_sampling_makes_intervals_interpolated_not_measured() -> None:
    samples = ramp(10.0, 4.0, range(61), step_min=20)  # every 20 min, interval 15 min
    series = account(samples, [T0 + i * Q for i in range(5)])
    assert IntervalStatus.INTERPOLATED in {i.status for i in series.intervals}
    assert series.allocated_kwh == pytest.approx(4.0)


def test_boundaries_in_china_standard_time_and_utc() -> None:
    start = T0 + 5 * 3600 * NS  # 05:00 UTC = 13:00 CST
    days = boundaries(start, start + 1, 86_400, "Asia/Shanghai")
    # CST midnight of 2 March = 16:00 UTC of 1 March
    assert days[0] == T0 - 8 * 3600 * NS
    assert days[1] == T0 + 16 * 3600 * NS
    quarters = boundaries(start + 7 * MIN, start + 40 * MIN, 900, "UTC")
    assert quarters == [start + i * Q for i in range(4)]
    with pytest.raises(ValueError):
        boundaries(start, start + 1, 7 * 60 + 1)


def test_boundaries_of_a_dst_day_are_23_hours_apart() -> None:
    t = int(dt.datetime(2026, 3, 29, 12, tzinfo=dt.UTC).timestamp()) * NS
    days = boundaries(t, t + 1, 86_400, "Europe/Berlin")
    assert days[1] - days[0] == 23 * 3600 * NS
    hours = boundaries(days[0], days[1], 3600, "Europe/Berlin")
    assert len(hours) - 1 == 23


def test_coefficients_file_and_coal_conversion() -> None:
    coeffs = parse_coefficients(load_yaml(REPO / "daq" / "data" / "energy-coefficients.yaml"))
    el = coeffs["electricity"]
    assert el.kgce_per_unit == 0.1229
    assert el.confirmed
    assert "GB/T 2589-2020" in el.source
    # the calorific equivalent follows from 3.6 MJ/kWh and 29.3076 MJ/kgce
    assert round(3.6 / KGCE_MJ, 4) == 0.1228  # the standard rounds this to 0.1229
    assert abs(3.6 / KGCE_MJ - el.kgce_per_unit) < 1e-4
    assert coeffs["heat"].kgce_per_unit == pytest.approx(1 / KGCE_MJ, abs=1e-5)
    # 10 000 kWh → 1 229 kgce = 1.229 tce
    assert tce(10_000.0, el) == pytest.approx(1.229)
    assert all(c.source for c in coeffs.values())
    assert {c.energy for c in coeffs.values() if not c.confirmed} >= {"raw_coal", "natural_gas"}


def test_coefficient_errors_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("coefficients:\n  - energy: electricity\n    unit: kWh\n"
                 "    kgce_per_unit: -1\n    basis: x\n    source: y\n    confirmed: true\n")
    with pytest.raises(SourceErrors) as exc:
        parse_coefficients(load_yaml(f))
    assert f"{f}:4: coefficients[0].kgce_per_unit: must be a positive number" in str(exc.value)


def test_nan_samples_are_ignored_and_bad_edges_refused() -> None:
    samples = [*ramp(1.0, 4.0, range(16)), Sample(T0 + 5 * MIN + 1, math.nan)]
    series = account(samples, [T0, T0 + Q])
    assert series.intervals[0].kwh == pytest.approx(1.0)
    with pytest.raises(ValueError):
        account(samples, [T0])


def _series(ent: str, kwh: list[float | None], level: str | None = None) -> dict[str, object]:
    return {"enterprise": ent, "measurement_level": level,
            "intervals": [{"kwh": k} for k in kwh], "expected": len(kwh),
            "received": sum(k is not None for k in kwh),
            "allocated_kwh": sum(k or 0.0 for k in kwh), "register_kwh": sum(k or 0.0 for k in kwh)}


def test_enterprise_totals_sum_boundary_meters_only_when_known() -> None:
    from gateway.energy.accounting import enterprise_totals

    incomer = _series("steel", [10.0, 12.0], "enterprise_boundary")
    furnace = _series("steel", [6.0, None], "main_equipment")  # behind the incomer
    other_a = _series("paper", [1.0, 2.0])
    other_b = _series("paper", [3.0, None])
    totals = enterprise_totals([incomer, furnace, other_a, other_b], 2)
    steel, paper = totals["steel"], totals["paper"]
    assert steel["intervals"] == [10.0, 12.0]  # not 16 and 12: the furnace is inside
    assert (steel["meters"], steel["meters_all"], steel["allocated_kwh"]) == (1, 2, 22.0)
    assert steel["completeness"] == 1.0
    assert steel["basis"] == "enterprise boundary meters"
    assert (incomer["in_total"], furnace["in_total"]) == (True, False)
    assert paper["intervals"] == [4.0, 2.0]
    assert paper["missing_intervals"] == [0, 1]
    assert paper["completeness"] == 0.75
    assert paper["basis"].startswith("all meters")
