"""GUM budget: distributions, Welch–Satterthwaite, coverage factors, per-reading helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibration import (
    Contribution,
    Distribution,
    UncertaintyError,
    combine,
    coverage_factor,
    drift_u,
    reading_uncertainty,
    rectangular_u,
    resolution_u,
    triangular_u,
    u_shaped_u,
    welch_satterthwaite,
)


def test_distribution_conversions() -> None:
    assert Contribution.rectangular("r", 0.3).standard_uncertainty == pytest.approx(0.3 / 3**0.5)
    assert Contribution.triangular("t", 0.3).standard_uncertainty == pytest.approx(0.3 / 6**0.5)
    assert Contribution.u_shaped("u", 0.3).standard_uncertainty == pytest.approx(0.3 / 2**0.5)
    assert Contribution.normal("n", 0.3, k=2).standard_uncertainty == pytest.approx(0.15)
    assert Contribution(
        "s", 0.2, Distribution("rectangular")
    ).standard_uncertainty == pytest.approx(0.2 / 3**0.5)
    assert Contribution.normal("c", 0.1, sensitivity=-3.0).u_y == pytest.approx(0.3)
    np.testing.assert_allclose(rectangular_u([0.3, 0.6]), np.array([0.3, 0.6]) / 3**0.5)
    np.testing.assert_allclose(triangular_u(0.6), 0.6 / 6**0.5)
    np.testing.assert_allclose(u_shaped_u(0.6), 0.6 / 2**0.5)


@pytest.mark.parametrize(
    ("dof", "k"),
    # two-sided 95 % Student's t (GUM Table G.2 and standard tables)
    [
        (1, 12.706),
        (2, 4.303),
        (3, 3.182),
        (5, 2.571),
        (9, 2.262),
        (10, 2.228),
        (20, 2.086),
        (30, 2.042),
        (100, 1.984),
        (math.inf, 1.960),
    ],
)
def test_coverage_factor_95(dof: float, k: float) -> None:
    assert coverage_factor(dof) == pytest.approx(k, abs=5e-4)


def test_coverage_factor_other_levels() -> None:
    assert coverage_factor(math.inf, 0.6827) == pytest.approx(1.0, abs=1e-4)
    assert coverage_factor(9, 0.9973) == pytest.approx(4.09, abs=5e-3)  # GUM Table G.2
    assert coverage_factor(4.5) == pytest.approx(2.65, abs=0.03)  # between ν = 4 and 5
    with pytest.raises(UncertaintyError):
        coverage_factor(0)


def test_welch_satterthwaite_hand_worked() -> None:
    # A: Type A u = 0.3 from 10 readings (ν = 9); B: rectangular ±0.4 (u = 0.2309, ν = ∞)
    # u_c² = 0.09 + 0.16/3 = 0.143333; ν_eff = u_c⁴/(0.3⁴/9) = 0.0205444/0.0009 = 22.83
    budget = combine(
        [Contribution.normal("repeatability", 0.3, dof=9), Contribution.rectangular("res", 0.4)]
    )
    assert budget.u_c == pytest.approx(math.sqrt(0.09 + 0.16 / 3))
    assert budget.dof_eff == pytest.approx(0.143333333**2 / (0.3**4 / 9), rel=1e-6)
    assert budget.dof_eff == pytest.approx(22.83, abs=0.01)
    assert budget.k == pytest.approx(2.074, abs=5e-4)  # t at ν = 22 (GUM G.6.4 truncation)
    assert budget.expanded == pytest.approx(budget.k * budget.u_c)
    assert budget.shares == pytest.approx((0.09 / 0.1433333, (0.16 / 3) / 0.1433333))
    assert sum(budget.shares) == pytest.approx(1.0)
    assert budget.share_of("res") == budget.shares[1]


def test_only_type_a_with_nine_dof_gives_k_2_262() -> None:
    budget = combine([Contribution.normal("a", 0.01, dof=9)])
    assert budget.dof_eff == pytest.approx(9)
    assert budget.k == pytest.approx(2.262, abs=5e-4)


def test_all_infinite_dof_gives_k_1_96() -> None:
    budget = combine([Contribution.normal("cal", 0.02, k=2), Contribution.triangular("t", 0.01)])
    assert math.isinf(budget.dof_eff)
    assert budget.k == pytest.approx(1.95996, abs=1e-5)


def test_equal_contributions_dof_adds_up() -> None:
    # two equal contributions with ν = 9 each: ν_eff = (2u²)²/(2u⁴/9) = 18
    assert welch_satterthwaite([1.0, 1.0], [9, 9]) == pytest.approx(18.0)


def test_invalid_contributions() -> None:
    with pytest.raises(UncertaintyError):
        Contribution.normal("neg", -1.0)
    with pytest.raises(UncertaintyError):
        Contribution.normal("dof", 1.0, dof=0)
    with pytest.raises(UncertaintyError):
        combine([])
    with pytest.raises(UncertaintyError):
        combine([Contribution.normal("a", 1.0), Contribution.normal("a", 2.0)])


def test_per_reading_helpers() -> None:
    assert float(resolution_u(0.01)) == pytest.approx(0.005 / 3**0.5)
    np.testing.assert_allclose(drift_u(-0.02, [0.0, 0.5, 1.0]), [0.0, 0.01 / 3**0.5, 0.02 / 3**0.5])
    u = reading_uncertainty(np.array([0.03, 0.04]), 0.0, np.array([0.04, 0.03]), 0.0)
    np.testing.assert_allclose(u, [0.05, 0.05])


@given(
    st.lists(
        st.tuples(*(st.floats(0.0, 1e3, allow_nan=False) for _ in range(4))),
        min_size=1,
        max_size=30,
    )
)
def test_reading_uncertainty_is_elementwise_rss(rows: list[tuple[float, ...]]) -> None:
    a = np.array(rows)
    vec = reading_uncertainty(a[:, 0], a[:, 1], a[:, 2], a[:, 3])
    scalar = [float(reading_uncertainty(*row)) for row in rows]
    np.testing.assert_allclose(vec, scalar, rtol=1e-12)
    np.testing.assert_allclose(vec, np.sqrt((a**2).sum(axis=1)), rtol=1e-12)
