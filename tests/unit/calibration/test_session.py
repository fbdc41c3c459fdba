"""Session maths: per-point statistics and budget, the fitted correction, the certificate."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

from calibration.decision import Zone
from calibration.models import GainOffset, cvd_resistance, model_from_dict
from calibration.procedure import load_procedure, procedure_from_text
from calibration.records import Accuracy, Certificate, Instrument, Point, Range
from calibration.session import (
    build_certificate,
    evaluate_point,
    evaluate_session,
    fit_cvd,
    mpe_function,
)
from calibration.uncertainty import coverage_factor
from daq.config.yamlsrc import SourceErrors

REPO = Path(__file__).resolve().parents[3]

PROC = """
id: t
title: test
quantity: voltage
unit: V
method: direct comparison
dut: {driver: scpi-dmm, connection: {host: 127.0.0.1, port: 1}}
reference: {driver: calibrator, connection: {host: 127.0.0.1, port: 2}}
defaults: {command: ["SOUR:VOLT {nominal}"], readings: 4}
setpoints: [{nominal: 0.0}, {nominal: 5.0}, {nominal: 10.0, mpe: 0.0001}]
acceptance: {rule: simple, mpe: {absolute: 0.001}}
contributions:
  - {name: ref, source: reference_certificate}
  - {name: res, source: dut_resolution, value: 2.0e-6}
laboratory: {name: lab, accreditation: none}
"""


def ref_cert(c0: float = 0.0, u: float = 1.0e-6) -> Certificate:
    return Certificate(
        id="REF-1", instrument="cal", laboratory="nmi", accreditation="x",
        calibration_date=dt.date(2026, 1, 1), interval_days=365,
        reference_certificates=["NMI-0"],
        points=[Point(nominal=v, reference=v, indicated=v, error=0.0, U=2 * u, k=2.0)
                for v in (-10.0, 0.0, 10.0)],
        model={"kind": "offset", "c0": c0, "u_c0": u, "x_min": -11.0, "x_max": 11.0},
        conformity="n/a")


def test_point_statistics_and_budget_by_hand() -> None:
    proc = procedure_from_text(PROC, "p.yaml")
    dut = [5.00010, 5.00012, 5.00008, 5.00010]
    p = evaluate_point(proc, 1, dut, [5.0] * 4, reference_certificate=ref_cert(c0=2e-6),
                       mpe=1e-3)
    s = float(np.std(dut, ddof=1))
    assert p.n == 4
    assert p.dut_mean == pytest.approx(5.0001)
    assert p.dut_std == pytest.approx(s)
    assert p.u_a == pytest.approx(s / 2)
    assert p.reference == pytest.approx(5.000002)  # the source's setting, corrected
    assert p.error == pytest.approx(0.0001 - 0.000002)
    u_ref, u_res = 1e-6, 1e-6 / math.sqrt(3)
    u_c = math.sqrt((s / 2) ** 2 + u_ref**2 + u_res**2)
    assert p.u_c == pytest.approx(u_c)
    nu = u_c**4 / ((s / 2) ** 4 / 3)  # Welch–Satterthwaite, only Type A is finite
    assert p.dof_eff == pytest.approx(nu)
    assert p.k == pytest.approx(coverage_factor(math.floor(nu)))
    assert pytest.approx(p.k * u_c) == p.U
    names = [r["name"] for r in p.budget_rows()]
    assert names == ["DUT repeatability (Type A)", "ref", "res"]
    assert [r["sensitivity"] for r in p.budget_rows()] == [1.0, -1.0, 1.0]
    assert sum(r["share"] for r in p.budget_rows()) == pytest.approx(1.0)
    assert p.decision is not None
    assert p.decision.zone is Zone.PASS


def test_mpe_per_point_procedure_and_from_dut() -> None:
    proc = procedure_from_text(PROC, "p.yaml")
    at = mpe_function(proc, None)
    assert at(0) == pytest.approx(0.001)
    assert at(2) == pytest.approx(0.0001)
    dut = Instrument(id="d", maker="m", model="m", serial="s", quantity="voltage", unit="V",
                     range=Range(min=-10, max=10), resolution=1e-6,
                     accuracy=Accuracy(a_pct_reading=0.003, b_pct_range=0.0005), owner="o",
                     location="l", role="working", mandatory_verification=False)
    from_dut = procedure_from_text(PROC.replace("{absolute: 0.001}", "{from_dut: true}"), "p")
    assert mpe_function(from_dut, dut)(1) == pytest.approx(0.003e-2 * 5 + 0.0005e-2 * 10)


def test_session_fit_recovers_a_linear_error_and_certificate_builds() -> None:
    proc = procedure_from_text(PROC, "p.yaml")
    gain, offset = 20e-6, -5e-6
    pts = []
    rng = np.random.default_rng(1)
    for i, sp in enumerate(proc.setpoints):
        truth = sp.nominal
        dut = truth * (1 + gain) + offset + rng.normal(0, 1e-7, 4)
        mpe = mpe_function(proc, None)(i)
        pts.append(evaluate_point(proc, i, list(dut), [truth] * 4,
                                  reference_certificate=ref_cert(), mpe=mpe))
    result = evaluate_session(proc, pts)
    assert isinstance(result.model, GainOffset)
    # δ(x) = truth − x with x = truth(1+g)+o  →  δ ≈ −(g·x + o)/(1+g)
    assert result.model.c1 == pytest.approx(-gain / (1 + gain), abs=2e-7)
    assert result.model.c0 == pytest.approx(-offset, abs=1e-6)
    assert result.conforms is False  # 10 V: error 195 µV > MPE 100 µV
    cert = build_certificate(proc, result, certificate_id="C-1", dut_id="dmm",
                             reference_certificate=ref_cert(), calibration_date=dt.date(2026, 2, 1),
                             environment={"temperature_C": 23.0})
    assert cert.reference_certificates == ["REF-1"]
    assert [p.nominal for p in cert.points] == [0.0, 5.0, 10.0]
    assert cert.conformity.startswith("DOES NOT CONFORM: 2 of 3")
    assert cert.environment["procedure"] == "t"
    model = model_from_dict(cert.model)
    x = 7.0 * (1 + gain) + offset
    assert float(model.apply(x)) == pytest.approx(7.0, abs=1e-6)


def test_cvd_fit_recovers_coefficients() -> None:
    t = np.array([0.0, 50.0, 100.0, 150.0, 200.0])
    a, b = 3.9e-3, -5.9e-7
    r = cvd_resistance(t, 100.02, a, b, 0.0)
    fit = fit_cvd(t, r, [1e-4] * 5)
    assert fit.r0 == pytest.approx(100.02, rel=1e-9)
    assert fit.a == pytest.approx(a, rel=1e-7)
    assert fit.b == pytest.approx(b, rel=1e-5)
    cov = np.array(fit.covariance)
    assert cov.shape == (3, 3)
    assert np.all(np.diag(cov) > 0)


def test_shipped_procedures_load() -> None:
    dcv = load_procedure(REPO / "daq/data/procedures/dcv-10v.yaml")
    assert dcv.commandable()
    assert 0.0 in [s.nominal for s in dcv.setpoints]
    assert min(s.nominal for s in dcv.setpoints) < 0
    bath = load_procedure(REPO / "daq/data/procedures/prt-bath.yaml")
    assert not bath.commandable()
    assert "50.000 °C" in bath.prompt(1)


def test_procedure_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = PROC.replace("readings: 4", "readings: 1").replace(
        "reference: {driver: calibrator", "reference: {driver: prt-readout")
    f = tmp_path / "bad.yaml"
    f.write_text(bad)
    with pytest.raises(SourceErrors) as info:
        load_procedure(f)
    text = str(info.value)
    assert f"{f}:9: defaults.readings:" in text
    with pytest.raises(SourceErrors) as info:
        load_procedure(_write(tmp_path, PROC.replace("driver: calibrator", "driver: prt-readout")))
    assert "setpoints[0]: a command needs a reference the software can command" in str(info.value)


def _write(tmp: Path, text: str) -> Path:
    f = tmp / "p.yaml"
    f.write_text(text)
    return f
