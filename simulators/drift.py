"""Drifting signals for tests of drift detection and drift analysis (pure, no I/O).

:class:`DriftingSignal` gives a channel's difference from its check standard: white noise of
standard deviation ``sigma`` around ``offset``, plus a linear drift of ``rate_per_s`` that
starts at ``start_ns``. :func:`certificate_history` gives the as-found errors a calibration
laboratory would report for an instrument drifting at a known rate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class DriftingSignal:
    sigma: float
    rate_per_s: float = 0.0
    start_ns: int = 0
    offset: float = 0.0
    seed: int = 0

    def truth(self, ts_ns: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The noise-free value at ``ts_ns``."""
        t = np.asarray(ts_ns, dtype=np.int64)
        dt_s = np.maximum(t - self.start_ns, 0).astype(np.float64) / NS_PER_S
        return np.asarray(self.offset + self.rate_per_s * dt_s, dtype=np.float64)

    def samples(self, t0_ns: int, n: int, period_s: float = 1.0
                ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """``n`` samples every ``period_s`` from ``t0_ns``: (timestamps in ns, values)."""
        ts = t0_ns + (np.arange(n, dtype=np.int64) * round(period_s * NS_PER_S))
        rng = np.random.default_rng(self.seed)
        return ts, self.truth(ts) + rng.normal(0.0, self.sigma, n)


def certificate_history(instrument: str, start: dt.date, every_days: int, count: int,
                        nominals: Sequence[float], rate_per_day: Sequence[float],
                        sigma: float, U: float, k: float = 2.0, seed: int = 0,
                        interval_days: int = 365, reference: str = "REF-1"
                        ) -> list[dict[str, Any]]:
    """Certificates (as records-file dicts) of an instrument whose error at ``nominals[i]``
    grows by ``rate_per_day[i]`` from 0 at ``start``; each as-found error carries normal
    noise of ``sigma`` and is reported with expanded uncertainty ``U`` (coverage ``k``)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in range(count):
        day = start + dt.timedelta(days=n * every_days)
        t = float(n * every_days)
        points = []
        for nominal, rate in zip(nominals, rate_per_day, strict=True):
            err = rate * t + float(rng.normal(0.0, sigma))
            points.append({"nominal": nominal, "reference": nominal,
                           "indicated": nominal + err, "error": err, "U": U, "k": k})
        out.append({
            "id": f"{instrument}-{day.isoformat()}", "instrument": instrument,
            "laboratory": "simulated laboratory", "accreditation": "none (simulated)",
            "calibration_date": day, "interval_days": interval_days,
            "reference_certificates": [reference], "points": points,
            "model": {"kind": "offset", "c0": 0.0, "u_c0": 0.0},
            "conformity": "simulated"})
    return out
