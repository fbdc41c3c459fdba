"""The maths of a calibration session: pure and synchronous.

From the raw readings of the DUT and the reference at each setpoint to

* per point: mean, s, n, Type A u = s/√n (ν = n − 1), the Type B contributions of the
  procedure, the combined standard uncertainty (``calibration.uncertainty.combine``), ν_eff
  (Welch–Satterthwaite), k (Student's t, two-sided 95 %, ν_eff truncated down, GUM G.6.4),
  U = k·u_c, the DUT's error e = indicated − reference, and the conformity decision
  (``calibration.decision``) with its TUR;
* over the session: the DUT's correction model (``linear`` → ``GainOffset``, ``polynomial``
  → ``Polynomial``, or ``cvd``: the R0, A, B of the DUT's PRT fitted to its resistance, and
  as the certificate's correction a ``CallendarVanDusen`` model of the readout's
  temperatures) with its covariance, by generalised least squares with the covariance of
  the points (:func:`points_covariance`: the reference certificate's term, and any other
  term marked ``shared``, is one error common to every point, not averaged down);
* the ``Certificate`` record, traceable through the reference's certificate.

The model of the measurement, per point: e = x_DUT − x_ref, x_ref = the reference's reading
corrected by its certificate's model (for a source: its setting, corrected likewise, i.e.
the source's actual output). Sensitivities are +1 for DUT terms and −1 for reference terms.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration.decision import Decision, Rule, Zone, decide
from calibration.errors import CalibrationError
from calibration.models import (
    CallendarVanDusen,
    CorrectionModel,
    GainOffset,
    ModelError,
    Polynomial,
    cvd_temperature,
    fit_polynomial,
    model_from_dict,
)
from calibration.procedure import InstrumentSpec, Procedure
from calibration.records import Certificate, Instrument, Point
from calibration.uncertainty import Budget, Contribution, Distribution, combine

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "COVERAGE",
    "CvdFit",
    "PointResult",
    "SessionError",
    "SessionResult",
    "build_certificate",
    "conformity_statement",
    "evaluate_point",
    "evaluate_session",
    "fit_correction",
    "fit_cvd",
    "mpe_function",
    "points_covariance",
    "to_unit",
]

#: Coverage probability of U. k is Student's t at ν_eff for two-sided 95 % (1.960 at ν = ∞),
#: not the k = 2 (95.45 %) convention; see docs/calibration-sessions.md.
COVERAGE = 0.95


class SessionError(CalibrationError, ValueError):
    """A session's data cannot be evaluated (no readings, no usable reference certificate…)."""


def to_unit(spec: InstrumentSpec, raw: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Raw readings in the procedure's unit: ohms → °C through ``spec.cvd``, else as read."""
    values = np.asarray(raw, dtype=np.float64)
    if spec.cvd is None:
        return values
    c = spec.cvd
    return np.asarray(cvd_temperature(values, c.r0, c.a, c.b, c.c), dtype=np.float64)


def mpe_function(proc: Procedure, dut: Instrument | None) -> Callable[[int], float | None]:
    """MPE at setpoint i: the setpoint's own, else the procedure's, else None (no decision).
    ``from_dut`` takes the DUT's registry accuracy ±(a % of reading + b % of range)."""
    spec = proc.acceptance.mpe

    def at(i: int) -> float | None:
        sp = proc.setpoints[i]
        if sp.mpe is not None:
            return sp.mpe
        if spec is None:
            return None
        if not spec.from_dut:
            return spec.at(sp.nominal)
        if dut is None:
            raise SessionError("MPE from the DUT's accuracy, but the DUT is not in the registry")
        acc = dut.accuracy
        if acc.a_pct_reading is None or acc.b_pct_range is None:
            raise SessionError(f"DUT {dut.id}: accuracy class {acc.class_!r} gives no MPE "
                               "terms; set acceptance.mpe in the procedure")
        span = max(abs(dut.range.min), abs(dut.range.max))
        return acc.a_pct_reading / 100 * abs(sp.nominal) + acc.b_pct_range / 100 * span

    return at


def _reference_u(cert: Certificate, at: float) -> float:
    """Standard uncertainty U/k of the reference's certificate at ``at``: interpolated
    linearly between its points, the end points' values beyond them."""
    pts = sorted(cert.points, key=lambda p: p.reference)
    xs = np.array([p.reference for p in pts])
    us = np.array([p.U / p.k for p in pts])
    return float(np.interp(at, xs, us))


@dataclass(frozen=True)
class PointResult:
    """Everything computed at one setpoint."""

    index: int
    nominal: float
    n: int
    dut_mean: float  # in the procedure's unit (indicated value)
    dut_std: float
    ref_n: int
    ref_mean: float  # the reference's reading (or setting) in the unit, uncorrected
    ref_std: float
    reference: float  # x_ref: corrected by the reference's certificate
    error: float  # indicated − reference
    budget: Budget
    mpe: float | None
    decision: Decision | None
    stable: bool | None  # None: no stability criterion in the procedure
    shared: tuple[str, ...] = ()  # budget terms common to every point of the session

    @property
    def u_shared(self) -> tuple[float, ...]:
        """|cᵢ|u(xᵢ) of each shared term, in the order of ``shared``."""
        by_name = {c.name: c.u_y for c in self.budget.contributions}
        return tuple(by_name[n] for n in self.shared)

    @property
    def u_a(self) -> float:
        return self.dut_std / math.sqrt(self.n)

    @property
    def u_c(self) -> float:
        return self.budget.u_c

    @property
    def k(self) -> float:
        return self.budget.k

    @property
    def U(self) -> float:
        return self.budget.expanded

    @property
    def dof_eff(self) -> float:
        return self.budget.dof_eff

    def budget_rows(self) -> list[dict[str, Any]]:
        """(contribution, value, distribution, sensitivity, u(xᵢ), |cᵢ|u(xᵢ), share)."""
        rows = []
        for c, share in zip(self.budget.contributions, self.budget.shares, strict=True):
            rows.append({
                "name": c.name, "value": c.value, "distribution": str(c.distribution),
                "k": c.k, "sensitivity": c.sensitivity, "u": c.standard_uncertainty,
                "u_y": c.u_y, "dof": None if math.isinf(c.dof) else c.dof, "share": share,
                "shared": c.name in self.shared,
            })
        return rows

    def as_dict(self) -> dict[str, Any]:
        d = self.decision
        return {
            "index": self.index, "nominal": self.nominal, "n": self.n,
            "dut_mean": self.dut_mean, "dut_std": self.dut_std, "u_a": self.u_a,
            "ref_n": self.ref_n, "ref_mean": self.ref_mean, "ref_std": self.ref_std,
            "reference": self.reference, "error": self.error, "u_c": self.u_c,
            "dof_eff": None if math.isinf(self.dof_eff) else self.dof_eff, "k": self.k,
            "U": self.U, "mpe": self.mpe, "stable": self.stable,
            "tur": None if d is None or math.isinf(d.tur) else d.tur,
            "accepted": None if d is None else d.accepted,
            "zone": None if d is None else str(d.zone),
            "budget": self.budget_rows(),
        }


def _stable(values: np.ndarray[Any, np.dtype[np.float64]], limit: float | None) -> bool | None:
    if limit is None:
        return None
    half = len(values) // 2
    return bool(abs(float(values[half:].mean()) - float(values[:half].mean())) <= limit)


def evaluate_point(
    proc: Procedure,
    i: int,
    dut_raw: Sequence[float],
    ref_raw: Sequence[float],
    *,
    reference_certificate: Certificate,
    dut: Instrument | None = None,
    mpe: float | None = None,
) -> PointResult:
    """The result at setpoint ``i`` from its raw readings (same order as taken)."""
    sp = proc.setpoints[i]
    x = to_unit(proc.dut, dut_raw)
    r = to_unit(proc.reference, ref_raw)
    if x.size < 2:
        raise SessionError(f"setpoint {i} ({sp.nominal:g}): {x.size} DUT readings, need >= 2")
    if r.size < 1:
        raise SessionError(f"setpoint {i} ({sp.nominal:g}): no reference reading")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(r))):
        raise SessionError(f"setpoint {i} ({sp.nominal:g}): a reading is not finite")
    n = int(x.size)
    mean, std = float(x.mean()), float(x.std(ddof=1))
    ref_mean = float(r.mean())
    ref_std = float(r.std(ddof=1)) if r.size > 1 else 0.0
    model = model_from_dict(reference_certificate.model)
    if not bool(model.in_range(ref_mean)):
        raise SessionError(f"setpoint {i} ({sp.nominal:g}): reference value {ref_mean:g} is "
                           f"outside the range of certificate {reference_certificate.id}")
    reference = float(model.apply(ref_mean))
    contributions = [Contribution.normal("DUT repeatability (Type A)", std / math.sqrt(n),
                                         dof=n - 1)]
    shared = tuple(spec.name for spec in proc.contributions if spec.is_shared)
    if not proc.reference.is_source and r.size > 1:
        contributions.append(Contribution.normal(
            "reference repeatability (Type A)", ref_std / math.sqrt(r.size), sensitivity=-1.0,
            dof=r.size - 1))
    for spec in proc.contributions:
        dof = math.inf if spec.dof is None else spec.dof
        if spec.source == "reference_certificate":
            contributions.append(Contribution.normal(
                spec.name, _reference_u(reference_certificate, reference), sensitivity=-1.0,
                dof=dof))
            continue
        if spec.source == "dut_resolution":
            step = spec.value if spec.value is not None else (
                dut.resolution if dut is not None else None)
            if step is None:
                raise SessionError(f"{spec.name}: no value and the DUT is not in the registry")
            contributions.append(Contribution.rectangular(spec.name, step / 2.0,
                                                          sensitivity=spec.sensitivity, dof=dof))
            continue
        value = (spec.value or 0.0) + spec.ppm * 1e-6 * abs(sp.nominal)
        contributions.append(Contribution(spec.name, value, Distribution(spec.distribution),
                                          spec.k, spec.sensitivity, dof))
    budget = combine(contributions, coverage=COVERAGE)
    if not budget.expanded > 0:
        raise SessionError(f"setpoint {i} ({sp.nominal:g}): expanded uncertainty is 0; "
                           "add the DUT resolution or the reference certificate")
    error = mean - reference
    decision = None if mpe is None else decide(error, budget.expanded, mpe,
                                               Rule(proc.acceptance.rule))
    return PointResult(i, sp.nominal, n, mean, std, int(r.size), ref_mean, ref_std, reference,
                       error, budget, mpe, decision, _stable(x, proc.defaults.stability),
                       shared)


# -- the session -------------------------------------------------------------------------


@dataclass(frozen=True)
class CvdFit:
    """R(t) = R0·(1 + A·t + B·t²) of the DUT's PRT (t ≥ 0 °C) with the covariance of
    (R0, A, B), fitted to the DUT's mean resistance against the reference temperature."""

    r0: float
    a: float
    b: float
    covariance: tuple[tuple[float, ...], ...]

    def as_dict(self) -> dict[str, Any]:
        return {"r0": self.r0, "a": self.a, "b": self.b,
                "covariance": [list(r) for r in self.covariance]}


def fit_cvd(t_ref: Sequence[float], r_dut: Sequence[float], u_r: Sequence[float] | None = None,
            *, cov_r: np.ndarray[Any, np.dtype[np.float64]] | None = None) -> CvdFit:
    """Least squares of R = p0 + p1·t + p2·t² (p0 = R0, p1 = R0·A, p2 = R0·B), weighted by
    ``u_r`` (independent points) or generalised with the points' covariance ``cov_r``, then
    (R0, A, B) with their covariance by the Jacobian of (p0, p1/p0, p2/p0)."""
    t = np.asarray(t_ref, dtype=np.float64)
    if np.any(t < 0):
        raise SessionError("fit_cvd: the quadratic CVD form holds for t >= 0 °C only")
    if t.size < 3:
        raise SessionError("fit_cvd: need at least 3 points")
    if (u_r is None) == (cov_r is None):
        raise SessionError("fit_cvd: give u_r or cov_r")
    poly = fit_polynomial(t, r_dut, 2, u_r, cov_y=cov_r,
                          valid_range=(float(t.min()), float(t.max())))
    p0, p1, p2 = poly.coefficients
    jac = np.array([[1.0, 0.0, 0.0],
                    [-p1 / p0**2, 1.0 / p0, 0.0],
                    [-p2 / p0**2, 0.0, 1.0 / p0]])
    cov = jac @ poly.cov @ jac.T
    cov = 0.5 * (cov + cov.T)
    return CvdFit(p0, p1 / p0, p2 / p0, tuple(tuple(float(v) for v in row) for row in cov))


def points_covariance(u_c: npt.ArrayLike, u_shared: npt.ArrayLike) -> FloatArray:
    """The covariance of the points' errors (or corrections) over a session.

    ``u_c`` (..., n): each point's combined standard uncertainty; ``u_shared`` (..., n, m):
    at each point the |cᵢ|u(xᵢ) of the m terms that are one error common to every point
    (the reference certificate's, by default). Each shared term contributes
    min(u_i, u_j)² between points i and j: fully correlated where its u is the same at both
    points, and where it differs only the smaller part is common, the excess independent.
    Everything else is independent between points. Vectorised over leading axes."""
    uc = np.asarray(u_c, dtype=np.float64)
    us = np.asarray(u_shared, dtype=np.float64)
    if us.shape[:-1] != uc.shape:
        raise SessionError(f"points_covariance: u_c {uc.shape} and u_shared {us.shape} differ")
    common = np.minimum(us[..., :, None, :], us[..., None, :, :]) ** 2  # (..., n, n, m)
    shared = common.sum(axis=-1)
    own = uc**2 - np.sum(us**2, axis=-1)  # the independent part of each point's variance
    n = uc.shape[-1]
    eye = np.eye(n, dtype=np.float64)
    return np.asarray(shared + eye * np.maximum(own, 0.0)[..., None, :], dtype=np.float64)


def _session_covariance(points: Sequence[PointResult]) -> FloatArray:
    u_c = np.array([p.u_c for p in points])
    u_shared = np.array([p.u_shared for p in points], dtype=np.float64).reshape(len(points), -1)
    return points_covariance(u_c, u_shared)


def fit_correction(proc: Procedure, points: Sequence[PointResult]) -> CorrectionModel:
    """The DUT's correction δ(x) = reference − indicated as a function of the indicated value,
    by generalised least squares with the covariance of the points
    (:func:`points_covariance`, taken as known, so dof is ∞): the reference certificate's
    error, one and the same at every point, is carried once into the correction's
    covariance instead of being averaged down by about √n. Valid over the indicated span
    widened by the largest |error| plus 0.5 % of the span, so that single readings at an end
    point are not cut off."""
    if not points:
        raise SessionError("no points to fit")
    x = np.array([p.dut_mean for p in points])
    y = np.array([-p.error for p in points])
    cov_y = _session_covariance(points)
    span = float(x.max() - x.min())
    margin = float(np.abs(y).max()) + 0.005 * span
    valid = (float(x.min()) - margin, float(x.max()) + margin)
    degree = {"linear": 1, "polynomial": proc.fit.degree, "cvd": 2}[proc.fit.kind]
    degree = min(degree, len(points) - 1)
    try:
        poly = fit_polynomial(x, y, degree, cov_y=cov_y, valid_range=valid)
    except ModelError as exc:
        raise SessionError(f"fit: {exc}") from exc
    if degree == 1 and proc.fit.kind == "linear":
        return GainOffset(poly.coefficients[0], poly.coefficients[1], poly.covariance,
                          poly.dof, poly.x_min, poly.x_max)
    return poly


@dataclass(frozen=True)
class SessionResult:
    points: tuple[PointResult, ...]
    model: CorrectionModel
    cvd: CvdFit | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def decided(self) -> bool:
        return all(p.decision is not None for p in self.points)

    @property
    def conforms(self) -> bool | None:
        """None when no MPE was set; else whether every point is accepted."""
        if not self.decided:
            return None
        return all(p.decision is not None and p.decision.accepted for p in self.points)


def evaluate_session(proc: Procedure, points: Sequence[PointResult],
                     raw_dut_means: Sequence[float] | None = None) -> SessionResult:
    """Fit the correction model over the finished points (``raw_dut_means``: the DUT's mean
    raw readings, ohms for a PRT, needed by the ``cvd`` fit)."""
    ordered = tuple(sorted(points, key=lambda p: p.index))
    model = fit_correction(proc, ordered)
    cvd = None
    if proc.fit.kind == "cvd":
        if raw_dut_means is None:
            raise SessionError("fit cvd needs the DUT's mean raw readings")
        # u of R from u of t: dR/dt = R0·(A + 2B·t) at each point, nominal coefficients
        assert proc.dut.cvd is not None
        nom_c = proc.dut.cvd
        slope = np.array([nom_c.r0 * (nom_c.a + 2 * nom_c.b * p.reference) for p in ordered])
        cvd = fit_cvd([p.reference for p in ordered], raw_dut_means,
                      cov_r=_session_covariance(ordered) * np.outer(slope, slope))
        # the certificate's correction: the readout's temperatures (computed with the
        # nominal coefficients) corrected by the fitted ones; quadratic form, so t ≥ 0 °C
        assert isinstance(model, Polynomial)
        nominal = proc.dut.cvd
        model = CallendarVanDusen(
            cvd.r0, cvd.a, cvd.b, 0.0, cvd.covariance,
            (nominal.r0, nominal.a, nominal.b, nominal.c), math.inf,
            max(model.x_min, 0.0), model.x_max)
    return SessionResult(ordered, model, cvd)


def conformity_statement(proc: Procedure, result: SessionResult) -> str:
    """The certificate's conformity text: rule, counts per zone and the overall decision."""
    if not result.decided:
        return ("No statement of conformity: no maximum permissible error was set for every "
                "point. Errors and expanded uncertainties are reported.")
    rule = Rule(proc.acceptance.rule)
    w = "w = 0" if rule is Rule.SIMPLE else "w = U"
    zones = dict.fromkeys(Zone, 0)
    for p in result.points:
        assert p.decision is not None
        zones[p.decision.zone] += 1
    counts = ", ".join(f"{n} {z}" for z, n in zones.items() if n)
    accepted = sum(1 for p in result.points if p.decision is not None and p.decision.accepted)
    overall = "CONFORMS" if result.conforms else "DOES NOT CONFORM"
    return (f"{overall}: {accepted} of {len(result.points)} points accepted under ILAC-G8 "
            f"{rule} acceptance ({w}, U at ≈95 % coverage). Non-binary statements: {counts}.")


def build_certificate(
    proc: Procedure,
    result: SessionResult,
    *,
    certificate_id: str,
    dut_id: str,
    reference_certificate: Certificate,
    calibration_date: dt.date,
    environment: dict[str, str | int | float] | None = None,
) -> Certificate:
    """The DUT's new certificate: points (nominal, reference, indicated, error, U, k), the
    fitted model, the conformity statement, traceable through the reference's certificate,
    and the DUT's repeatability (its readings' standard deviation pooled over the points)."""
    env: dict[str, str | int | float] = {**proc.environment, **(environment or {})}
    env["procedure"] = proc.id
    env["decision_rule"] = str(proc.acceptance.rule)
    repeated = [p for p in result.points if p.n >= 2]
    dof = sum(p.n - 1 for p in repeated)
    pooled = math.sqrt(sum((p.n - 1) * p.dut_std**2 for p in repeated) / dof) if dof else None
    return Certificate(
        id=certificate_id,
        instrument=dut_id,
        laboratory=proc.laboratory.name,
        accreditation=proc.laboratory.accreditation,
        calibration_date=calibration_date,
        interval_days=proc.interval_days,
        reference_certificates=[reference_certificate.id],
        points=[Point(nominal=p.nominal, reference=p.reference, indicated=p.dut_mean,
                      error=p.error, U=p.U, k=p.k) for p in result.points],
        model=result.model.to_dict(),
        conformity=conformity_statement(proc, result),
        environment=env,
        repeatability=pooled,
        repeatability_dof=float(dof) if dof else None,
    )


def polynomial_of(model: CorrectionModel) -> Polynomial | None:
    """The polynomial behind a GainOffset or Polynomial (for reports), else None."""
    if isinstance(model, Polynomial):
        return model
    if isinstance(model, GainOffset):
        return model.as_polynomial()
    return None
