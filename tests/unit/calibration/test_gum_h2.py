"""GUM H.2 (JCGM 100:2008): simultaneous resistance and reactance measurement, from the raw
observations — five sets of V, I, φ taken together, so the means are correlated; three
outputs R, X, Z with their correlations. ``calibration.multivariate`` (GTC) reproduces the
GUM's Table H.3 (approach 1) to the digits it prints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.multivariate import (
    cos,
    exp,
    given,
    magnitude,
    observed,
    propagate,
    sin,
)
from calibration.uncertainty import UncertaintyError, coverage_factor

# Table H.2: k, V (V), I (mA), φ (rad)
V_V = (5.007, 4.994, 5.005, 4.990, 4.999)
I_MA = (19.663, 19.639, 19.640, 19.685, 19.678)
PHI_RAD = (1.0456, 1.0438, 1.0468, 1.0428, 1.0433)


def inputs() -> dict[str, object]:
    return observed({"V": V_V, "I": [i * 1e-3 for i in I_MA], "phi": PHI_RAD})


def test_gum_h2_resistance_reactance_impedance() -> None:
    res = propagate(inputs(), lambda q: {"R": q["V"] * cos(q["phi"]) / q["I"],
                                         "X": q["V"] * sin(q["phi"]) / q["I"],
                                         "Z": q["V"] / q["I"]})
    assert res.labels == ("R", "X", "Z")
    # Table H.3: R = 127.732(71) Ω, X = 219.847(295) Ω, Z = 254.260(236) Ω
    assert round(res.value("R"), 3) == 127.732
    assert round(res.uncertainty("R"), 3) == 0.071
    assert round(res.value("X"), 2) == 219.85
    assert round(res.uncertainty("X"), 2) == 0.30
    assert round(res.value("Z"), 2) == 254.26
    assert round(res.uncertainty("Z"), 2) == 0.24
    assert round(res.r("R", "X"), 3) == -0.588
    assert round(res.r("R", "Z"), 3) == -0.485
    assert round(res.r("X", "Z"), 3) == 0.993
    assert res.r("X", "R") == res.r("R", "X")
    np.testing.assert_allclose(np.diag(res.covariance), res.u**2)
    assert list(res.dof) == [4.0, 4.0, 4.0]  # five sets: ν = 4 for every output
    np.testing.assert_allclose(res.k(), coverage_factor(4.0))
    np.testing.assert_allclose(res.expanded(), coverage_factor(4.0) * res.u)


def test_the_same_through_a_complex_impedance() -> None:
    res = propagate(inputs(), lambda q: {"R": (z := q["V"] * exp(1j * q["phi"]) / q["I"]).real,
                                         "X": z.imag, "Z": magnitude(z)})
    assert round(res.value("R"), 3) == 127.732
    assert round(res.uncertainty("X"), 2) == 0.30
    assert round(res.r("X", "Z"), 3) == 0.993


def test_given_estimates_with_a_covariance() -> None:
    cov = [[1e-2, 5e-3], [5e-3, 4e-2]]
    res = propagate(given({"a": 1.0, "b": 2.0}, cov),
                    lambda q: {"sum": q["a"] + q["b"], "diff": q["a"] - q["b"]})
    # J Σ Jᵀ by hand
    jac = np.array([[1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_allclose(res.covariance, jac @ np.array(cov) @ jac.T, atol=1e-15)
    assert list(res.values) == [3.0, -1.0]
    assert all(math.isinf(d) for d in res.dof)
    finite = propagate(given({"a": 1.0, "b": 2.0}, cov, dof=9), lambda q: {"s": q["a"] + q["b"]})
    assert finite.dof[0] == pytest.approx(9.0)  # one ensemble: ν is that of its members


def test_errors_are_calibration_errors() -> None:
    with pytest.raises(UncertaintyError, match="different numbers"):
        observed({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(UncertaintyError, match="symmetric"):
        given({"a": 1.0, "b": 2.0}, [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(CalibrationError):
        propagate(inputs(), lambda q: {"bad": q["V"] / 0})
    with pytest.raises(UncertaintyError, match="complex"):
        propagate(inputs(), lambda q: {"z": q["V"] * exp(1j * q["phi"])})
    with pytest.raises(KeyError):
        propagate(inputs(), lambda q: {"v": q["V"]}).value("nope")
