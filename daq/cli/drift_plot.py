"""The PNG of ``daq drift``: error against time per calibration point, with U bars, the ±MPE
lines, the fitted drift and its prediction band (k = 2). matplotlib, Agg backend (no display,
no network)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np


def plot_drift(report: Any, path: str | Path) -> None:
    """Write ``report`` (a :class:`calibration.drift.DriftReport`) as a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    points = report.points
    fig, axes = plt.subplots(len(points), 1, figsize=(8, 3 * len(points)), squeeze=False)
    end = report.predicted_oot or (report.last_calibration + dt.timedelta(days=365))
    end = max(end, report.last_calibration + dt.timedelta(days=90)) + dt.timedelta(days=60)
    for ax, p in zip(axes[:, 0], points, strict=True):
        dates = [o.date for o in p.history]
        ax.errorbar(dates, [o.error for o in p.history], yerr=[o.U for o in p.history],
                    fmt="o", capsize=3, label="as-found error ± U")
        span = (end - p.t0).days
        days = np.linspace(0.0, float(span), 200)
        mean, u = p.predict(days)
        when = [p.t0 + dt.timedelta(days=float(d)) for d in days]
        ax.plot(when, mean, "-", label=f"drift model (degree {p.degree})")
        ax.fill_between(when, mean - 2 * u, mean + 2 * u, alpha=0.25,
                        label="prediction band (k = 2)")
        ax.axhline(p.mpe, color="red", linestyle="--", label="± MPE")
        ax.axhline(-p.mpe, color="red", linestyle="--")
        if p.predicted_oot and p.predicted_oot <= end:
            ax.axvline(p.predicted_oot, color="orange", linestyle=":",
                       label=f"out of tolerance {p.predicted_oot}")
        elif p.predicted_oot:
            ax.plot([], [], " ", label=f"out of tolerance {p.predicted_oot} (off the plot)")
        ax.set_xlim(p.t0 - dt.timedelta(days=15), end)
        ax.set_ylabel(f"error / {report.unit}")
        ax.set_title(f"{report.instrument} at {p.nominal:g} {report.unit}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    axes[-1, 0].set_xlabel("date")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
