"""Does the stated U cover the truth? Empirical coverage of corrected readings, path by path.

    python -m benchmarks --only coverage [--sessions 2000] [--readings-per-session 5]
    python -m benchmarks.coverage [--sessions 2000] [--readings-per-session 5] [--seed 1]

Each row simulates ``sessions`` calibrations the way the product makes them — the simulated
lab's least squares (``simulators.lab.calibrate``) or a calibration session through
``calibration.session`` (``evaluate_point`` → ``evaluate_session`` → ``build_certificate``)
with the reference standard's error drawn **once per session** — and then corrects
``readings_per_session`` fresh readings of known truth per certificate through the
per-reading path (``calibration.apply.ChannelCalibration.correct``). Empirical coverage:
the share of readings with |corrected − truth| ≤ U.

Readings of one session share its certificate's errors, so they are not independent
trials: the standard error of a coverage is computed from the spread of the sessions' own
coverages (sessions are the independent units), not from the number of readings.

Reference per row: a JCGM 101 Monte Carlo of each reading's *declared* budget (the
calibration term normal — Student's t scaled by u for finite ν —, resolution and drift
rectangular, repeatability normal or t): the probability that their sum lies within ±U.
A budget dominated by rectangular terms covers more than 95 % at k ≈ 2, correctly, so a
row is judged against its reference; near-normal rows should also be 95 ± 1 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from calibration.apply import DAYS_PER_YEAR, ChannelCalibration
from calibration.models import (
    PiecewiseLinear,
    cvd_resistance,
    cvd_temperature,
    model_from_dict,
)
from calibration.procedure import Procedure, procedure_from_text
from calibration.records import Certificate, Instrument, Point
from calibration.session import build_certificate, evaluate_point, evaluate_session
from calibration.uncertainty import resolution_u
from simulators.instruments import InstrumentModel
from simulators.lab import calibrate, instrument

FloatArray = npt.NDArray[np.float64]
DATE = dt.date(2026, 11, 1)
DAYS = 30.0  # readings taken 30 days after calibration (drift term where stated)


@dataclass(frozen=True)
class Row:
    name: str
    note: str
    sessions: int
    readings: int
    coverage: float  # empirical
    se: float  # standard error from the sessions' spread
    reference: float  # JCGM 101 MC of the declared budgets
    mean_k: float
    seconds: float

    @property
    def verdict(self) -> str:
        gap = self.coverage - self.reference
        ok = abs(gap) <= 0.01 + 2 * self.se
        return "ok" if ok else ("UNDER" if gap < 0 else "over")


# -- the declared budget of each corrected reading (mirrors ChannelCalibration.correct) ------


@dataclass
class Declared:
    """Per reading: the standard uncertainties and ν of the terms ``correct`` combined."""

    u_cal: list[FloatArray] = dataclasses.field(default_factory=list)
    dof_cal: list[float] = dataclasses.field(default_factory=list)
    u_res: list[float] = dataclasses.field(default_factory=list)
    u_rep: list[float] = dataclasses.field(default_factory=list)
    dof_rep: list[float] = dataclasses.field(default_factory=list)
    u_drift: list[float] = dataclasses.field(default_factory=list)
    big_u: list[FloatArray] = dataclasses.field(default_factory=list)
    u: list[FloatArray] = dataclasses.field(default_factory=list)
    hits: list[npt.NDArray[np.bool_]] = dataclasses.field(default_factory=list)  # per session

    def add(self, cal: ChannelCalibration, x: FloatArray, truth: FloatArray) -> None:
        out = cal.correct(x, DAYS)
        if not bool(np.all(out.in_range)):
            raise RuntimeError("a simulated reading fell outside the calibrated range")
        model, cert, inst = cal.model, cal.certificate, cal.instrument
        assert model is not None
        assert cert is not None
        u_m = np.asarray(model.u_model(x), dtype=np.float64)
        if np.any(u_m > 0):
            u_cal, dof_cal = u_m, float(model.dof)
        else:
            pts = sorted(cert.points, key=lambda p: p.indicated)
            u_cal = np.interp(x, [p.indicated for p in pts], [p.U / p.k for p in pts])
            dof_cal = math.inf
        src: Instrument | Certificate = inst if inst.repeatability is not None else cert
        u_rep = src.repeatability or 0.0
        dof_rep = src.repeatability_dof if src.repeatability_dof is not None else math.inf
        u_res = float(resolution_u(inst.resolution))
        u_drift = abs((inst.drift_per_year or 0.0) * DAYS / DAYS_PER_YEAR) / math.sqrt(3.0)
        u = np.sqrt(u_cal**2 + u_res**2 + u_rep**2 + u_drift**2)
        if not np.allclose(u, out.u, rtol=1e-9, atol=0.0):
            raise RuntimeError("the declared budget does not add up to correct()'s u")
        big_u = out.k * out.u
        self.u_cal.append(u_cal)
        self.dof_cal.append(dof_cal)
        self.u_res.append(u_res)
        self.u_rep.append(u_rep)
        self.dof_rep.append(dof_rep)
        self.u_drift.append(u_drift)
        self.big_u.append(big_u)
        self.u.append(out.u)
        self.hits.append(np.abs(out.value - truth) <= big_u)

    def reference(self, rng: np.random.Generator, draws: int = 40) -> float:
        """JCGM 101: P(|Σ terms| ≤ U) under the declared distributions, averaged."""
        probs = []
        for i, big_u in enumerate(self.big_u):
            shape = (draws, big_u.size)
            total = _scaled(rng, self.u_cal[i], self.dof_cal[i], shape)
            total = total + rng.uniform(-1, 1, shape) * self.u_res[i] * math.sqrt(3.0)
            total = total + _scaled(rng, self.u_rep[i], self.dof_rep[i], shape)
            total = total + rng.uniform(-1, 1, shape) * self.u_drift[i] * math.sqrt(3.0)
            probs.append(np.mean(np.abs(total) <= big_u, axis=0))
        return float(np.mean(np.concatenate(probs)))

    def summary(self) -> tuple[float, float, float]:
        per_session = np.array([h.mean() for h in self.hits])
        coverage = float(np.mean(np.concatenate(self.hits)))
        se = float(per_session.std(ddof=1) / math.sqrt(per_session.size))
        k = float(np.mean(np.concatenate(self.big_u) / np.concatenate(self.u)))
        return coverage, se, k


def _scaled(rng: np.random.Generator, u: FloatArray | float, dof: float,
            shape: tuple[int, int]) -> FloatArray:
    """u·N(0,1) for ν = ∞, u·t_ν otherwise (JCGM 101 6.4.9 for a Type A estimate)."""
    z = rng.standard_normal(shape) if math.isinf(dof) else rng.standard_t(dof, shape)
    return np.asarray(z * u, dtype=np.float64)


def _calibration(inst: dict[str, Any], cert: Certificate) -> ChannelCalibration:
    return ChannelCalibration(Instrument.model_validate(inst), cert,
                              model_from_dict(cert.model), None, DATE, (), expired=False)


# -- the lab's least squares (simulators.lab) -------------------------------------------------


def lab_rows(sessions: int, per: int, seed: int, *, stated: bool) -> Declared:
    noise = 2e-5
    rng = np.random.default_rng(seed)
    out = Declared()
    extra = {"repeatability": noise} if stated else {}
    inst = instrument("dmm", "working", 1e-6, **extra)
    for s in range(sessions):
        sim = InstrumentModel(0.0, "V", offset=2e-3, gain=-1e-4, noise=noise, decimals=6,
                              seed=seed * 100_003 + s)
        model, rows = calibrate(sim)
        cert = Certificate(
            id="LAB", instrument="dmm", laboratory="lab", accreditation="x",
            calibration_date=DATE, interval_days=365,
            points=[Point.model_validate(r) for r in rows], model=model.to_dict(),
            conformity="n/a")
        truth = rng.uniform(-10.0, 10.0, per)
        x = np.array([sim.reading(float(t)) for t in truth])
        out.add(_calibration(inst, cert), x, truth)
    return out


# -- calibration sessions ----------------------------------------------------------------------

DCV = """
id: cov-dcv
title: coverage, DC voltage
quantity: voltage
unit: V
method: direct comparison against a calibrator
dut: {{driver: scpi-dmm, connection: {{host: 127.0.0.1, port: 1}}}}
reference: {{driver: calibrator, connection: {{host: 127.0.0.1, port: 2}}}}
defaults: {{command: ["SOUR:VOLT {{nominal}}"], readings: 10}}
setpoints: [{{nominal: -10.0}}, {{nominal: -5.0}}, {{nominal: 0.0}}, {{nominal: 2.0}},
            {{nominal: 5.0}}, {{nominal: 8.0}}, {{nominal: 10.0}}]
contributions:
  - {{name: reference certificate, source: reference_certificate}}
  - {{name: DUT resolution, source: dut_resolution, value: {res}}}
laboratory: {{name: lab, accreditation: none}}
"""


def _ref_cert(u: float, lo: float, hi: float) -> Certificate:
    return Certificate(
        id="REF", instrument="ref", laboratory="nmi", accreditation="x",
        calibration_date=DATE, interval_days=365,
        points=[Point(nominal=v, reference=v, indicated=v, error=0.0, U=2 * u, k=2.0)
                for v in (lo, 0.5 * (lo + hi), hi)],
        model={"kind": "offset", "c0": 0.0, "u_c0": u, "x_min": lo, "x_max": hi},
        conformity="n/a")


def _session(proc: Procedure, ref: Certificate, take: Callable[[int, float], tuple[
        list[float], list[float]]], raw_means: Callable[[list[list[float]]], list[float]] | None
        = None) -> Certificate:
    pts, raws = [], []
    for i, sp in enumerate(proc.setpoints):
        dut, refs = take(i, sp.nominal)
        raws.append(dut)
        pts.append(evaluate_point(proc, i, dut, refs, reference_certificate=ref))
    result = evaluate_session(proc, pts, None if raw_means is None else raw_means(raws))
    return build_certificate(proc, result, certificate_id="S", dut_id="dut",
                             reference_certificate=ref, calibration_date=DATE)


def session_rows(sessions: int, per: int, seed: int, *, noise: float) -> Declared:
    """A DMM (gain 20 ppm, offset 5 µV, ``noise``) against a calibrator whose certificate
    says u = 1 µV; its true error is drawn once per session."""
    u_ref, res = 1e-6, 1e-8
    proc = procedure_from_text(DCV.format(res=res), "cov-dcv.yaml")
    ref = _ref_cert(u_ref, -11.0, 11.0)
    rng = np.random.default_rng(seed)
    inst = instrument("dut", "working", res)
    out = Declared()
    gain, offset = 20e-6, 5e-6

    def dmm(t: FloatArray) -> FloatArray:
        return np.asarray(t * (1 + gain) + offset + rng.normal(0.0, noise, t.shape))

    for _ in range(sessions):
        e_ref = float(rng.normal(0.0, u_ref))  # the calibrator's true error this session

        def take(_i: int, nominal: float, e: float = e_ref) -> tuple[list[float], list[float]]:
            return list(dmm(np.full(10, nominal + e))), [nominal]

        cert = _session(proc, ref, take)
        truth = rng.uniform(-10.0, 10.0, per)
        out.add(_calibration(inst, cert), dmm(truth), truth)
    return out


PRT = """
id: cov-prt
title: coverage, Pt100 in a bath
quantity: temperature
unit: °C
method: comparison in a stirred bath
dut: {driver: prt-readout, connection: {serial: /dev/null},
      cvd: {r0: 100.0, a: 3.9083e-3, b: -5.775e-7, c: -4.183e-12}}
reference: {driver: prt-readout, connection: {serial: /dev/null}}
defaults: {readings: 10, prompt: "bath to {nominal}"}
setpoints: [{nominal: 5.0}, {nominal: 50.0}, {nominal: 100.0}, {nominal: 150.0},
            {nominal: 200.0}]
contributions:
  - {name: reference certificate, source: reference_certificate}
  - {name: DUT resolution, source: dut_resolution, value: 0.0001}
fit: {kind: cvd}
laboratory: {name: lab, accreditation: none}
"""


def prt_rows(sessions: int, per: int, seed: int) -> Declared:
    """A Pt100 whose true R0, A, B differ from IEC 60751's, read by a readout that converts
    with the nominal coefficients; a reference thermometer with u = 10 mK (its error drawn
    once per session) read with 2 mK noise; DUT noise 1 mΩ (≈ 2.6 mK)."""
    proc = procedure_from_text(PRT, "cov-prt.yaml")
    assert proc.dut.cvd is not None
    nominal = (proc.dut.cvd.r0, proc.dut.cvd.a, proc.dut.cvd.b, proc.dut.cvd.c)
    true = (100.03, 3.9050e-3, -5.80e-7, -4.183e-12)
    u_ref, ref_noise, r_noise = 0.010, 0.002, 0.001
    ref = _ref_cert(u_ref, -50.0, 250.0)
    rng = np.random.default_rng(seed)
    inst = instrument("dut", "working", 1e-4) | {"quantity": "temperature", "unit": "°C",
                                                 "range": {"min": 0.0, "max": 200.0}}
    out = Declared()

    def ohms(t: FloatArray) -> FloatArray:
        return np.asarray(cvd_resistance(t, *true) + rng.normal(0.0, r_noise, t.shape))

    for _ in range(sessions):
        e_ref = float(rng.normal(0.0, u_ref))

        def take(_i: int, nominal: float, e: float = e_ref) -> tuple[list[float], list[float]]:
            bath = nominal + rng.normal(0.0, 0.001)  # where the bath really is
            return (list(ohms(np.full(10, bath))),
                    list(bath - e + rng.normal(0.0, ref_noise, 10)))

        cert = _session(proc, ref, take, lambda raws: [float(np.mean(r)) for r in raws])
        truth = rng.uniform(6.0, 199.0, per)
        shown = np.asarray(cvd_temperature(ohms(truth), *nominal), dtype=np.float64)
        out.add(_calibration(inst, cert), shown, truth)
    return out


TABLE = """
id: cov-table
title: coverage, a 4-digit readout calibrated point by point
quantity: temperature
unit: °C
method: comparison, corrections tabulated
dut: {driver: prt-readout, connection: {serial: /dev/null}}
reference: {driver: prt-readout, connection: {serial: /dev/null}}
defaults: {readings: 10, prompt: "bath to {nominal}"}
setpoints: [{nominal: 0.0}, {nominal: 20.0}, {nominal: 40.0}, {nominal: 60.0},
            {nominal: 80.0}, {nominal: 100.0}]
contributions:
  - {name: reference certificate, source: reference_certificate}
  - {name: DUT resolution, source: dut_resolution, value: 0.05}
laboratory: {name: lab, accreditation: none}
"""


def table_rows(sessions: int, per: int, seed: int) -> Declared:
    """A readout showing 0.05 °C steps (rectangular term dominant) with a mildly non-linear
    error, its certificate a table of the corrections at six points (``PiecewiseLinear``,
    u at each point = the point's u_c, with the reference's part as ``u_shared``); the
    reference (u = 5 mK) drawn once per session; the readout's repeatability (2 mK) stated
    in its record."""
    proc = procedure_from_text(TABLE, "cov-table.yaml")
    u_ref, noise, step = 0.005, 0.002, 0.05
    ref = _ref_cert(u_ref, -10.0, 110.0)
    rng = np.random.default_rng(seed)
    inst = instrument("dut", "working", step, repeatability=noise) | {
        "quantity": "temperature", "unit": "°C", "range": {"min": 0.0, "max": 100.0}}
    out = Declared()

    def shown(t: FloatArray) -> FloatArray:
        x = t + 0.08 + 0.001 * t - 4e-6 * t * t + rng.normal(0.0, noise, t.shape)
        return np.asarray(np.round(x / step) * step, dtype=np.float64)

    for _ in range(sessions):
        e_ref = float(rng.normal(0.0, u_ref))
        pts = []
        for i, sp in enumerate(proc.setpoints):
            bath = sp.nominal + float(rng.uniform(-0.5, 0.5))  # the bath is set roughly
            dut = list(shown(np.full(10, bath)))
            pts.append(evaluate_point(proc, i, dut, list(bath - e_ref + rng.normal(
                0.0, 0.001, 10)), reference_certificate=ref))
        pts.sort(key=lambda p: p.dut_mean)
        table = PiecewiseLinear(tuple(p.dut_mean for p in pts), tuple(-p.error for p in pts),
                                tuple(p.u_c for p in pts),
                                u_shared=tuple(math.hypot(*p.u_shared) for p in pts))
        cert = Certificate(
            id="T", instrument="dut", laboratory="lab", accreditation="x",
            calibration_date=DATE, interval_days=365, model=table.to_dict(), conformity="n/a",
            points=[Point(nominal=p.nominal, reference=p.reference, indicated=p.dut_mean,
                          error=p.error, U=p.U, k=p.k) for p in pts])
        lo, hi = table.x_min, table.x_max
        truth = rng.uniform(lo + 0.2, hi - 0.2, per)
        x = shown(truth)
        inside = (x >= lo) & (x <= hi)
        out.add(_calibration(inst, cert), x[inside], truth[inside])
    return out


# -- the table -----------------------------------------------------------------------------------

CASES: tuple[tuple[str, str, Callable[[int, int, int], Declared]], ...] = (
    ("lab least squares", "simulators.lab, OLS ν = 5, repeatability stated (20 µV)",
     lambda s, p, seed: lab_rows(s, p, seed, stated=True)),
    ("lab least squares, repeatability unstated", "flagged repeatability_unknown",
     lambda s, p, seed: lab_rows(s, p, seed, stated=False)),
    ("session, DUT noise = u_ref", "1 µV noise, u_ref 1 µV drawn once per session",
     lambda s, p, seed: session_rows(s, p, seed, noise=1e-6)),
    ("session, DUT noise ≪ u_ref", "0.2 µV noise",
     lambda s, p, seed: session_rows(s, p, seed, noise=0.2e-6)),
    ("session, DUT noise ≫ u_ref", "10 µV noise",
     lambda s, p, seed: session_rows(s, p, seed, noise=10e-6)),
    ("PRT, CVD certificate", "session fit: cvd, reference 10 mK per session", prt_rows),
    ("table model", "piecewise linear, 0.05 °C steps (rectangular-dominated)", table_rows),
)


def run_coverage(sessions: int = 2000, per: int = 5, seed: int = 1,
                 log: Callable[[str], None] = lambda _m: None) -> list[Row]:
    rows = []
    for i, (name, note, make) in enumerate(CASES):
        t0 = time.perf_counter()
        declared = make(sessions, per, seed + i)
        coverage, se, k = declared.summary()
        reference = declared.reference(np.random.default_rng(seed + 100 + i))
        n = sum(h.size for h in declared.hits)
        rows.append(Row(name, note, sessions, n, coverage, se, reference, k,
                        time.perf_counter() - t0))
        log(f"{name}: {100 * coverage:.1f} % (reference {100 * reference:.1f} %)")
    return rows


def format_rows(rows: list[Row]) -> str:
    head = ("| path | sessions | readings | coverage ± SE (sessions) | JCGM 101 reference | "
            "mean k | verdict |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} ({r.note}) | {_n(r.sessions)} | {_n(r.readings)} | "
                     f"{100 * r.coverage:.1f} ± {100 * r.se:.1f} % | {100 * r.reference:.1f} % | "
                     f"{r.mean_k:.3f} | {r.verdict} |")
    return "\n".join(lines)


def _n(v: int) -> str:
    return f"{v:,}".replace(",", " ")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.coverage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=2000)
    p.add_argument("--readings-per-session", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rows = run_coverage(args.sessions, args.readings_per_session, args.seed,
                        lambda m: print(m, file=sys.stderr, flush=True))
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
