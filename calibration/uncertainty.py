"""Uncertainty evaluation after the GUM (JCGM 100:2008): pure and synchronous.

Two paths:

* the **budget** path (once per certificate or configuration): ``Contribution``s, each a
  standard uncertainty obtained from a quoted value and a distribution, combined by
  ``combine`` into a ``Budget`` with u_c, per-contribution shares, ν_eff (Welch–Satterthwaite,
  GUM G.4.1), the coverage factor k from Student's t at ν_eff and U = k·u_c;
* the **per-reading** path (vectorised, no Python loop per reading): ``resolution_u``,
  ``drift_u``, ``rectangular_u`` … and ``reading_uncertainty``, which adds arrays of
  standard uncertainties in quadrature.

Student's t quantiles are computed here (regularised incomplete beta function by continued
fraction, then bisection) to avoid a SciPy dependency; they agree with the published tables
to all printed digits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from calibration.errors import CalibrationError

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "Budget",
    "Contribution",
    "Distribution",
    "UncertaintyError",
    "combine",
    "coverage_factor",
    "drift_u",
    "reading_uncertainty",
    "rectangular_u",
    "resolution_u",
    "triangular_u",
    "u_shaped_u",
    "welch_satterthwaite",
]

SQRT3 = math.sqrt(3.0)
SQRT6 = math.sqrt(6.0)
SQRT2 = math.sqrt(2.0)


class UncertaintyError(CalibrationError, ValueError):
    """An uncertainty contribution or budget is invalid."""


class Distribution(StrEnum):
    """How a contribution's quoted value turns into a standard uncertainty."""

    NORMAL = "normal"  # value = expanded uncertainty U at coverage factor k: u = U/k
    RECTANGULAR = "rectangular"  # value = half-width a: u = a/√3
    TRIANGULAR = "triangular"  # value = half-width a: u = a/√6
    U_SHAPED = "u_shaped"  # value = half-width a (arcsine): u = a/√2


_DIVISOR = {
    Distribution.RECTANGULAR: SQRT3,
    Distribution.TRIANGULAR: SQRT6,
    Distribution.U_SHAPED: SQRT2,
}


@dataclass(frozen=True)
class Contribution:
    """One line of an uncertainty budget.

    ``value`` is what the source quotes: for ``NORMAL`` an uncertainty at coverage factor
    ``k`` (k = 1: already a standard uncertainty), otherwise the half-width a of the
    distribution. ``sensitivity`` is cᵢ = ∂f/∂xᵢ, ``dof`` the degrees of freedom νᵢ (∞ for a
    Type B evaluation taken as exactly known).
    """

    name: str
    value: float
    distribution: Distribution = Distribution.NORMAL
    k: float = 1.0
    sensitivity: float = 1.0
    dof: float = math.inf

    def __post_init__(self) -> None:
        object.__setattr__(self, "distribution", Distribution(self.distribution))
        if not (self.value >= 0 and math.isfinite(self.value)):
            raise UncertaintyError(f"{self.name}: value must be finite and >= 0")
        if not (self.k > 0 and math.isfinite(self.k)):
            raise UncertaintyError(f"{self.name}: coverage factor must be > 0")
        if not math.isfinite(self.sensitivity):
            raise UncertaintyError(f"{self.name}: sensitivity must be finite")
        if not self.dof > 0:
            raise UncertaintyError(f"{self.name}: degrees of freedom must be > 0")

    @classmethod
    def normal(
        cls,
        name: str,
        u: float,
        *,
        k: float = 1.0,
        sensitivity: float = 1.0,
        dof: float = math.inf,
    ) -> Contribution:
        return cls(name, u, Distribution.NORMAL, k, sensitivity, dof)

    @classmethod
    def rectangular(
        cls, name: str, half_width: float, *, sensitivity: float = 1.0, dof: float = math.inf
    ) -> Contribution:
        return cls(name, half_width, Distribution.RECTANGULAR, 1.0, sensitivity, dof)

    @classmethod
    def triangular(
        cls, name: str, half_width: float, *, sensitivity: float = 1.0, dof: float = math.inf
    ) -> Contribution:
        return cls(name, half_width, Distribution.TRIANGULAR, 1.0, sensitivity, dof)

    @classmethod
    def u_shaped(
        cls, name: str, half_width: float, *, sensitivity: float = 1.0, dof: float = math.inf
    ) -> Contribution:
        return cls(name, half_width, Distribution.U_SHAPED, 1.0, sensitivity, dof)

    @property
    def standard_uncertainty(self) -> float:
        """u(xᵢ), before the sensitivity coefficient."""
        if self.distribution is Distribution.NORMAL:
            return self.value / self.k
        return self.value / _DIVISOR[self.distribution]

    @property
    def u_y(self) -> float:
        """|cᵢ|·u(xᵢ): this contribution to the standard uncertainty of the result."""
        return abs(self.sensitivity) * self.standard_uncertainty


@dataclass(frozen=True)
class Budget:
    """The result of ``combine``."""

    contributions: tuple[Contribution, ...]
    u_c: float  # combined standard uncertainty
    dof_eff: float  # Welch–Satterthwaite ν_eff (∞ if every νᵢ is ∞)
    k: float  # coverage factor for ``coverage`` at ν_eff
    coverage: float  # coverage probability p, e.g. 0.95
    shares: tuple[float, ...]  # (cᵢuᵢ)²/u_c², same order as contributions; sums to 1

    @property
    def expanded(self) -> float:
        """U = k·u_c."""
        return self.k * self.u_c

    def share_of(self, name: str) -> float:
        for c, s in zip(self.contributions, self.shares, strict=True):
            if c.name == name:
                return s
        raise KeyError(name)


def welch_satterthwaite(u_i: npt.ArrayLike, dof_i: npt.ArrayLike) -> float:
    """ν_eff = u_c⁴ / Σ uᵢ⁴/νᵢ (GUM G.4.1) for contributions uᵢ = |cᵢ|u(xᵢ) (uncorrelated).

    Infinite νᵢ add nothing to the denominator; ∞ if all are infinite or u_c = 0.
    """
    u = np.ravel(np.asarray(u_i, dtype=np.float64))
    nu = np.ravel(np.asarray(dof_i, dtype=np.float64))
    if u.shape != nu.shape:
        raise UncertaintyError("welch_satterthwaite: u and dof differ in length")
    if np.any(~(nu > 0)):
        raise UncertaintyError("welch_satterthwaite: degrees of freedom must be > 0")
    u_c2 = float(np.sum(u**2))
    finite = np.isfinite(nu)
    denominator = float(np.sum(u[finite] ** 4 / nu[finite]))
    if denominator == 0.0 or u_c2 == 0.0:
        return math.inf
    return u_c2**2 / denominator


def combine(
    contributions: Iterable[Contribution], *, coverage: float = 0.95, truncate_dof: bool = True
) -> Budget:
    """Combine uncorrelated contributions (GUM 5.1.2): u_c² = Σ (cᵢ·uᵢ)².

    k is Student's t for a two-sided ``coverage`` at ν_eff; with ``truncate_dof`` (default)
    ν_eff is first truncated to the next lower integer, as GUM G.6.4 recommends (the
    conservative choice). ν_eff itself is reported untruncated.
    """
    items = tuple(contributions)
    if not items:
        raise UncertaintyError("combine: no contributions")
    names = [c.name for c in items]
    if len(set(names)) != len(names):
        raise UncertaintyError(f"combine: duplicate contribution names in {names}")
    u = np.array([c.u_y for c in items])
    nu = np.array([c.dof for c in items])
    u_c2 = float(np.sum(u**2))
    u_c = math.sqrt(u_c2)
    dof_eff = welch_satterthwaite(u, nu)
    dof_k = math.floor(dof_eff) if truncate_dof and math.isfinite(dof_eff) else dof_eff
    k = coverage_factor(max(dof_k, 1.0), coverage)
    shares = tuple(float(s) for s in (u**2 / u_c2 if u_c2 > 0 else np.zeros_like(u)))
    return Budget(items, u_c, dof_eff, k, coverage, shares)


# -- Student's t -----------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            return h
    raise UncertaintyError("incomplete beta: continued fraction did not converge")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(ln_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_two_tail(t: float, dof: float) -> float:
    """P(|T| > t) for Student's t with ``dof`` degrees of freedom, t ≥ 0."""
    return _betainc(0.5 * dof, 0.5, dof / (dof + t * t))


@functools.lru_cache(maxsize=4096)
def coverage_factor(dof: float, coverage: float = 0.95) -> float:
    """k = t_p(ν): the two-sided Student's t quantile with P(|T| ≤ k) = ``coverage``.

    ν = ∞ gives the normal quantile (1.959964 for 95 %). Non-integer ν is allowed. Cached:
    budgets truncate ν_eff to an integer, so the bisection (≈ 3 ms) runs once per ν.
    """
    if not 0.0 < coverage < 1.0:
        raise UncertaintyError(f"coverage must be in (0, 1), got {coverage}")
    if not dof > 0:
        raise UncertaintyError(f"degrees of freedom must be > 0, got {dof}")
    z = NormalDist().inv_cdf(0.5 + 0.5 * coverage)
    if math.isinf(dof) or dof > 1e7:
        return z
    alpha = 1.0 - coverage
    lo, hi = z, max(2.0 * z, 1.0)  # t_p(ν) > z_p for every finite ν
    while _t_two_tail(hi, dof) > alpha:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_two_tail(mid, dof) > alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


# -- per-reading helpers (vectorised) --------------------------------------------------------


def _nonneg(x: npt.ArrayLike, what: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if np.any(a < 0):
        raise UncertaintyError(f"{what} must be >= 0")
    return a


def rectangular_u(half_width: npt.ArrayLike) -> FloatArray:
    """a/√3."""
    return _nonneg(half_width, "half-width") / SQRT3


def triangular_u(half_width: npt.ArrayLike) -> FloatArray:
    """a/√6."""
    return _nonneg(half_width, "half-width") / SQRT6


def u_shaped_u(half_width: npt.ArrayLike) -> FloatArray:
    """a/√2 (arcsine distribution)."""
    return _nonneg(half_width, "half-width") / SQRT2


def resolution_u(step: npt.ArrayLike) -> FloatArray:
    """Standard uncertainty of a display or ADC step: rectangular of half-width step/2."""
    return _nonneg(step, "resolution step") / (2.0 * SQRT3)


def drift_u(rate_per_year: npt.ArrayLike, years: npt.ArrayLike) -> FloatArray:
    """Drift since calibration taken as rectangular of half-width |rate·years|."""
    r = np.asarray(rate_per_year, dtype=np.float64)
    y = _nonneg(years, "years since calibration")
    return np.asarray(np.abs(r * y) / SQRT3, dtype=np.float64)


def reading_uncertainty(
    u_cal: npt.ArrayLike,
    u_res: npt.ArrayLike = 0.0,
    u_rep: npt.ArrayLike = 0.0,
    u_drift: npt.ArrayLike = 0.0,
) -> FloatArray:
    """Root-sum-square of standard uncertainties (uncorrelated, unit sensitivity),
    elementwise with numpy broadcasting: calibration, resolution, repeatability, drift."""
    parts = [_nonneg(v, "standard uncertainty") for v in (u_cal, u_res, u_rep, u_drift)]
    return np.asarray(np.sqrt(sum(np.square(p) for p in parts)), dtype=np.float64)
