"""Applying an instrument's calibration to readings: the per-reading path, vectorised.

:func:`calibration_of` turns the records into a :class:`ChannelCalibration` for one
instrument at one date (its current certificate, the correction model, the checks of its
traceability chain and the fixed parts of its uncertainty). Its :meth:`~ChannelCalibration.
correct` takes an array of indicated values and the days since calibration and returns the
corrected values with their standard uncertainty ``u``, coverage factor ``k`` and a mask of
values inside the calibrated range — numpy throughout, no loop per reading.

Uncertainty of a corrected reading (GUM, uncorrelated contributions, unit sensitivities)::

    u² = u_cal(x)² + u_res² + u_rep² + u_drift(t)²

* ``u_cal``: the correction's standard uncertainty at x — from the model's parameter
  covariance where the certificate gives one, otherwise the certificate's U/k at its points,
  interpolated linearly in the indicated value (held constant beyond the end points);
  degrees of freedom: the model's (n − p for a least-squares fit), ∞ for interpolated U/k;
* ``u_res``: the instrument's resolution step, rectangular of half-width step/2;
* ``u_rep``: the instrument's short-term repeatability (a standard deviation of one
  reading), from its record, or else the one its certificate observed (a calibration
  session records the DUT's pooled standard deviation), with its degrees of freedom.
  Where neither states one, ``u_rep`` is 0 and :attr:`ChannelCalibration.repeatability_known`
  is False: the caller flags the readings (``repeatability_unknown``), never a silent zero;
* ``u_drift``: the instrument's drift allowance (rate per year, rectangular of half-width
  rate × years since the calibration date), when its record gives one.

ν_eff by Welch–Satterthwaite, truncated to an integer (GUM G.6.4), and k = t₉₅(ν_eff)
(1.960 for ν = ∞: the ≈95 % convention of ``coverage_factor``).

Outside the calibrated range the correction is not applied: the value stays the indicated
one, without ``u``, ``k`` or certificate, and the caller flags it (never extrapolated
silently).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from calibration.chain import ChainReason, Link, Records, resolve
from calibration.models import CorrectionModel, ModelError, model_from_dict
from calibration.records import Certificate, Instrument, expires_on
from calibration.uncertainty import coverage_factor, resolution_u

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

__all__ = ["ChannelCalibration", "Corrected", "calibration_of", "k95"]

DAYS_PER_YEAR = 365.25


_EXACT_UP_TO = 200  # ν above this: the asymptotic series is exact to better than 1e-9


@functools.cache
def _k_table() -> FloatArray:
    """t₀.₉₅(ν) for ν = 1 … _EXACT_UP_TO (index ν − 1), computed once."""
    return np.array([coverage_factor(float(n)) for n in range(1, _EXACT_UP_TO + 1)])


def _k_asymptotic(nu: FloatArray) -> FloatArray:
    """Student's t quantile for large ν from the normal one (Abramowitz & Stegun 26.7.5,
    Cornish–Fisher; the first omitted term is O(ν⁻⁴): < 1e-9 for ν > 200)."""
    z = coverage_factor(math.inf)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    with np.errstate(divide="ignore"):
        inv = np.where(np.isfinite(nu), 1.0 / nu, 0.0)
    return np.asarray(z + inv * (g1 + inv * (g2 + inv * g3)), dtype=np.float64)


def k95(dof: npt.ArrayLike) -> FloatArray:
    """Coverage factor for ≈95 % at each ν_eff, vectorised: ν truncated to the integer below
    (GUM G.6.4), at least 1; ∞ gives 1.960."""
    nu = np.asarray(dof, dtype=np.float64)
    nu = np.where(np.isfinite(nu), np.maximum(np.floor(nu), 1.0), np.inf)
    small = nu <= _EXACT_UP_TO
    index = np.where(small, nu, 1.0).astype(np.int64) - 1
    return np.asarray(np.where(small, _k_table()[index], _k_asymptotic(nu)), dtype=np.float64)


@dataclass(frozen=True)
class Corrected:
    """The result of :meth:`ChannelCalibration.correct` (arrays of the input's shape)."""

    value: FloatArray  # corrected where in range, else the indicated value
    u: FloatArray  # standard uncertainty (NaN outside the calibrated range)
    k: FloatArray  # coverage factor for ≈95 % (NaN outside)
    in_range: BoolArray
    dof: FloatArray  # effective degrees of freedom


@dataclass(frozen=True)
class ChannelCalibration:
    """An instrument's calibration as it applies to readings on one date."""

    instrument: Instrument
    certificate: Certificate | None
    model: CorrectionModel | None
    chain: Link | None
    on: dt.date  # the date the checks below were made for
    problems: tuple[str, ...]  # why the chain does not hold (empty when it does)
    expired: bool  # the current certificate expired before ``on``

    @property
    def cert_id(self) -> str | None:
        return None if self.certificate is None else self.certificate.id

    @property
    def expires(self) -> dt.date | None:
        """The certificate's last day of validity: by the instrument's recall interval when
        its owner set one, else as the certificate recommends."""
        return None if self.certificate is None else expires_on(self.certificate,
                                                                 self.instrument)

    @property
    def chain_reasons(self) -> tuple[ChainReason, ...]:
        """The reasons of the chain's problems (:data:`calibration.chain.ChainReason`), each
        once, in the order met from the instrument up."""
        out: list[ChainReason] = []
        stack = [] if self.chain is None else [self.chain]
        while stack:
            link = stack.pop(0)
            out += [r for r in link.reasons if r not in out]
            stack += link.references
        return tuple(out)

    @functools.cached_property
    def _points_u(self) -> tuple[FloatArray, FloatArray]:
        """The certificate's points as (indicated, U/k), sorted: for interpolating."""
        assert self.certificate is not None
        pts = sorted(self.certificate.points, key=lambda p: p.indicated)
        return (np.array([p.indicated for p in pts]), np.array([p.U / p.k for p in pts]))

    @property
    def repeatability_known(self) -> bool:
        """The instrument record or its certificate states the repeatability of one reading
        (else u leaves out the scatter of single readings and the readings are flagged)."""
        if self.instrument.repeatability is not None:
            return True
        return self.certificate is not None and self.certificate.repeatability is not None

    @property
    def usable(self) -> bool:
        """A correction can be applied (a certificate with a model exists)."""
        return self.model is not None

    def correct(self, indicated: npt.ArrayLike, days_since: npt.ArrayLike = 0.0) -> Corrected:
        """Corrected values with u, k for indicated values read ``days_since`` days after
        the calibration date (array-likes, broadcast together)."""
        if self.model is None or self.certificate is None:
            raise ModelError(f"instrument {self.instrument.id!r} has no certificate to apply")
        x = np.asarray(indicated, dtype=np.float64)
        days = np.broadcast_to(np.asarray(days_since, dtype=np.float64), x.shape)
        model = self.model
        ok = np.asarray(model.in_range(x), dtype=np.bool_) & np.isfinite(x)
        corrected = np.where(ok, model.apply(np.where(ok, x, 0.0)), x)
        # calibration: model covariance, else the certificate's U/k at its points
        u_m = np.asarray(model.u_model(np.where(ok, x, 0.0)), dtype=np.float64)
        if np.any(u_m > 0):
            u_cal, dof_cal = u_m, float(model.dof)
        else:
            u_cal = np.interp(x, *self._points_u)
            dof_cal = math.inf
        inst, cert = self.instrument, self.certificate
        u_res = float(resolution_u(inst.resolution))
        # repeatability: the instrument record's, else what its calibration observed
        src: Instrument | Certificate = inst if inst.repeatability is not None else cert
        u_rep = src.repeatability or 0.0
        dof_rep = src.repeatability_dof if src.repeatability_dof is not None else math.inf
        rate = inst.drift_per_year or 0.0
        u_drift = np.abs(rate * np.maximum(days, 0.0) / DAYS_PER_YEAR) / math.sqrt(3.0)
        u2 = u_cal**2 + u_res**2 + u_rep**2 + u_drift**2
        u = np.sqrt(u2)
        denominator = np.zeros_like(u2)
        if math.isfinite(dof_cal):
            denominator = denominator + u_cal**4 / dof_cal
        if u_rep > 0 and math.isfinite(dof_rep):
            denominator = denominator + u_rep**4 / dof_rep
        with np.errstate(divide="ignore", invalid="ignore"):
            dof = np.where(denominator > 0, u2**2 / denominator, np.inf)
        k = k95(dof)
        nan = np.full_like(u, np.nan)
        return Corrected(value=np.asarray(corrected, dtype=np.float64),
                         u=np.where(ok, u, nan), k=np.where(ok, k, nan), in_range=ok,
                         dof=np.asarray(dof, dtype=np.float64))


def calibration_of(records: Records, instrument: str, on: dt.date) -> ChannelCalibration:
    """The calibration of ``instrument`` that applies on ``on``: its latest certificate
    issued on or before that date, with the traceability chain checked at that date.

    Raises ``KeyError`` if the instrument is not in ``records``.
    """
    inst = records.instruments[instrument]
    cert = records.certificate_at(instrument, on)
    if cert is None:
        return ChannelCalibration(inst, None, None, None, on,
                                  (f"no certificate of {instrument!r} issued on or before {on}",),
                                  expired=False)
    chain = resolve(records, instrument, on)
    problems = tuple(_problems(chain))
    return ChannelCalibration(inst, cert, model_from_dict(cert.model), chain, on, problems,
                              expired=expires_on(cert, inst) < on)


def _problems(link: Link) -> list[str]:
    out = [f"{link.certificate or link.instrument}: {p}" for p in link.problems]
    for ref in link.references:
        out.extend(_problems(ref))
    return out
