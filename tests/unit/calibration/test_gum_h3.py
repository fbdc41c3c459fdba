"""GUM (JCGM 100:2008) Annex H.3, calibration of a thermometer, reproduced by fit_polynomial.

Data: Table H.6 of JCGM 100:2008 — 11 thermometer readings t_k and observed corrections
b_k = t_R,k − t_k. Copied from the GUM H.3 example of GTC (MSL New Zealand),
examples/GUM_H3.py in github.com/MSLNZ/GTC, which transcribes Table H.6; the R package
`errors` ships the same table as dataset GUM.H.3 ("Table H.6"). Model (GUM H.3.1):
b(t) = y1 + y2·(t − t0), t0 = 20 °C; ordinary least squares, covariance s²(XᵀX)⁻¹.
Expected values are those printed in GUM H.3.3–H.3.4.
"""

from __future__ import annotations

import pytest

from calibration import Polynomial, fit_polynomial

T_K = (21.521, 22.012, 22.512, 23.003, 23.507, 23.999, 24.513, 25.002, 25.503, 26.010, 26.511)
B_K = (-0.171, -0.169, -0.166, -0.159, -0.164, -0.165, -0.156, -0.157, -0.159, -0.161, -0.160)
T0 = 20.0


def _fit() -> Polynomial:
    # GUM H.3.4 evaluates the correction at 30 °C, outside the 21.5–26.5 °C of the data,
    # so the valid range is widened explicitly (the default is the range of the data).
    return fit_polynomial(T_K, B_K, 1, x0=T0, valid_range=(20.0, 30.0))


def test_parameters_and_uncertainties() -> None:
    m = _fit()
    y1, y2 = m.coefficients
    u1, u2 = m.u_coefficients
    assert y1 == pytest.approx(-0.1712, abs=5e-5)
    assert u1 == pytest.approx(0.0029, abs=5e-5)
    assert y2 == pytest.approx(0.00218, abs=5e-6)
    assert u2 == pytest.approx(0.00067, abs=5e-6)
    assert m.correlation()[0, 1] == pytest.approx(-0.930, abs=5e-4)
    assert m.dof == 9  # n − 2


def test_correction_at_30_c() -> None:
    m = _fit()
    assert float(m.correction(30.0)) == pytest.approx(-0.1494, abs=5e-5)
    assert float(m.u_model(30.0)) == pytest.approx(0.0041, abs=5e-5)


def test_default_range_is_the_data_range() -> None:
    m = fit_polynomial(T_K, B_K, 1, x0=T0)
    assert (m.x_min, m.x_max) == (21.521, 26.511)
    assert not bool(m.in_range(30.0))
