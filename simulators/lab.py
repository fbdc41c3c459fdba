"""A simulated calibration laboratory: a three-level DC-voltage traceability chain (national
standard → reference → working DMMs) around simulated DMMs, each calibrated the way a lab
would — reading the simulated instrument at calibration points against the (simulated)
reference and fitting a gain/offset correction by least squares — so the certificate's model
and covariance are a genuine calibration result, not the injected error copied over. Used by
``daq demo`` and the tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from calibration.models import GainOffset, fit_polynomial
from calibration.records import RecordSet
from simulators.instruments import InstrumentModel

NAT, REF = "nim-jvs-t", "ref-3458a-t"
NAT_CERT, REF_CERT = "NIM-T-0001", "NIM-T-0420"
POINTS_V = (-10.0, -5.0, 0.0, 2.0, 5.0, 8.0, 10.0)


def instrument(id_: str, role: str, resolution: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_, "maker": "sim", "model": "DMM", "serial": f"S-{id_}", "quantity": "voltage",
        "unit": "V", "range": {"min": -10.0, "max": 10.0}, "resolution": resolution,
        "accuracy": {"a_pct_reading": 0.003, "b_pct_range": 0.0005}, "owner": "lab",
        "location": "bench", "role": role, "mandatory_verification": False, **extra,
    }


def _flat_cert(id_: str, inst: str, date: dt.date, refs: list[str], u: float,
               days: int) -> dict[str, Any]:
    return {
        "id": id_, "instrument": inst, "laboratory": "lab", "accreditation": "CNAS L0000",
        "calibration_date": date.isoformat(), "interval_days": days,
        "reference_certificates": refs,
        "points": [{"nominal": v, "reference": v, "indicated": v, "error": 0.0, "U": 2 * u,
                    "k": 2.0} for v in POINTS_V],
        "model": {"kind": "offset", "c0": 0.0, "u_c0": u},
        "conformity": "conforms", "environment": {"temperature_C": 23.0},
    }


def calibrate(model: InstrumentModel, *, readings_per_point: int = 10,
              points: Sequence[float] = POINTS_V) -> tuple[GainOffset, list[dict[str, Any]]]:
    """Calibrate a simulated DMM: mean of ``readings_per_point`` readings at each point,
    least-squares gain/offset correction δ(x) = c0 + c1·x with its covariance (GUM H.3),
    and the certificate's points (error, U at k = 2)."""
    saved = model.true_value
    xs, ys, rows = [], [], []
    for v in points:
        got = np.array([model.reading(v) for _ in range(readings_per_point)])
        mean, s = float(got.mean()), float(got.std(ddof=1))
        xs.append(mean)
        ys.append(v - mean)
        u = max(s / np.sqrt(readings_per_point), 1e-7)
        rows.append({"nominal": v, "reference": v, "indicated": mean, "error": mean - v,
                     "U": 2 * u, "k": 2.0})
    model.true_value = saved
    poly = fit_polynomial(xs, ys, 1)
    fitted = GainOffset(poly.coefficients[0], poly.coefficients[1], poly.covariance,
                        poly.dof, -10.5, 10.5)
    return fitted, rows


def chain(today: dt.date, working: dict[str, tuple[GainOffset, list[dict[str, Any]]]], *,
          working_days_ago: int = 30, working_interval_days: int = 365,
          instrument_extra: dict[str, dict[str, Any]] | None = None) -> RecordSet:
    """National standard → reference → each working DMM (id → its calibration), with
    certificates valid on ``today``."""
    extra = instrument_extra or {}
    instruments = [instrument(NAT, "national_standard", 1e-9), instrument(REF, "reference", 1e-8)]
    certs = [_flat_cert(NAT_CERT, NAT, today - dt.timedelta(days=300), [], 1e-7, 730),
             _flat_cert(REF_CERT, REF, today - dt.timedelta(days=200), [NAT_CERT], 1e-6, 365)]
    for inst_id, (model, points) in working.items():
        instruments.append(instrument(inst_id, "working", 1e-6, **extra.get(inst_id, {})))
        certs.append({
            "id": f"LAB-{inst_id}", "instrument": inst_id, "laboratory": "site lab",
            "accreditation": "CNAS L0001",
            "calibration_date": (today - dt.timedelta(days=working_days_ago)).isoformat(),
            "interval_days": working_interval_days, "reference_certificates": [REF_CERT],
            "points": points, "model": model.to_dict(), "conformity": "as found: conforms",
            "environment": {"temperature_C": 23.1, "humidity_pct": 45},
        })
    return RecordSet.model_validate({"instruments": instruments, "certificates": certs})
