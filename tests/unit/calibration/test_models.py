"""Correction models: round trips, ranges, serialisation and vectorisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration import (
    CorrectionModel,
    GainOffset,
    ModelError,
    Offset,
    PiecewiseLinear,
    Polynomial,
    fit_polynomial,
    model_from_dict,
)


def test_polynomial_fit_apply_inverse_round_trip() -> None:
    # an instrument whose true value is 0.2 + 1.01·x − 2e-4·x² of its indication x
    x = np.linspace(0.0, 100.0, 21)
    reference = 0.2 + 1.01 * x - 2e-4 * x**2
    model = fit_polynomial(x, reference - x, 2, u_y=0.01)
    np.testing.assert_allclose(model.coefficients, [0.2, 0.01, -2e-4], atol=1e-10)
    np.testing.assert_allclose(model.apply(x), reference, atol=1e-10)
    np.testing.assert_allclose(model.inverse(model.apply(x)), x, atol=1e-9)
    assert math.isinf(model.dof)  # u_y known: Type B weights
    assert (model.x_min, model.x_max) == (0.0, 100.0)


def test_unweighted_fit_has_n_minus_p_dof_and_residual_covariance() -> None:
    rng = np.random.default_rng(1)
    x = np.linspace(-1.0, 1.0, 30)
    y = 0.5 - 0.3 * x + rng.normal(0.0, 0.01, x.size)
    model = fit_polynomial(x, y, 1)
    assert model.dof == 28
    assert model.u_coefficients[0] == pytest.approx(0.01 / math.sqrt(30), rel=0.35)
    # u_model at x is sqrt(J Σ Jᵀ)
    j = np.array([1.0, 0.7])
    assert float(model.u_model(0.7)) == pytest.approx(math.sqrt(j @ model.cov @ j))


def test_fit_needs_enough_points() -> None:
    with pytest.raises(ModelError):
        fit_polynomial([1.0, 2.0], [0.1, 0.2], 1)


def test_gain_offset_round_trip_and_weighted_fit() -> None:
    x = np.array([0.0, 25.0, 50.0, 75.0, 100.0])
    fitted = fit_polynomial(x, 0.05 + 0.002 * x, 1, u_y=[0.01] * 5)
    c0, c1 = fitted.coefficients
    go = GainOffset(c0, c1, covariance=fitted.covariance)
    assert go.c0 == pytest.approx(0.05)
    assert go.c1 == pytest.approx(0.002)
    y = go.apply(x)
    np.testing.assert_allclose(y, 0.05 + 1.002 * x)
    np.testing.assert_allclose(go.inverse(y), x, atol=1e-12)
    np.testing.assert_allclose(go.u_model(x), fitted.u_model(x))


def test_offset() -> None:
    off = Offset(-0.12, u_c0=0.03)
    np.testing.assert_allclose(off.apply([1.0, 2.0]), [0.88, 1.88])
    np.testing.assert_allclose(off.u_model([1.0, 2.0]), [0.03, 0.03])
    assert float(off.inverse(0.88)) == pytest.approx(1.0)


def test_piecewise_linear_interpolates_inside_and_flags_outside() -> None:
    table = PiecewiseLinear(
        points=(0.0, 10.0, 20.0), corrections=(0.1, -0.1, 0.3), u_corrections=(0.02, 0.04, 0.02)
    )
    x = np.array([-0.5, 0.0, 5.0, 15.0, 20.0, 20.5])
    np.testing.assert_array_equal(table.in_range(x), [False, True, True, True, True, False])
    corrected = table.apply(x)
    assert np.isnan(corrected[0])
    assert np.isnan(corrected[-1])
    np.testing.assert_allclose(corrected[1:-1], [0.1, 5.0, 15.1, 20.3])
    np.testing.assert_allclose(table.u_model(x[1:-1]), [0.02, 0.03, 0.03, 0.02])
    assert np.isnan(table.u_model(x)[0])
    np.testing.assert_allclose(table.inverse(corrected[1:-1]), x[1:-1], atol=1e-12)
    assert np.isnan(float(table.inverse(25.0)))


def test_piecewise_linear_with_a_shared_part_interpolates_the_variance() -> None:
    pts, cor = (0.0, 10.0, 20.0), (0.0, 0.0, 0.0)
    independent = PiecewiseLinear(pts, cor, (2.0, 2.0, 4.0), u_shared=(0.0, 0.0, 0.0))
    shared = PiecewiseLinear(pts, cor, (2.0, 2.0, 4.0), u_shared=(2.0, 2.0, 4.0))
    mixed = PiecewiseLinear(pts, cor, (2.0, 2.0, 4.0), u_shared=(1.0, 1.0, 3.0))
    x = np.array([0.0, 5.0, 10.0, 15.0, 20.0])
    np.testing.assert_allclose(independent.u_model(x), [2, math.sqrt(2), 2, math.sqrt(5), 4])
    # the common part min(s_j, s_j+1)² between neighbours (2 and 4 share 2²)
    np.testing.assert_allclose(shared.u_model(x), [2, 2, 2, math.sqrt(1 + 4 + 2 * 0.25 * 4), 4])
    np.testing.assert_allclose(mixed.u_model(5.0), math.sqrt(0.25 * 4 * 2 + 0.5 * 1))
    assert np.isnan(mixed.u_model(25.0))
    back = PiecewiseLinear.from_dict(json.loads(json.dumps(mixed.to_dict())))
    assert back == mixed
    assert "u_shared" not in PiecewiseLinear(pts, cor, (2.0, 2.0, 4.0)).to_dict()
    with pytest.raises(ModelError, match="u_shared"):
        PiecewiseLinear(pts, cor, (2.0, 2.0, 4.0), u_shared=(3.0, 0.0, 0.0))


def test_piecewise_linear_rejects_bad_tables() -> None:
    with pytest.raises(ModelError):
        PiecewiseLinear(points=(0.0, 0.0), corrections=(0.0, 0.0))
    with pytest.raises(ModelError):
        PiecewiseLinear(points=(0.0,), corrections=(0.0,))
    with pytest.raises(ModelError):
        PiecewiseLinear(points=(0.0, 1.0), corrections=(0.0,))


def test_bounded_polynomial_never_extrapolates() -> None:
    poly = Polynomial((0.0, 0.1), x_min=0.0, x_max=10.0)
    out = poly.apply([-1.0, 5.0, 11.0])
    assert np.isnan(out[0])
    assert np.isnan(out[2])
    assert out[1] == pytest.approx(5.5)


MODELS: list[CorrectionModel] = [
    Offset(0.5, u_c0=0.01, dof=12),
    GainOffset(0.1, -0.002, covariance=((1e-4, -1e-6), (-1e-6, 4e-8)), x_min=-50, x_max=50),
    Polynomial(
        (0.1, 0.01, -1e-4),
        covariance=((1e-4, 0.0, 0.0), (0.0, 1e-6, 0.0), (0.0, 0.0, 1e-9)),
        x0=20.0,
    ),
    PiecewiseLinear((0.0, 1.0, 3.0), (0.0, 0.2, -0.1), (0.01, 0.02, 0.01), dof=30),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.kind)
def test_to_dict_round_trip_through_json(model: CorrectionModel) -> None:
    data = json.loads(json.dumps(model.to_dict(), allow_nan=False))
    back = model_from_dict(data)
    assert back == model
    x = np.linspace(-1.0, 4.0, 11)
    np.testing.assert_array_equal(back.apply(x), model.apply(x))
    np.testing.assert_array_equal(back.u_model(x), model.u_model(x))


def test_model_from_dict_errors() -> None:
    with pytest.raises(ModelError):
        model_from_dict({"kind": "spline"})
    with pytest.raises(ModelError):
        model_from_dict({"kind": "offset"})
    with pytest.raises(ModelError):
        Polynomial((1.0, 2.0), covariance=((1.0, 0.5), (0.4, 1.0)))


@settings(max_examples=50, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    xs=st.lists(st.floats(-60.0, 60.0, allow_nan=False), min_size=1, max_size=20),
)
def test_apply_is_vectorised(model: CorrectionModel, xs: list[float]) -> None:
    arr = np.array(xs)
    vec = model.apply(arr)
    scalar = np.array([float(model.apply(v)) for v in xs])
    np.testing.assert_array_equal(vec, scalar)
    u_vec = model.u_model(arr)
    u_scalar = np.array([float(model.u_model(v)) for v in xs])
    np.testing.assert_allclose(u_vec, u_scalar, rtol=1e-12, atol=0.0)
    np.testing.assert_array_equal(model.in_range(arr), [bool(model.in_range(v)) for v in xs])
