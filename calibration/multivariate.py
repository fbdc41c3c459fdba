"""Correlated inputs and several outputs (GUM 5.2, H.2; JCGM 102): off the per-reading path.

``calibration.uncertainty.combine`` adds uncorrelated contributions to one output, and the
per-reading path (``calibration.apply``) stays vectorised numpy. What neither does — inputs
that are correlated (means of quantities observed together, a shared reference), several
outputs with their covariance, complex quantities — is done here with the GUM Tree
Calculator (GTC, Measurement Standards Laboratory of New Zealand), which propagates
uncertainty and correlation through any expression by automatic differentiation and
computes the effective degrees of freedom of results from correlated Type A inputs
(Willink–Hall).

Three steps, each a plain function:

* inputs: :func:`observed` (simultaneous observations of several quantities → their means,
  Type A standard uncertainties and correlations, ν = n − 1) or :func:`given` (estimates
  with a covariance matrix, e.g. a certificate's fitted coefficients);
* the model: any function from a mapping of the inputs to a mapping of outputs, written with
  ordinary operators and this module's functions (``cos``, ``sin``, ``sqrt``, ``atan2``,
  ``exp``, ``log``, …; ``math``'s do not take uncertain numbers). Complex intermediate
  quantities work (``V * exp(1j * phi) / I``); give their ``.real``, ``.imag``,
  ``magnitude`` or ``phase`` as the outputs;
* :func:`propagate`: values, standard uncertainties, covariance and correlation of the
  outputs, ν_eff and k at 95 %, as plain numbers in :class:`Propagated`.

Cost: milliseconds per evaluation — for a certificate, a session or a report, never per
reading. GTC is imported only here (an import-linter contract keeps it so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import GTC
import numpy as np
import numpy.typing as npt

from calibration.errors import CalibrationError
from calibration.uncertainty import UncertaintyError, coverage_factor

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "Propagated",
    "acos",
    "asin",
    "atan",
    "atan2",
    "cos",
    "exp",
    "given",
    "log",
    "log10",
    "magnitude",
    "observed",
    "phase",
    "propagate",
    "sin",
    "sqrt",
    "tan",
]

# functions that take uncertain numbers (GTC's), for writing models
acos, asin, atan, atan2 = GTC.acos, GTC.asin, GTC.atan, GTC.atan2
cos, sin, tan, sqrt = GTC.cos, GTC.sin, GTC.tan, GTC.sqrt
exp, log, log10 = GTC.exp, GTC.log, GTC.log10
magnitude, phase = GTC.magnitude, GTC.phase  # of complex quantities (z.real, z.imag too)

#: an uncertain number as GTC makes it (``GTC.lib.UncertainReal``); opaque to callers
Uncertain = Any


def observed(samples: Mapping[str, Sequence[float]]) -> dict[str, Uncertain]:
    """The means of quantities observed together (one row per set of simultaneous
    observations), with their Type A standard uncertainties s/√n, the correlations of the
    means (GUM 5.2.3, C.3.6) and ν = n − 1 (GTC ``type_a.multi_estimate_real``)."""
    if not samples:
        raise UncertaintyError("observed: no quantities")
    lengths = {len(v) for v in samples.values()}
    if len(lengths) != 1:
        raise UncertaintyError(f"observed: the quantities have different numbers of "
                               f"observations {sorted(lengths)}")
    n = lengths.pop()
    if n < 2:
        raise UncertaintyError("observed: need at least two observations of each quantity")
    labels = tuple(samples)
    data = [[float(x) for x in samples[k]] for k in labels]
    if not all(math.isfinite(x) for row in data for x in row):
        raise UncertaintyError("observed: observations must be finite")
    means = GTC.type_a.multi_estimate_real(data, labels=labels)
    return dict(zip(labels, means, strict=True))


def given(values: Mapping[str, float], covariance: npt.ArrayLike,
          dof: float = math.inf) -> dict[str, Uncertain]:
    """Estimates with a known covariance matrix (order of ``values``) and common degrees of
    freedom ``dof`` (∞: Type B, or a least-squares fit with known uncertainties)."""
    labels = tuple(values)
    cov = np.asarray(covariance, dtype=np.float64)
    n = len(labels)
    if cov.shape != (n, n) or not np.allclose(cov, cov.T, rtol=1e-9, atol=0.0):
        raise UncertaintyError(f"given: covariance must be a symmetric {n}×{n} matrix")
    if not dof > 0:
        raise UncertaintyError("given: degrees of freedom must be > 0")
    u = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    if np.any(u == 0):
        raise UncertaintyError("given: every estimate needs a standard uncertainty > 0")
    xs = [float(values[k]) for k in labels]
    out = GTC.multiple_ureal(xs, [float(v) for v in u], dof, labels)
    for i in range(n):
        for j in range(i + 1, n):
            r = float(cov[i, j] / (u[i] * u[j]))
            if r != 0.0:
                GTC.set_correlation(r, out[i], out[j])
    return dict(zip(labels, out, strict=True))


@dataclass(frozen=True)
class Propagated:
    """The outputs of a model: estimates, standard uncertainties, covariance, correlation,
    ν_eff (∞ when every input is Type B with ν = ∞), all in the order of ``labels``."""

    labels: tuple[str, ...]
    values: FloatArray
    u: FloatArray
    covariance: FloatArray
    dof: FloatArray

    @property
    def correlation(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.covariance / np.outer(self.u, self.u)
        r = np.where(np.isfinite(r), r, 0.0)
        np.fill_diagonal(r, 1.0)
        return np.asarray(r, dtype=np.float64)

    def index(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(label) from None

    def value(self, label: str) -> float:
        return float(self.values[self.index(label)])

    def uncertainty(self, label: str) -> float:
        return float(self.u[self.index(label)])

    def r(self, a: str, b: str) -> float:
        """The correlation coefficient of outputs ``a`` and ``b``."""
        return float(self.correlation[self.index(a), self.index(b)])

    def k(self, coverage: float = 0.95) -> FloatArray:
        """Student's t at each ν_eff truncated to the integer below (GUM G.6.4)."""
        return np.array([coverage_factor(float(max(math.floor(d), 1)) if math.isfinite(d)
                                         else math.inf, coverage) for d in self.dof])

    def expanded(self, coverage: float = 0.95) -> FloatArray:
        """U = k·u per output."""
        return np.asarray(self.k(coverage) * self.u, dtype=np.float64)


def propagate(inputs: Mapping[str, Uncertain],
              model: Callable[[Mapping[str, Uncertain]], Mapping[str, Uncertain]]
              ) -> Propagated:
    """Evaluate ``model`` on the uncertain ``inputs`` and return its outputs with their
    covariance (GUM 5.2 with the input correlations, and H.2's several outputs)."""
    try:
        outputs = dict(model(inputs))
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise CalibrationError(f"propagate: the model failed: {exc}") from exc
    if not outputs:
        raise UncertaintyError("propagate: the model returned no outputs")
    labels = tuple(outputs)
    quantities = [outputs[k] for k in labels]
    for k, q in zip(labels, quantities, strict=True):
        if isinstance(q, complex) or getattr(q, "is_ucomplex", False):
            raise UncertaintyError(f"propagate: output {k!r} is complex; give its real and "
                                   "imaginary parts (or magnitude and phase) as outputs")
    values = np.array([GTC.value(q) for q in quantities], dtype=np.float64)
    u = np.array([GTC.uncertainty(q) for q in quantities], dtype=np.float64)
    n = len(labels)
    cov = np.zeros((n, n))
    for i in range(n):
        cov[i, i] = u[i] ** 2
        for j in range(i + 1, n):
            cov[i, j] = cov[j, i] = float(GTC.get_covariance(quantities[i], quantities[j]))
    dof = np.array([_dof(q) for q in quantities], dtype=np.float64)
    return Propagated(labels, values, u, cov, dof)


def _dof(q: Uncertain) -> float:
    d = GTC.dof(q)
    return math.inf if d is None or not math.isfinite(float(d)) else float(d)
