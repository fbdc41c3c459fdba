"""Correction models: pure, synchronous, vectorised with numpy.

Every model describes a *correction* δ(x) of an indicated value x, and

* ``correction(x)`` returns δ(x);
* ``apply(x)`` returns the corrected value x + δ(x);
* ``u_model(x)`` returns the standard uncertainty of δ(x) (and so of the corrected value, x
  being exact) from the parameter covariance Σ: sqrt(J Σ Jᵀ), J = ∂δ/∂parameters at x;
* ``in_range(x)`` returns a boolean mask: True where x lies inside the calibrated range;
* ``inverse(y)`` returns the indicated value x whose corrected value is y;
* ``to_dict()`` / ``from_dict()`` turn the model into plain data for certificates (JSON-safe:
  an unbounded range or infinite degrees of freedom are stored as ``None``).

All of them accept a float or any array-like and return ``NDArray[np.float64]`` of the
broadcast shape (a 0-d array for a scalar; ``float(...)`` gives the number).

Out of range: a model never extrapolates silently. Outside ``[x_min, x_max]`` ``apply``,
``correction`` and ``u_model`` return NaN, and ``in_range`` gives the mask the caller turns
into a quality flag. Offset, gain/offset and polynomial models may be unbounded (the default
for hand-built ones); a fitted polynomial defaults to the range of its calibration points; a
piecewise-linear table is always bounded by its first and last point.

Callendar–Van Dusen (IEC 60751) for platinum resistance thermometers is provided as the two
functions ``cvd_resistance`` and ``cvd_temperature``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from calibration.errors import CalibrationError

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "IEC_60751",
    "CallendarVanDusen",
    "CorrectionModel",
    "GainOffset",
    "ModelError",
    "Offset",
    "PiecewiseLinear",
    "Polynomial",
    "cvd_resistance",
    "cvd_temperature",
    "fit_polynomial",
    "generalised_least_squares",
    "model_from_dict",
]


class ModelError(CalibrationError, ValueError):
    """A correction model cannot be built, fitted, read from data or inverted."""


@runtime_checkable
class CorrectionModel(Protocol):
    """What the calibration chain needs from a correction model."""

    kind: ClassVar[str]

    @property
    def dof(self) -> float: ...

    def correction(self, x: npt.ArrayLike) -> FloatArray: ...
    def apply(self, x: npt.ArrayLike) -> FloatArray: ...
    def u_model(self, x: npt.ArrayLike) -> FloatArray: ...
    def in_range(self, x: npt.ArrayLike) -> npt.NDArray[np.bool_]: ...
    def inverse(self, y: npt.ArrayLike) -> FloatArray: ...
    def to_dict(self) -> dict[str, Any]: ...


# -- helpers ---------------------------------------------------------------------------------


def _as_float(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _mask(x: FloatArray, x_min: float, x_max: float) -> npt.NDArray[np.bool_]:
    return np.asarray((x >= x_min) & (x <= x_max), dtype=np.bool_)


def _nan_outside(values: FloatArray, ok: npt.NDArray[np.bool_]) -> FloatArray:
    return np.asarray(np.where(ok, values, np.nan), dtype=np.float64)


def _snap_inverse(x: FloatArray, x_min: float, x_max: float) -> FloatArray:
    """Range check of an inverse's result: values within round-off (1e-9 relative) of a range
    end are put on it, values further out become NaN."""
    slack = 1e-9 * np.maximum(1.0, np.abs(x))
    snapped = np.clip(x, x_min, x_max)
    ok = np.asarray(np.abs(snapped - x) <= slack, dtype=np.bool_)
    return _nan_outside(np.asarray(snapped, dtype=np.float64), ok)


def _opt(v: float) -> float | None:
    """inf → None for JSON-safe dictionaries."""
    return None if math.isinf(v) else v


def _from_opt(v: float | None, default: float) -> float:
    return default if v is None else float(v)


def _matrix(rows: Sequence[Sequence[float]] | npt.ArrayLike, n: int, what: str) -> FloatArray:
    m = np.asarray(rows, dtype=np.float64)
    if m.shape != (n, n):
        raise ModelError(f"{what}: covariance must be {n}×{n}, got shape {m.shape}")
    if not np.allclose(m, m.T, rtol=1e-9, atol=0.0):
        raise ModelError(f"{what}: covariance is not symmetric")
    if np.any(np.diag(m) < 0):
        raise ModelError(f"{what}: covariance has a negative variance")
    return m


def _tuple2(m: FloatArray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in m)


def _check_range(x_min: float, x_max: float, what: str) -> None:
    if math.isnan(x_min) or math.isnan(x_max) or x_min > x_max:
        raise ModelError(f"{what}: invalid range [{x_min}, {x_max}]")


def _check_dof(dof: float, what: str) -> None:
    if not dof > 0:
        raise ModelError(f"{what}: degrees of freedom must be > 0, got {dof}")


# -- polynomial (and its special cases) ------------------------------------------------------


@dataclass(frozen=True)
class Polynomial:
    """δ(x) = Σ cᵢ·(x − x0)ⁱ, coefficients in ascending order of power.

    ``covariance`` is the covariance matrix of the coefficients (zeros if unknown), ``dof``
    the degrees of freedom of ``u_model`` (n − (degree + 1) for a least-squares fit).
    """

    kind: ClassVar[str] = "polynomial"

    coefficients: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...] = ()
    x0: float = 0.0
    dof: float = math.inf
    x_min: float = -math.inf
    x_max: float = math.inf

    def __post_init__(self) -> None:
        if not self.coefficients:
            raise ModelError("polynomial: no coefficients")
        n = len(self.coefficients)
        object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))
        cov = np.zeros((n, n)) if not self.covariance else _matrix(self.covariance, n, "polynomial")
        object.__setattr__(self, "covariance", _tuple2(cov))
        _check_range(self.x_min, self.x_max, "polynomial")
        _check_dof(self.dof, "polynomial")

    @property
    def degree(self) -> int:
        return len(self.coefficients) - 1

    @property
    def cov(self) -> FloatArray:
        """The coefficient covariance as an array."""
        return np.array(self.covariance, dtype=np.float64)

    @property
    def u_coefficients(self) -> FloatArray:
        """Standard uncertainties of the coefficients."""
        return np.sqrt(np.diag(self.cov))

    def correlation(self) -> FloatArray:
        """Correlation matrix of the coefficients (0 where a coefficient has no uncertainty)."""
        u = self.u_coefficients
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.cov / np.outer(u, u)
        r = np.where(np.isfinite(r), r, 0.0)
        np.fill_diagonal(r, 1.0)
        return np.asarray(r, dtype=np.float64)

    def in_range(self, x: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return _mask(_as_float(x), self.x_min, self.x_max)

    def _raw(self, x: FloatArray) -> FloatArray:
        # Horner in (x − x0); np.polyval wants descending order
        return np.asarray(np.polyval(self.coefficients[::-1], x - self.x0), dtype=np.float64)

    def _raw_derivative(self, x: FloatArray) -> FloatArray:
        d = np.polyder(np.asarray(self.coefficients[::-1])) if self.degree else np.zeros(1)
        return np.asarray(np.polyval(d, x - self.x0), dtype=np.float64)

    def correction(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        return _nan_outside(self._raw(xa), self.in_range(xa))

    def apply(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        return xa + self.correction(xa)

    def u_model(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        jac = np.power.outer(xa - self.x0, np.arange(len(self.coefficients)))  # (..., p)
        var = np.einsum("...i,ij,...j->...", jac, self.cov, jac)
        u = np.sqrt(np.clip(var, 0.0, None))
        return _nan_outside(np.asarray(u, dtype=np.float64), self.in_range(xa))

    def inverse(self, y: npt.ArrayLike, *, tol: float = 1e-12, max_iter: int = 50) -> FloatArray:
        """Indicated x with x + δ(x) = y, by vectorised Newton iteration from x = y − δ(y).

        NaN where the solution falls outside the calibrated range; ``ModelError`` if the
        iteration does not converge (δ'(x) near −1: the correction is not invertible there).
        """
        ya = _as_float(y)
        x = ya - self._raw(ya)
        for _ in range(max_iter):
            slope = 1.0 + self._raw_derivative(x)
            step = (x + self._raw(x) - ya) / slope
            x = x - step
            if np.all(np.abs(step) <= tol * np.maximum(1.0, np.abs(x))):
                break
        else:
            raise ModelError("polynomial: inverse did not converge")
        return _snap_inverse(x, self.x_min, self.x_max)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "coefficients": list(self.coefficients),
            "covariance": [list(r) for r in self.covariance],
            "x0": self.x0,
            "dof": _opt(self.dof),
            "x_min": _opt(self.x_min),
            "x_max": _opt(self.x_max),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Polynomial:
        _expect_kind(d, cls.kind)
        coeffs = tuple(float(c) for c in d["coefficients"])
        cov = d.get("covariance") or ()
        return cls(
            coefficients=coeffs,
            covariance=tuple(tuple(float(v) for v in row) for row in cov),
            x0=float(d.get("x0", 0.0)),
            dof=_from_opt(d.get("dof"), math.inf),
            x_min=_from_opt(d.get("x_min"), -math.inf),
            x_max=_from_opt(d.get("x_max"), math.inf),
        )


@dataclass(frozen=True)
class Offset:
    """δ(x) = c0, with standard uncertainty ``u_c0``."""

    kind: ClassVar[str] = "offset"

    c0: float
    u_c0: float = 0.0
    dof: float = math.inf
    x_min: float = -math.inf
    x_max: float = math.inf

    def __post_init__(self) -> None:
        if not self.u_c0 >= 0:
            raise ModelError(f"offset: u_c0 must be >= 0, got {self.u_c0}")
        _check_range(self.x_min, self.x_max, "offset")
        _check_dof(self.dof, "offset")

    def as_polynomial(self) -> Polynomial:
        return Polynomial((self.c0,), ((self.u_c0**2,),), 0.0, self.dof, self.x_min, self.x_max)

    def in_range(self, x: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return _mask(_as_float(x), self.x_min, self.x_max)

    def correction(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        return _nan_outside(np.full_like(xa, self.c0), self.in_range(xa))

    def apply(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        return xa + self.correction(xa)

    def u_model(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        return _nan_outside(np.full_like(xa, self.u_c0), self.in_range(xa))

    def inverse(self, y: npt.ArrayLike) -> FloatArray:
        x = _as_float(y) - self.c0
        return _snap_inverse(x, self.x_min, self.x_max)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "c0": self.c0,
            "u_c0": self.u_c0,
            "dof": _opt(self.dof),
            "x_min": _opt(self.x_min),
            "x_max": _opt(self.x_max),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Offset:
        _expect_kind(d, cls.kind)
        return cls(
            c0=float(d["c0"]),
            u_c0=float(d.get("u_c0", 0.0)),
            dof=_from_opt(d.get("dof"), math.inf),
            x_min=_from_opt(d.get("x_min"), -math.inf),
            x_max=_from_opt(d.get("x_max"), math.inf),
        )


@dataclass(frozen=True)
class GainOffset:
    """δ(x) = c0 + c1·x, so the corrected value is c0 + (1 + c1)·x.

    ``covariance`` is the 2×2 covariance of (c0, c1); zeros if not given.
    """

    kind: ClassVar[str] = "gain_offset"

    c0: float
    c1: float
    covariance: tuple[tuple[float, ...], ...] = ()
    dof: float = math.inf
    x_min: float = -math.inf
    x_max: float = math.inf
    _poly: Polynomial = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        poly = Polynomial(
            (self.c0, self.c1), self.covariance, 0.0, self.dof, self.x_min, self.x_max
        )
        object.__setattr__(self, "covariance", poly.covariance)
        object.__setattr__(self, "_poly", poly)

    def as_polynomial(self) -> Polynomial:
        return self._poly

    @property
    def cov(self) -> FloatArray:
        return self._poly.cov

    def in_range(self, x: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return self._poly.in_range(x)

    def correction(self, x: npt.ArrayLike) -> FloatArray:
        return self._poly.correction(x)

    def apply(self, x: npt.ArrayLike) -> FloatArray:
        return self._poly.apply(x)

    def u_model(self, x: npt.ArrayLike) -> FloatArray:
        return self._poly.u_model(x)

    def inverse(self, y: npt.ArrayLike) -> FloatArray:
        if 1.0 + self.c1 == 0.0:
            raise ModelError("gain_offset: c1 = −1, the correction is not invertible")
        x = (_as_float(y) - self.c0) / (1.0 + self.c1)
        return _snap_inverse(x, self.x_min, self.x_max)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "c0": self.c0,
            "c1": self.c1,
            "covariance": [list(r) for r in self.covariance],
            "dof": _opt(self.dof),
            "x_min": _opt(self.x_min),
            "x_max": _opt(self.x_max),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GainOffset:
        _expect_kind(d, cls.kind)
        cov = d.get("covariance") or ()
        return cls(
            c0=float(d["c0"]),
            c1=float(d["c1"]),
            covariance=tuple(tuple(float(v) for v in row) for row in cov),
            dof=_from_opt(d.get("dof"), math.inf),
            x_min=_from_opt(d.get("x_min"), -math.inf),
            x_max=_from_opt(d.get("x_max"), math.inf),
        )


def generalised_least_squares(
    design: npt.ArrayLike, y: npt.ArrayLike, cov_y: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """β minimising (y − Xβ)ᵀ V⁻¹ (y − Xβ) and its covariance (Xᵀ V⁻¹ X)⁻¹, for a known
    covariance V of the observations (Aitken's generalised least squares; GUM H.3 and ISO/TS
    28037 with correlated y). Vectorised over leading axes: ``design`` (..., n, p), ``y``
    (..., n), ``cov_y`` (..., n, n) → β (..., p), cov (..., p, p). Solved by whitening with
    the Cholesky factor of V; ``ModelError`` if V is not positive definite."""
    x_ = _as_float(design)
    y_ = _as_float(y)
    v = _as_float(cov_y)
    try:
        chol = np.linalg.cholesky(v)
    except np.linalg.LinAlgError as exc:
        raise ModelError("least squares: the covariance of y is not positive definite") from exc
    xw = np.linalg.solve(chol, x_)  # L⁻¹X
    yw = np.linalg.solve(chol, y_[..., None])[..., 0]  # L⁻¹y
    normal = np.swapaxes(xw, -1, -2) @ xw  # XᵀV⁻¹X
    try:
        cov = np.linalg.inv(normal)
    except np.linalg.LinAlgError as exc:
        raise ModelError("least squares: the design is singular") from exc
    beta = (cov @ (np.swapaxes(xw, -1, -2) @ yw[..., None]))[..., 0]
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return np.asarray(beta, dtype=np.float64), np.asarray(cov, dtype=np.float64)


def fit_polynomial(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    degree: int,
    u_y: npt.ArrayLike | None = None,
    *,
    cov_y: npt.ArrayLike | None = None,
    x0: float = 0.0,
    valid_range: tuple[float, float] | None = None,
) -> Polynomial:
    """Least-squares fit of corrections y observed at indicated values x: δ(x) = Σ cᵢ(x − x0)ⁱ.

    * Without ``u_y`` or ``cov_y``: ordinary least squares; covariance s²·(XᵀX)⁻¹ with s² the
      residual variance Σr²/(n − p) (GUM H.3); ``dof`` = n − p, p = degree + 1.
    * With ``u_y`` (standard uncertainties of the y, scalar or per point, independent):
      weighted least squares, covariance (XᵀWX)⁻¹ with W = diag(1/u_y²).
    * With ``cov_y`` (the n×n covariance of the y, e.g. a reference standard's error shared
      by every point): generalised least squares, covariance (XᵀV⁻¹X)⁻¹.

    With ``u_y`` or ``cov_y`` the uncertainties are taken as known, so the covariance is not
    rescaled by the residuals and ``dof`` is ∞. The returned model is valid over
    ``valid_range``, by default the range of the x data.
    """
    xa = np.ravel(_as_float(x))
    ya = np.ravel(_as_float(y))
    p = degree + 1
    n = xa.size
    if degree < 0:
        raise ModelError(f"fit_polynomial: degree must be >= 0, got {degree}")
    if ya.size != n:
        raise ModelError(f"fit_polynomial: {n} x values but {ya.size} y values")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ModelError("fit_polynomial: x and y must be finite")
    if u_y is not None and cov_y is not None:
        raise ModelError("fit_polynomial: give u_y or cov_y, not both")
    design = np.power.outer(xa - x0, np.arange(p))
    if u_y is None and cov_y is None:
        if n <= p:
            raise ModelError(f"fit_polynomial: need more than {p} points for degree {degree}")
        coeffs, *_ = np.linalg.lstsq(design, ya, rcond=None)
        resid = ya - design @ coeffs
        s2 = float(resid @ resid) / (n - p)
        cov: FloatArray = np.asarray(s2 * np.linalg.inv(design.T @ design), dtype=np.float64)
        dof = float(n - p)
    else:
        if cov_y is None:
            assert u_y is not None
            u = np.broadcast_to(_as_float(u_y), ya.shape)
            if np.any(~(u > 0)):
                raise ModelError("fit_polynomial: u_y must be > 0")
            v = np.diag(u**2)
        else:
            v = _as_float(cov_y)
            if v.shape != (n, n) or not np.allclose(v, v.T, rtol=1e-9, atol=0.0):
                raise ModelError(f"fit_polynomial: cov_y must be a symmetric {n}×{n} matrix")
        if n < p:
            raise ModelError(f"fit_polynomial: need at least {p} points for degree {degree}")
        coeffs, cov = generalised_least_squares(design, ya, v)
        dof = math.inf
    cov = 0.5 * (cov + cov.T)
    lo, hi = (float(xa.min()), float(xa.max())) if valid_range is None else valid_range
    return Polynomial(
        coefficients=tuple(float(c) for c in coeffs),
        covariance=_tuple2(cov),
        x0=x0,
        dof=dof,
        x_min=lo,
        x_max=hi,
    )


# -- piecewise-linear table ------------------------------------------------------------------


@dataclass(frozen=True)
class PiecewiseLinear:
    """A table of corrections at nominal (indicated) points, interpolated linearly between them.

    The calibrated range is [first point, last point]; outside it ``apply`` and friends
    return NaN and ``in_range`` is False — a table is never extrapolated.

    ``u_corrections`` are the standard uncertainties of the tabulated corrections (zeros if
    not given). Between points, without ``u_shared``, the uncertainty is interpolated
    linearly, the conservative choice (it treats neighbouring points as fully correlated).
    ``u_shared`` (optional) is the part of each point's u that is one error common to every
    point (the reference standard's, as a calibration session knows it); then, at weight w
    between points j and j + 1, u² = (1 − w)²u_j² + w²u_{j+1}² + 2w(1 − w)·min(s_j, s_{j+1})²:
    the correlation of the two corrections is what they share, and the rest is independent
    (as ``calibration.session.points_covariance``). That takes the points as exact nodes:
    an instrument that is not linear between them needs denser points or its own term.
    """

    kind: ClassVar[str] = "piecewise_linear"

    points: tuple[float, ...]
    corrections: tuple[float, ...]
    u_corrections: tuple[float, ...] = ()
    dof: float = math.inf
    u_shared: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        pts = tuple(float(v) for v in self.points)
        cor = tuple(float(v) for v in self.corrections)
        unc = tuple(float(v) for v in self.u_corrections) or (0.0,) * len(pts)
        shared = tuple(float(v) for v in self.u_shared)
        if shared and (len(shared) != len(pts) or not all(
                0.0 <= s <= u * (1 + 1e-12) for s, u in zip(shared, unc, strict=True))):
            raise ModelError("piecewise_linear: u_shared needs one value per point, "
                             "0 <= u_shared <= u")
        object.__setattr__(self, "u_shared", shared)
        if len(pts) < 2:
            raise ModelError("piecewise_linear: need at least two points")
        if len(cor) != len(pts) or len(unc) != len(pts):
            raise ModelError("piecewise_linear: points, corrections and u differ in length")
        if not all(math.isfinite(v) for v in pts + cor + unc):
            raise ModelError("piecewise_linear: values must be finite")
        if any(b <= a for a, b in itertools.pairwise(pts)):
            raise ModelError("piecewise_linear: points must be strictly increasing")
        if any(u < 0 for u in unc):
            raise ModelError("piecewise_linear: uncertainties must be >= 0")
        _check_dof(self.dof, "piecewise_linear")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "corrections", cor)
        object.__setattr__(self, "u_corrections", unc)

    @property
    def x_min(self) -> float:
        return self.points[0]

    @property
    def x_max(self) -> float:
        return self.points[-1]

    def in_range(self, x: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return _mask(_as_float(x), self.x_min, self.x_max)

    def correction(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        v = np.interp(xa, self.points, self.corrections)
        return _nan_outside(np.asarray(v, dtype=np.float64), self.in_range(xa))

    def apply(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        return xa + self.correction(xa)

    def u_model(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        if not self.u_shared:
            v = np.interp(xa, self.points, self.u_corrections)
            return _nan_outside(np.asarray(v, dtype=np.float64), self.in_range(xa))
        pts = np.asarray(self.points)
        u = np.asarray(self.u_corrections)
        s = np.asarray(self.u_shared)
        j = np.clip(np.searchsorted(pts, xa, side="right") - 1, 0, pts.size - 2)
        w = np.clip((xa - pts[j]) / (pts[j + 1] - pts[j]), 0.0, 1.0)
        common = np.minimum(s[j], s[j + 1]) ** 2
        var = ((1 - w) * u[j]) ** 2 + (w * u[j + 1]) ** 2 + 2 * w * (1 - w) * common
        return _nan_outside(np.asarray(np.sqrt(var), dtype=np.float64), self.in_range(xa))

    def inverse(self, y: npt.ArrayLike) -> FloatArray:
        """Indicated x with x + δ(x) = y; ``ModelError`` if the corrected table is not
        strictly increasing (a correction slope ≤ −1 somewhere)."""
        corrected = np.add(self.points, self.corrections)
        if np.any(np.diff(corrected) <= 0):
            raise ModelError("piecewise_linear: corrected values not increasing, no inverse")
        ya = _as_float(y)
        x = np.asarray(np.interp(ya, corrected, self.points), dtype=np.float64)
        ok = (ya >= corrected[0]) & (ya <= corrected[-1])
        return _nan_outside(x, np.asarray(ok, dtype=np.bool_))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "points": list(self.points),
            "corrections": list(self.corrections),
            "u_corrections": list(self.u_corrections),
            "dof": _opt(self.dof),
            **({"u_shared": list(self.u_shared)} if self.u_shared else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PiecewiseLinear:
        _expect_kind(d, cls.kind)
        return cls(
            points=tuple(float(v) for v in d["points"]),
            corrections=tuple(float(v) for v in d["corrections"]),
            u_corrections=tuple(float(v) for v in d.get("u_corrections") or ()),
            dof=_from_opt(d.get("dof"), math.inf),
            u_shared=tuple(float(v) for v in d.get("u_shared") or ()),
        )


# -- (de)serialisation -----------------------------------------------------------------------

_KINDS: dict[str, type[Polynomial] | type[Offset] | type[GainOffset] | type[PiecewiseLinear]
             | type[CallendarVanDusen]] = {
    c.kind: c for c in (Offset, GainOffset, Polynomial, PiecewiseLinear)
}  # and CallendarVanDusen, registered after its definition below


def _expect_kind(d: Mapping[str, Any], kind: str) -> None:
    if d.get("kind") != kind:
        raise ModelError(f"expected kind {kind!r}, got {d.get('kind')!r}")


def model_from_dict(d: Mapping[str, Any]) -> CorrectionModel:
    """Build whichever model ``d["kind"]`` names (the inverse of ``model.to_dict()``)."""
    cls = _KINDS.get(str(d.get("kind")))
    if cls is None:
        raise ModelError(f"unknown model kind {d.get('kind')!r}; known: {sorted(_KINDS)}")
    try:
        return cls.from_dict(d)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{cls.kind}: malformed model data: {exc}") from exc


# -- Callendar–Van Dusen (IEC 60751) ---------------------------------------------------------


def cvd_resistance(t_c: npt.ArrayLike, r0: float, a: float, b: float, c: float) -> FloatArray:
    """Resistance of a platinum thermometer at t_c (°C), IEC 60751:

    R = R0·(1 + A·t + B·t²) for t ≥ 0 °C, R = R0·(1 + A·t + B·t² + C·(t − 100)·t³) below.
    """
    t = _as_float(t_c)
    poly = 1.0 + a * t + b * t * t
    cubic = np.where(t < 0.0, c * (t - 100.0) * t**3, 0.0)
    return np.asarray(r0 * (poly + cubic), dtype=np.float64)


def cvd_temperature(
    r: npt.ArrayLike,
    r0: float,
    a: float,
    b: float,
    c: float,
    *,
    tol_c: float = 1e-10,
    max_iter: int = 50,
) -> FloatArray:
    """Temperature (°C) of a platinum thermometer of resistance r, the inverse of
    ``cvd_resistance``: closed form (the root of the quadratic) for R ≥ R0, Newton iteration
    on the full equation (started from the quadratic root) for R < R0. Vectorised; raises
    ``ModelError`` if the iteration does not converge or r ≤ 0."""
    ra = _as_float(r)
    if np.any(~(ra > 0)):
        raise ModelError("cvd_temperature: resistance must be > 0")
    if b == 0.0:
        quad = (ra / r0 - 1.0) / a
    else:
        disc = a * a - 4.0 * b * (1.0 - ra / r0)
        if np.any(disc < 0):
            raise ModelError("cvd_temperature: resistance beyond the quadratic's maximum")
        quad = (-a + np.sqrt(disc)) / (2.0 * b)
    t = np.asarray(quad, dtype=np.float64)
    below = ra < r0
    if np.any(below) and c != 0.0:
        tb = t[below] if t.ndim else t.copy()
        rb = ra[below] if ra.ndim else ra
        for _ in range(max_iter):
            f = r0 * (1.0 + a * tb + b * tb**2 + c * (tb - 100.0) * tb**3) - rb
            df = r0 * (a + 2.0 * b * tb + c * (4.0 * tb**3 - 300.0 * tb**2))
            step = f / df
            tb = tb - step
            if np.all(np.abs(step) <= tol_c):
                break
        else:
            raise ModelError("cvd_temperature: Newton iteration did not converge")
        if t.ndim:
            t[below] = tb
        else:
            t = np.asarray(tb, dtype=np.float64)
    return t


IEC_60751 = (100.0, 3.9083e-3, -5.775e-7, -4.183e-12)  # Pt100: R0, A, B, C


@dataclass(frozen=True)
class CallendarVanDusen:
    """The correction of a temperature that a readout computed from a platinum thermometer's
    resistance with *nominal* coefficients (``nominal``: R0, A, B, C; IEC 60751's Pt100 by
    default), given the thermometer's *calibrated* coefficients (``r0``, ``a``, ``b``,
    ``c``) and the covariance of (r0, a, b) from their fit:

    t_true = T(R(t_ind; nominal); calibrated),  δ(t_ind) = t_true − t_ind.

    ``u_model`` propagates the covariance through the implicit derivative of R(t) = R_ind:
    ∂t/∂p = −(∂R/∂p)/(∂R/∂t) with ∂R/∂R0 = R/R0, ∂R/∂A = R0·t, ∂R/∂B = R0·t² (C is taken as
    exact: it matters below 0 °C only and is rarely fitted). Checked against a Monte Carlo
    propagation in the tests.
    """

    kind: ClassVar[str] = "cvd"

    r0: float
    a: float
    b: float
    c: float = 0.0
    covariance: tuple[tuple[float, ...], ...] = ()
    nominal: tuple[float, float, float, float] = IEC_60751
    dof: float = math.inf
    x_min: float = -200.0
    x_max: float = 850.0

    def __post_init__(self) -> None:
        if not (self.r0 > 0 and self.a > 0):
            raise ModelError("cvd: R0 and A must be > 0")
        if len(self.nominal) != 4 or not (self.nominal[0] > 0 and self.nominal[1] > 0):
            raise ModelError("cvd: nominal must be (R0, A, B, C) with R0, A > 0")
        cov = np.zeros((3, 3)) if not self.covariance else _matrix(self.covariance, 3, "cvd")
        object.__setattr__(self, "covariance", _tuple2(cov))
        object.__setattr__(self, "nominal", tuple(float(v) for v in self.nominal))
        _check_range(self.x_min, self.x_max, "cvd")
        _check_dof(self.dof, "cvd")

    @property
    def cov(self) -> FloatArray:
        return np.array(self.covariance, dtype=np.float64)

    def in_range(self, x: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return _mask(_as_float(x), self.x_min, self.x_max)

    def _true(self, x: FloatArray) -> FloatArray:
        r = cvd_resistance(x, *self.nominal)
        return cvd_temperature(r, self.r0, self.a, self.b, self.c)

    def correction(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        ok = self.in_range(xa)
        safe = np.where(ok, xa, 0.5 * (self.x_min + self.x_max))
        return _nan_outside(np.asarray(self._true(safe) - safe, dtype=np.float64), ok)

    def apply(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        return xa + self.correction(xa)

    def u_model(self, x: npt.ArrayLike) -> FloatArray:
        xa = _as_float(x)
        ok = self.in_range(xa)
        safe = np.where(ok, xa, 0.5 * (self.x_min + self.x_max))
        t = self._true(safe)
        r = cvd_resistance(safe, *self.nominal)
        cubic_dt = np.where(t < 0.0, self.c * (4.0 * t**3 - 300.0 * t**2), 0.0)
        dr_dt = self.r0 * (self.a + 2.0 * self.b * t + cubic_dt)
        jac = -np.stack([r / self.r0, self.r0 * t, self.r0 * t * t], axis=-1) / dr_dt[..., None]
        var = np.einsum("...i,ij,...j->...", jac, self.cov, jac)
        u = np.sqrt(np.clip(var, 0.0, None))
        return _nan_outside(np.asarray(u, dtype=np.float64), ok)

    def inverse(self, y: npt.ArrayLike) -> FloatArray:
        """The indicated temperature whose corrected value is y."""
        ya = _as_float(y)
        r = cvd_resistance(ya, self.r0, self.a, self.b, self.c)
        x = cvd_temperature(r, *self.nominal)
        return _snap_inverse(np.asarray(x, dtype=np.float64), self.x_min, self.x_max)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "r0": self.r0, "a": self.a, "b": self.b, "c": self.c,
                "covariance": [list(r) for r in self.covariance],
                "nominal": list(self.nominal), "dof": _opt(self.dof),
                "x_min": self.x_min, "x_max": self.x_max}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CallendarVanDusen:
        _expect_kind(d, cls.kind)
        nominal = tuple(float(v) for v in d.get("nominal") or IEC_60751)
        if len(nominal) != 4:
            raise ModelError("cvd: nominal must be (R0, A, B, C)")
        return cls(
            r0=float(d["r0"]), a=float(d["a"]), b=float(d["b"]), c=float(d.get("c", 0.0)),
            covariance=tuple(tuple(float(v) for v in row) for row in d.get("covariance") or ()),
            nominal=(nominal[0], nominal[1], nominal[2], nominal[3]),
            dof=_from_opt(d.get("dof"), math.inf),
            x_min=float(d.get("x_min", -200.0)), x_max=float(d.get("x_max", 850.0)),
        )


_KINDS[CallendarVanDusen.kind] = CallendarVanDusen
