"""ILAC-G8:09/2019 decision rules and non-binary statements; coverage factors of sessions."""

from __future__ import annotations

import math

import pytest

from calibration.decision import DecisionError, Rule, Zone, accept, decide, tur, zone
from calibration.session import COVERAGE
from calibration.uncertainty import coverage_factor

MPE = 0.003  # mm
U = 0.001  # mm


@pytest.mark.parametrize(("error", "expected"), [
    (0.0017, Zone.PASS),
    (0.0025, Zone.CONDITIONAL_PASS),
    (0.0035, Zone.CONDITIONAL_FAIL),
    (0.0045, Zone.FAIL),
    (-0.0017, Zone.PASS),
    (-0.0025, Zone.CONDITIONAL_PASS),
    (-0.0035, Zone.CONDITIONAL_FAIL),
    (-0.0045, Zone.FAIL),
])
def test_issue_four_zones(error: float, expected: Zone) -> None:
    assert zone(error, U, MPE) is expected


@pytest.mark.parametrize(("error", "simple", "guarded"), [
    (0.0017, True, True),
    (0.0025, True, False),
    (0.0035, False, False),
    (0.0045, False, False),
])
def test_issue_simple_and_guarded_acceptance(error: float, simple: bool, guarded: bool) -> None:
    assert accept(error, U, MPE, Rule.SIMPLE) is simple
    assert accept(error, U, MPE, Rule.GUARDED) is guarded


def test_zone_boundaries_written_in_decimal_hold() -> None:
    assert zone(0.002, 0.001, 0.003) is Zone.PASS  # |e| + U = MPE exactly
    assert zone(0.003, 0.001, 0.003) is Zone.CONDITIONAL_PASS  # |e| = MPE
    assert zone(0.004, 0.001, 0.003) is Zone.FAIL  # |e| − U = MPE
    assert accept(0.002, 0.001, 0.003, Rule.GUARDED)  # on the acceptance limit


def test_decide_reports_limit_and_tur() -> None:
    d = decide(0.0017, U, MPE, "guarded")
    assert d.acceptance_limit == pytest.approx(0.002)
    assert d.accepted
    assert d.verdict == "pass"
    assert d.tur == pytest.approx(3.0)  # span 0.006 / (2·0.001)
    assert tur(0.0, MPE) == math.inf


@pytest.mark.parametrize(("e", "u", "mpe"), [(math.nan, U, MPE), (0.0, -1.0, MPE),
                                              (0.0, U, 0.0), (0.0, U, math.inf)])
def test_bad_inputs_are_typed_errors(e: float, u: float, mpe: float) -> None:
    with pytest.raises(DecisionError):
        zone(e, u, mpe)


def test_coverage_factor_convention() -> None:
    # sessions state U at 95 % two-sided Student's t (not the k = 2 / 95.45 % convention)
    assert COVERAGE == 0.95
    assert round(coverage_factor(3, COVERAGE), 3) == 3.182
    assert round(coverage_factor(math.inf, COVERAGE), 3) == 1.960
    # the 95.45 % convention gives k = 2.000 at ν = ∞
    assert round(coverage_factor(math.inf, 0.9545), 3) == 2.000
