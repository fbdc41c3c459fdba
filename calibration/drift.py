"""Drift from calibration history, predicted out-of-tolerance date and calibration interval.

From an instrument's successive certificates (the as-found error at each calibration point
over time):

* **Drift model per point**: weighted least squares of error against time, weights 1/u² with
  u = U/k of each certificate's point; the parameters' covariance is (XᵀWX)⁻¹, scaled by the
  reduced χ² (Birge ratio²) when the scatter exceeds the stated uncertainties. A quadratic
  term is kept only when it is significant: |c₂| / u(c₂) > t₀.₉₇₅(n − 3) (the partial F-test
  for one added parameter, F = t²), with at least 4 certificates.
* **Out-of-tolerance date**: the first day after the last calibration on which the predicted
  |error| + U (the point's latest expanded uncertainty, i.e. what the next calibration would
  state) reaches the MPE; an early date from the prediction band (|ê| + k·u(ê) + U, k = 2).
* **Intervals** (ILAC-G24:2007 / OIML D10, JJF 1139): the *simple reaction method* (method 1)
  from the latest certificate's worst ratio (|e| + U) / MPE, and the *drift-based method*: the
  longest interval after the last calibration at which the predicted end-of-period reliability
  P(|e| ≤ MPE), e ~ N(ê(t), u(ê(t))²), is at least the target (default 0.90, the JJF 1139
  target) at every point.

Pure: numbers and records in, numbers out. Sources and the fractions chosen:
``docs/drift.md``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from calibration.errors import CalibrationError
from calibration.legal import class_number
from calibration.records import Certificate, Instrument, expires_on
from calibration.uncertainty import coverage_factor

FloatArray = npt.NDArray[np.float64]

# simple reaction method (our choices; OIML D10 leaves them to the user): worst ratio
# r = (|e| + U) / MPE of the latest calibration
REACTION_STEPS: tuple[tuple[float, float, str], ...] = (
    (0.5, 1.25, "lengthen: every point within half the MPE"),
    (0.8, 1.0, "keep: every point within 80 % of the MPE"),
    (1.0, 0.8, "shorten: a point uses more than 80 % of the MPE"),
    (math.inf, 0.5, "halve: out of tolerance (|e| + U > MPE)"),
)
BAND_K = 2.0
MAX_HORIZON_DAYS = 20 * 365


class DriftError(CalibrationError):
    """Drift cannot be analysed (too few certificates, no MPE at any point)."""


@dataclass(frozen=True)
class Observation:
    date: dt.date
    certificate: str
    error: float
    U: float
    k: float

    @property
    def u(self) -> float:
        return self.U / self.k


@dataclass(frozen=True)
class PointDrift:
    """The drift model of one calibration point (``nominal``), time in days from ``t0``."""

    nominal: float
    mpe: float
    history: tuple[Observation, ...]
    t0: dt.date
    coeffs: tuple[float, ...]           # c0, c1 [/day], (c2 [/day²])
    cov: tuple[tuple[float, ...], ...]
    dof: int
    birge: float                        # sqrt(χ²/ν), 1 when ν = 0
    quadratic_t: float | None           # |c2|/u(c2) of the quadratic trial fit, if tried
    predicted_oot: dt.date | None       # |ê| + U reaches the MPE
    oot_early: dt.date | None           # |ê| ± k·u(ê) + U reaches the MPE

    @property
    def degree(self) -> int:
        return len(self.coeffs) - 1

    @property
    def rate_per_day(self) -> float:
        """The drift rate at the last calibration."""
        t = float((self.history[-1].date - self.t0).days)
        return self.coeffs[1] + (2 * self.coeffs[2] * t if self.degree == 2 else 0.0)

    @property
    def u_rate_per_day(self) -> float:
        t = float((self.history[-1].date - self.t0).days)
        g = np.array([0.0, 1.0, 2 * t][: len(self.coeffs)])
        return float(math.sqrt(g @ np.array(self.cov) @ g))

    def predict(self, days: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Predicted error and its standard uncertainty at ``days`` after ``t0``."""
        t = np.asarray(days, dtype=np.float64)
        x = np.vander(np.atleast_1d(t), len(self.coeffs), increasing=True)
        mean = x @ np.array(self.coeffs)
        u = np.sqrt(np.einsum("ij,jk,ik->i", x, np.array(self.cov), x))
        return mean, u

    def as_dict(self) -> dict[str, Any]:
        return {
            "nominal": self.nominal, "mpe": self.mpe, "t0": self.t0.isoformat(),
            "degree": self.degree, "coeffs": list(self.coeffs),
            "cov": [list(r) for r in self.cov], "dof": self.dof, "birge": self.birge,
            "quadratic_t": self.quadratic_t,
            "rate_per_day": self.rate_per_day, "u_rate_per_day": self.u_rate_per_day,
            "predicted_oot": _iso(self.predicted_oot), "oot_early": _iso(self.oot_early),
            "history": [{"date": o.date.isoformat(), "certificate": o.certificate,
                         "error": o.error, "U": o.U, "k": o.k} for o in self.history],
        }


@dataclass(frozen=True)
class Interval:
    method: Literal["simple_reaction", "drift_based"]
    days: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "days": self.days, "reason": self.reason}


@dataclass(frozen=True)
class DriftReport:
    instrument: str
    unit: str
    points: tuple[PointDrift, ...]
    skipped: tuple[str, ...]            # points not analysed, with the reason
    last_calibration: dt.date
    current_interval_days: int
    reaction: Interval
    drift_based: Interval
    reliability_target: float

    @property
    def predicted_oot(self) -> dt.date | None:
        return min((p.predicted_oot for p in self.points if p.predicted_oot), default=None)

    @property
    def oot_early(self) -> dt.date | None:
        return min((p.oot_early for p in self.points if p.oot_early), default=None)

    @property
    def recommended_days(self) -> int | None:
        """The shorter of the two methods' intervals."""
        days = [d for d in (self.reaction.days, self.drift_based.days) if d is not None]
        return min(days, default=None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument, "unit": self.unit,
            "last_calibration": self.last_calibration.isoformat(),
            "current_interval_days": self.current_interval_days,
            "predicted_oot": _iso(self.predicted_oot), "oot_early": _iso(self.oot_early),
            "reliability_target": self.reliability_target,
            "recommended_days": self.recommended_days,
            "reaction": self.reaction.as_dict(), "drift_based": self.drift_based.as_dict(),
            "points": [p.as_dict() for p in self.points], "skipped": list(self.skipped),
        }


def _iso(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


def mpe_at(instrument: Instrument, value: float) -> float:
    """The maximum permissible error at ``value``: a % of reading + b % of range, or, for an
    accuracy class c, c % of the reading (the class as a relative error, as for energy meters
    and flowmeters)."""
    acc = instrument.accuracy
    span = max(abs(instrument.range.min), abs(instrument.range.max))
    if acc.class_ is not None:
        return class_number(acc.class_)[0] / 100.0 * abs(value)
    assert acc.a_pct_reading is not None
    assert acc.b_pct_range is not None
    return (acc.a_pct_reading * abs(value) + acc.b_pct_range * span) / 100.0


def fit(t_days: npt.ArrayLike, errors: npt.ArrayLike, u: npt.ArrayLike,
        degree: int) -> tuple[FloatArray, FloatArray, int, float]:
    """Weighted least squares of ``errors`` on a polynomial in ``t_days``.

    Returns coefficients (increasing powers), their covariance (scaled by χ²/ν when > 1),
    ν = n − (degree + 1) and the Birge ratio sqrt(χ²/ν) (1 when ν = 0).
    """
    t = np.asarray(t_days, dtype=np.float64)
    y = np.asarray(errors, dtype=np.float64)
    w = 1.0 / np.asarray(u, dtype=np.float64) ** 2
    x = np.vander(t, degree + 1, increasing=True)
    a = x.T @ (w[:, None] * x)
    cov = np.asarray(np.linalg.inv(a), dtype=np.float64)
    beta = cov @ (x.T @ (w * y))
    dof = len(t) - (degree + 1)
    birge = 1.0
    if dof > 0:
        chi2 = float(np.sum(w * (y - x @ beta) ** 2))
        birge = math.sqrt(chi2 / dof)
        cov = cov * max(1.0, birge**2)
    return beta, cov, dof, birge


def _first_day(days: FloatArray, reached: npt.NDArray[np.bool_]) -> float | None:
    idx = np.flatnonzero(reached)
    return float(days[idx[0]]) if idx.size else None


def analyse_point(nominal: float, history: Sequence[Observation], mpe: float,
                  horizon_days: int = MAX_HORIZON_DAYS) -> PointDrift:
    hist = tuple(sorted(history, key=lambda o: o.date))
    t0 = hist[0].date
    t = [float((o.date - t0).days) for o in hist]
    e = [o.error for o in hist]
    u = [o.u for o in hist]
    beta, cov, dof, birge = fit(t, e, u, 1)
    quad_t: float | None = None
    if len(hist) >= 4:
        b2, c2, dof2, birge2 = fit(t, e, u, 2)
        quad_t = abs(float(b2[2])) / math.sqrt(float(c2[2, 2]))
        if quad_t > coverage_factor(dof2, 0.95):
            beta, cov, dof, birge = b2, c2, dof2, birge2
    coeffs = tuple(float(b) for b in beta)
    covt = tuple(tuple(float(c) for c in row) for row in cov)
    last = t[-1]
    days = np.arange(last + 1, last + horizon_days + 1, dtype=np.float64)
    x = np.vander(days, len(coeffs), increasing=True)
    mean = x @ beta
    um = np.sqrt(np.einsum("ij,jk,ik->i", x, cov, x))
    U = hist[-1].U
    oot = _first_day(days, np.abs(mean) + U >= mpe)
    early = _first_day(days, np.abs(mean) + BAND_K * um + U >= mpe)

    def date_of(d: float | None) -> dt.date | None:
        return None if d is None else t0 + dt.timedelta(days=int(d))

    return PointDrift(nominal, mpe, hist, t0, coeffs, covt, dof, birge, quad_t,
                      date_of(oot), date_of(early))


def reliability(point: PointDrift, days: npt.ArrayLike) -> FloatArray:
    """P(|e| ≤ MPE) at ``days`` after the point's ``t0``, e ~ N(ê, u(ê)²)."""
    mean, u = point.predict(days)
    nd = NormalDist()
    u = np.maximum(u, 1e-300)
    hi = (point.mpe - mean) / u
    lo = (-point.mpe - mean) / u
    cdf = np.vectorize(nd.cdf, otypes=[np.float64])
    return np.asarray(cdf(hi) - cdf(lo), dtype=np.float64)


def reaction_interval(points: Iterable[PointDrift], current_days: int) -> Interval:
    """OIML D10 method 1 (simple reaction / staircase) on the latest calibration."""
    worst = max(((abs(p.history[-1].error) + p.history[-1].U) / p.mpe, p.nominal)
                for p in points)
    r, nominal = worst
    for limit, factor, what in REACTION_STEPS:
        if r <= limit:
            days = max(1, round(current_days * factor))
            return Interval("simple_reaction", days,
                            f"{what}: worst (|e| + U)/MPE = {r:.2f} at {nominal:g}; "
                            f"{current_days} d × {factor:g}")
    raise AssertionError("unreachable: the last step has no limit")


def drift_interval(points: Sequence[PointDrift], last: dt.date, target: float,
                   horizon_days: int = MAX_HORIZON_DAYS) -> Interval:
    """The longest interval after ``last`` with reliability ≥ ``target`` at every point."""
    days_after = np.arange(1, horizon_days + 1, dtype=np.float64)
    ok = np.ones_like(days_after, dtype=bool)
    for p in points:
        offset = float((last - p.t0).days)
        ok &= reliability(p, days_after + offset) >= target
    bad = np.flatnonzero(~ok)
    if bad.size == 0:
        return Interval("drift_based", horizon_days,
                        f"reliability stays ≥ {target:.0%} for the whole horizon "
                        f"({horizon_days} d)")
    n = int(bad[0])  # days_after[n] is the first failing day; n days are fine
    if n == 0:
        return Interval("drift_based", None,
                        f"reliability is already below {target:.0%} one day after {last}")
    return Interval("drift_based", n,
                    f"predicted end-of-period reliability ≥ {target:.0%} up to {n} d after "
                    f"{last} (JJF 1139 / ILAC-G24)")


def analyse(instrument: Instrument, certificates: Iterable[Certificate],
            reliability_target: float = 0.90,
            horizon_days: int = MAX_HORIZON_DAYS) -> DriftReport:
    """Drift models, predicted out-of-tolerance dates and interval recommendations of one
    instrument from its certificates (those of other instruments are ignored).

    Points are matched across certificates by nominal value; a point needs at least two
    certificates and a non-zero MPE. Raises :class:`DriftError` when no point qualifies.
    """
    if not 0.0 < reliability_target < 1.0:
        raise DriftError(f"reliability target must be in (0, 1), got {reliability_target}")
    certs = sorted((c for c in certificates if c.instrument == instrument.id),
                   key=lambda c: c.calibration_date)
    if len(certs) < 2:
        raise DriftError(f"instrument {instrument.id!r} has {len(certs)} certificate(s); "
                         "drift needs at least 2")
    by_nominal: dict[float, list[Observation]] = {}
    for c in certs:
        for p in c.points:
            by_nominal.setdefault(p.nominal, []).append(
                Observation(c.calibration_date, c.id, p.error, p.U, p.k))
    points: list[PointDrift] = []
    skipped: list[str] = []
    for nominal in sorted(by_nominal):
        hist = by_nominal[nominal]
        mpe = mpe_at(instrument, nominal)
        if len({o.date for o in hist}) < 2:
            skipped.append(f"{nominal:g}: calibrated on one date only")
        elif mpe <= 0:
            skipped.append(f"{nominal:g}: MPE is 0 there")
        else:
            points.append(analyse_point(nominal, hist, mpe, horizon_days))
    if not points:
        raise DriftError(f"no point of {instrument.id!r} can be analysed: "
                         + "; ".join(skipped))
    last = certs[-1]
    current = (expires_on(last, instrument) - last.calibration_date).days
    return DriftReport(instrument.id, instrument.unit, tuple(points), tuple(skipped),
                       last.calibration_date, current, reaction_interval(points, current),
                       drift_interval(points, last.calibration_date, reliability_target,
                                      horizon_days),
                       reliability_target)
