"""The per-reading calibration path: corrected values, u, k — checked element by element
against the budget path (``combine`` of named contributions), which is checked against
GUM's worked examples elsewhere."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from calibration.apply import calibration_of, k95
from calibration.chain import Records
from calibration.models import GainOffset, ModelError
from calibration.uncertainty import Contribution, combine, coverage_factor
from simulators.instruments import InstrumentModel
from simulators.lab import REF_CERT, calibrate, chain

TODAY = dt.date(2026, 11, 25)


def records_with(extra: dict[str, object], model: GainOffset | None = None,
                 **chain_kw: int) -> Records:
    sim = InstrumentModel(0.0, "V", offset=2e-3, gain=-1e-4, noise=2e-5, decimals=6, seed=3)
    fitted, points = calibrate(sim)
    rs = chain(TODAY, {"dmm": (model or fitted, points)}, instrument_extra={"dmm": extra},
               **chain_kw)
    return Records.of(rs.instruments, rs.certificates)


def test_k95_matches_student_t_and_truncates() -> None:
    ks = k95([3, 3.9, math.inf, 1e9, 0.5])
    assert ks[0] == pytest.approx(3.182, abs=5e-4)
    assert ks[1] == ks[0]  # ν_eff truncated to the integer below (GUM G.6.4)
    assert ks[2] == pytest.approx(1.960, abs=5e-4)
    assert ks[3] == pytest.approx(ks[2], abs=1e-8)
    assert ks[4] == pytest.approx(coverage_factor(1.0))  # ν < 1 taken as 1
    nus = np.array([1, 2, 7, 30, 199, 200, 201, 350, 1000, 12345, 1e6, 1e9])
    exact = [coverage_factor(float(n)) for n in nus]
    # table up to ν = 200, then the series; coverage_factor itself returns z above ν = 1e7
    np.testing.assert_allclose(k95(nus), exact, rtol=0, atol=3e-9)


def test_correction_and_uncertainty_equal_the_budget_path() -> None:
    recs = records_with({"repeatability": 3e-5, "repeatability_dof": 9,
                         "drift_per_year": 4e-5})
    cal = calibration_of(recs, "dmm", TODAY)
    assert cal.usable
    assert not cal.problems
    assert not cal.expired
    model = cal.model
    assert isinstance(model, GainOffset)
    x = np.array([-9.7, -1.0, 0.0, 3.3, 9.9])
    out = cal.correct(x, 30.0)
    assert out.in_range.all()
    np.testing.assert_allclose(out.value, x + model.c0 + model.c1 * x, rtol=0, atol=1e-15)
    for i, xi in enumerate(x):
        u_model = float(model.u_model(xi))
        budget = combine([
            Contribution.normal("calibration", u_model, dof=model.dof),
            Contribution.rectangular("resolution", 0.5e-6),
            Contribution.normal("repeatability", 3e-5, dof=9),
            Contribution.rectangular("drift", 4e-5 * 30 / 365.25),
        ])
        assert out.u[i] == pytest.approx(budget.u_c, rel=1e-12)
        assert out.dof[i] == pytest.approx(budget.dof_eff, rel=1e-9)
        assert out.k[i] == pytest.approx(budget.k, rel=1e-12)


def test_without_covariance_the_certificate_points_are_interpolated() -> None:
    bare = GainOffset(-2e-3, 1e-4, x_min=-10.5, x_max=10.5)  # no covariance on the certificate
    cal = calibration_of(records_with({}, bare), "dmm", TODAY)
    assert cal.certificate is not None
    pts = sorted(cal.certificate.points, key=lambda p: p.indicated)
    mid = 0.5 * (pts[0].indicated + pts[1].indicated)
    u_cal = 0.5 * (pts[0].U / pts[0].k + pts[1].U / pts[1].k)
    out = cal.correct([pts[0].indicated, mid])
    expected = math.hypot(u_cal, 0.5e-6 / math.sqrt(3))
    assert float(out.u[1]) == pytest.approx(expected, rel=1e-9)
    assert float(out.u[0]) == pytest.approx(math.hypot(pts[0].U / pts[0].k,
                                                       0.5e-6 / math.sqrt(3)), rel=1e-9)
    assert float(out.k[1]) == pytest.approx(1.960, abs=5e-4)  # every νᵢ infinite


def test_outside_the_calibrated_range_nothing_is_applied() -> None:
    cal = calibration_of(records_with({}), "dmm", TODAY)
    out = cal.correct([10.0, 10.6, -11.0, math.nan])
    assert out.in_range.tolist() == [True, False, False, False]
    assert out.value[1] == 10.6  # the indicated value, not an extrapolation
    assert out.value[2] == -11.0
    assert np.isnan(out.u[1:]).all()
    assert np.isnan(out.k[1:]).all()


def test_expired_and_broken_chains_are_reported() -> None:
    expired = calibration_of(records_with({}, working_days_ago=400), "dmm", TODAY)
    assert expired.expired
    assert expired.usable  # still applied, but the caller flags it
    recs = records_with({})
    del recs.certificates[REF_CERT]
    broken = calibration_of(recs, "dmm", TODAY)
    assert not broken.expired
    assert any(REF_CERT in p and "not in the registry" in p for p in broken.problems)
    early = calibration_of(recs, "dmm", TODAY - dt.timedelta(days=60))  # before its calibration
    assert not early.usable
    with pytest.raises(ModelError):
        early.correct(1.0)


def test_repeatability_comes_from_the_certificate_when_the_record_has_none() -> None:
    recs = records_with({})
    cert = next(c for c in recs.certificates.values() if c.instrument == "dmm")
    recs.certificates[cert.id] = cert.model_copy(update={"repeatability": 3e-5,
                                                         "repeatability_dof": 9.0})
    with_cert = calibration_of(recs, "dmm", TODAY).correct(2.0)
    recs_inst = records_with({"repeatability": 3e-5, "repeatability_dof": 9})
    with_record = calibration_of(recs_inst, "dmm", TODAY).correct(2.0)
    assert float(with_cert.u) == pytest.approx(float(with_record.u), rel=1e-12)
    assert float(with_cert.k) == pytest.approx(float(with_record.k), rel=1e-12)
    bare_cal = calibration_of(records_with({}), "dmm", TODAY)
    bare = bare_cal.correct(2.0)
    assert float(bare.u) < float(with_cert.u)
    # nothing states it: u leaves it out, and the caller is told to flag the reading
    assert not bare_cal.repeatability_known
    assert calibration_of(recs, "dmm", TODAY).repeatability_known
    assert calibration_of(recs_inst, "dmm", TODAY).repeatability_known
