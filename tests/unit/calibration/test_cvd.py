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
