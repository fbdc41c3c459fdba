"""Drift from calibration history: a simulated 10 V instrument drifting +2 mV per 30 days
(gain drift: +1 mV per 30 days at 5 V, none at 0 V), certificates every 60 days with noise
and U → fitted rate, predicted out-of-tolerance date and intervals against the truth."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from calibration.drift import (
    DriftError,
    analyse,
    fit,
    mpe_at,
    reaction_interval,
    reliability,
)
from calibration.records import Certificate, Instrument
from simulators.drift import certificate_history

START = dt.date(2024, 1, 1)
RATE = 0.002 / 30          # V per day at 10 V
U = 0.0006                 # expanded uncertainty of each as-found error, k = 2
SIGMA = 0.0003             # scatter of the as-found errors (= U/k)
MPE_10V = 0.03             # 0.2 % of reading + 0.1 % of range at 10 V
# the true date when |error| + U reaches the MPE at 10 V
TRUE_OOT = START + dt.timedelta(days=(MPE_10V - U) / RATE)


def dvm(**accuracy: float | str) -> Instrument:
    return Instrument.model_validate({
        "id": "dvm", "maker": "m", "model": "x", "serial": "1", "quantity": "voltage",
        "unit": "V", "range": {"min": -10.0, "max": 10.0}, "resolution": 1.0e-6,
        "accuracy": accuracy or {"a_pct_reading": 0.2, "b_pct_range": 0.1}, "owner": "lab",
        "location": "bench", "role": "working", "mandatory_verification": False})


def history(seed: int, count: int = 6, every: int = 60, rates: tuple[float, ...] = (
        0.0, RATE / 2, RATE), sigma: float = SIGMA) -> list[Certificate]:
    return [Certificate.model_validate(c) for c in certificate_history(
        "dvm", START, every, count, [0.0, 5.0, 10.0], list(rates), sigma=sigma, U=U,
        seed=seed)]


@pytest.mark.parametrize("seed", range(5))
def test_fitted_rate_and_out_of_tolerance_date(seed: int) -> None:
    report = analyse(dvm(), history(seed))
    p10 = report.points[-1]
    assert p10.nominal == 10.0
    assert p10.mpe == pytest.approx(MPE_10V)
    assert p10.degree == 1
    # the fitted rate is within its expanded uncertainty of the truth
    assert abs(p10.rate_per_day - RATE) <= 2 * p10.u_rate_per_day
    assert p10.u_rate_per_day < 0.05 * RATE
    # the predicted date is within a few days of the true one, and the early date is not later
    assert abs((p10.predicted_oot - TRUE_OOT).days) <= 10  # type: ignore[operator]
    assert p10.oot_early is not None
    assert p10.oot_early <= TRUE_OOT
    assert report.predicted_oot == p10.predicted_oot  # 10 V goes first
    # drift-based interval: ends before the predicted error reaches the MPE; reliability at
    # its end is ≥ 90 % and the day after < 90 %
    last = report.last_calibration
    assert last == START + dt.timedelta(days=300)
    days = report.drift_based.days
    assert days is not None
    end = last + dt.timedelta(days=days)
    offset = (last - p10.t0).days
    r = reliability(p10, [offset + days, offset + days + 1])
    assert r[0] >= 0.90 > r[1]
    mean_at_end, _ = p10.predict([offset + days])
    assert abs(mean_at_end[0]) < MPE_10V
    assert end <= TRUE_OOT + dt.timedelta(days=15)
    assert abs((end - p10.predicted_oot).days) <= 15  # type: ignore[operator]
    # the simple reaction method keeps the year (0.5 < (|e| + U)/MPE ≤ 0.8 at the last one)
    assert report.reaction.days == 365
    assert report.recommended_days == days


def test_points_without_history_or_mpe_are_skipped() -> None:
    report = analyse(dvm(**{"class": "0.5"}), history(0))
    # a class is a relative error: MPE 0 at 0 V
    assert [p.nominal for p in report.points] == [5.0, 10.0]
    assert report.skipped == ("0: MPE is 0 there",)
    assert mpe_at(dvm(**{"class": "0.5"}), 10.0) == pytest.approx(0.05)


def test_no_drift_gives_long_intervals() -> None:
    report = analyse(dvm(), history(1, count=8, rates=(0.0, 0.0, 0.0)))
    assert all(p.predicted_oot is None for p in report.points)
    assert report.reaction.days == round(365 * 1.25)
    assert report.drift_based.days is not None
    assert report.drift_based.days > 5 * 365


def test_quadratic_only_when_supported() -> None:
    # accelerating drift: error = c·t², strong enough for the F-test
    certs = []
    for c in history(2, count=10, rates=(0.0, 0.0, 0.0)):
        t = (c.calibration_date - START).days
        pts = [p.model_copy(update={"error": p.error + 2.0e-7 * t * t}) for p in c.points]
        certs.append(c.model_copy(update={"points": pts}))
    report = analyse(dvm(), certs)
    assert [p.degree for p in report.points] == [2, 2, 2]
    assert all(p.quadratic_t is not None and p.quadratic_t > 3 for p in report.points)
    # the linear history of the same length keeps degree 1
    assert [p.degree for p in analyse(dvm(), history(2, count=10)).points] == [1, 1, 1]


def test_out_of_tolerance_history_halves_the_interval() -> None:
    report = analyse(dvm(), history(3, count=8, every=90))  # 630 days: way past the MPE
    assert report.reaction.days == round(365 * 0.5)
    assert "out of tolerance" in report.reaction.reason
    assert report.drift_based.days is None
    assert report.recommended_days == 182
    assert reaction_interval(report.points, 100).days == 50


def test_weighted_fit_matches_numpy_polyfit() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(8) * 45.0
    u = rng.uniform(0.5, 2.0, 8)
    y = 3.0 + 0.02 * t + rng.normal(0, u)
    beta, cov, dof, birge = fit(t, y, u, 1)
    ref, ref_cov = np.polyfit(t, y, 1, w=1 / u, cov="unscaled")
    assert beta[::-1] == pytest.approx(ref, rel=1e-9)
    assert cov[::-1, ::-1] == pytest.approx(ref_cov * max(1.0, birge**2), rel=1e-9)
    assert dof == 6


def test_errors() -> None:
    with pytest.raises(DriftError, match="at least 2"):
        analyse(dvm(), history(0, count=1))
    with pytest.raises(DriftError, match="reliability target"):
        analyse(dvm(), history(0), reliability_target=1.0)


def test_the_current_interval_is_the_instruments_recall_interval_when_set() -> None:
    assert analyse(dvm(), history(3, count=8, every=90)).current_interval_days == 365
    owned = dvm().model_copy(update={"recall_interval_days": 120})
    report = analyse(owned, history(3, count=8, every=90))
    assert report.current_interval_days == 120
    assert report.reaction.days == 60  # out of tolerance: half of the current interval
