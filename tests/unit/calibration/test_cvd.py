"""Callendar–Van Dusen (IEC 60751) in both directions."""

from __future__ import annotations

import numpy as np
import pytest

from calibration import ModelError, cvd_resistance, cvd_temperature

# IEC 60751 standard coefficients for a Pt100
R0, A, B, C = 100.0, 3.9083e-3, -5.775e-7, -4.183e-12


@pytest.mark.parametrize(
    ("t_c", "r_ohm"),
    [(0.0, 100.0), (100.0, 138.5055), (-100.0, 60.2558)],
)
def test_published_values(t_c: float, r_ohm: float) -> None:
    assert float(cvd_resistance(t_c, R0, A, B, C)) == pytest.approx(r_ohm, abs=1e-4)


def test_inverse_over_the_whole_range_better_than_1_mk() -> None:
    t = np.linspace(-200.0, 850.0, 21_001)  # 0.05 °C steps, crossing 0 °C
    r = cvd_resistance(t, R0, A, B, C)
    back = cvd_temperature(r, R0, A, B, C)
    assert back.shape == t.shape
    assert np.max(np.abs(back - t)) < 1e-3
    assert np.max(np.abs(back - t)) < 1e-9  # in fact to rounding


def test_inverse_scalar_and_2d() -> None:
    assert float(cvd_temperature(60.2558, R0, A, B, C)) == pytest.approx(-100.0, abs=1e-3)
    assert float(cvd_temperature(100.0, R0, A, B, C)) == 0.0
    grid = np.array([[-150.0, 20.0], [400.0, -0.5]])
    back = cvd_temperature(cvd_resistance(grid, R0, A, B, C), R0, A, B, C)
    np.testing.assert_allclose(back, grid, atol=1e-9)


def test_nonpositive_resistance_is_an_error() -> None:
    with pytest.raises(ModelError):
        cvd_temperature([100.0, 0.0], R0, A, B, C)


def test_cvd_correction_model() -> None:
    import math

    import numpy as np

    from calibration.models import IEC_60751, CallendarVanDusen, model_from_dict

    same = CallendarVanDusen(*IEC_60751)
    t = np.linspace(-200.0, 850.0, 211)
    assert np.max(np.abs(same.correction(t))) < 1e-9  # nothing to correct

    # a Pt100 whose R0 is 100.01 Ω: at an indicated 0 °C (R = 100 Ω by IEC) it is colder,
    # by the root of 100.01·(1 + A·t + B·t²) = 100 (closed form, independent of the model)
    a, b = IEC_60751[1], IEC_60751[2]
    want = (-a + math.sqrt(a * a - 4 * b * (1 - 100.0 / 100.01))) / (2 * b)
    cov = ((1e-6, 0.0, 0.0), (0.0, 1e-12, -1e-15), (0.0, -1e-15, 4e-18))
    m = CallendarVanDusen(100.01, a, b, 0.0, cov, x_min=0.0, x_max=420.0)
    assert float(m.apply(0.0)) == pytest.approx(want, abs=1e-9)
    assert want == pytest.approx(-0.02558, abs=2e-5)
    x = np.linspace(0.0, 420.0, 43)
    np.testing.assert_allclose(m.inverse(m.apply(x)), x, atol=1e-9)  # both directions
    assert np.isnan(m.apply(-1.0))  # outside the calibrated range: never extrapolated

    # u_model against a Monte Carlo propagation of the parameter covariance
    rng = np.random.default_rng(1)
    draws = rng.multivariate_normal([100.01, a, b], np.array(cov), size=20_000)
    for xi in (0.0, 100.0, 400.0):
        mc = [float(CallendarVanDusen(r0, aa, bb, 0.0, x_min=0.0, x_max=420.0).apply(xi))
              for r0, aa, bb in draws[:4000]]
        assert float(m.u_model(xi)) == pytest.approx(float(np.std(mc)), rel=0.05), xi

    again = model_from_dict(m.to_dict())
    assert isinstance(again, CallendarVanDusen)
    assert again == m
