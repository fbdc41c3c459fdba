"""Physical model of a three-phase energy meter and the load behind it.

:class:`ThreePhaseLoad` is deterministic: the same seed and the same sequence of times give the
same values. It keeps no clock; callers pass the time in (``values_at(t_ns)``), monotonically.

What it models:

* voltages near 230 V: a per-phase offset, a slow random wander and a small sag with load
  current (line impedance), so voltages and currents are not independent;
* frequency near 50 Hz, a slow random wander held within ±0.05 Hz;
* per-phase currents: a base load (slightly unbalanced between phases) times a "daily" curve
  compressed to minutes (``day_s``, 10 minutes by default) times a mean-reverting random walk;
* per-phase power factor in 0.85–0.99; active power ``P = V·I·pf``; ``power_total = ΣP`` and
  ``power_factor = ΣP / ΣV·I`` (the meter's total power factor);
* ``energy_import``: a seed-dependent counter (kWh) that integrates ``power_total`` between
  successive calls (trapezoidal rule); ``energy_export``: a small constant counter.

The random parts are Ornstein–Uhlenbeck-like processes sampled at fixed knots (every
``step_s`` seconds from the first time seen) and smoothly interpolated between them. Each
process draws its knots in order from its own seeded generator, so every value except the
energy counter depends only on the seed, the start time and ``t`` — not on how often or when
the model was asked. The energy counter depends on the calling times: it is the integral the
meter accumulated between them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import numpy as np

CHANNELS: tuple[str, ...] = (
    "voltage_l1",
    "voltage_l2",
    "voltage_l3",
    "current_l1",
    "current_l2",
    "current_l3",
    "power_l1",
    "power_l2",
    "power_l3",
    "power_total",
    "power_factor",
    "frequency",
    "energy_import",
    "energy_export",
)
"""Channel ids :class:`ThreePhaseLoad` produces (units V, A, W, 1, Hz, kWh)."""

_NS_PER_S = 1_000_000_000
_J_PER_KWH = 3.6e6


class MeterModel(Protocol):
    """What a meter simulator needs from a physical model."""

    def values_at(self, t_ns: int) -> Mapping[str, float]:
        """Engineering values of every channel at ``t_ns`` (non-decreasing between calls)."""
        ...


class _Normals:
    """Standard normal draws from one seeded generator, handed out one at a time."""

    _BLOCK = 1024

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._rng.standard_normal(self._BLOCK).tolist()
            self._i = 0
        x = self._buf[self._i]
        self._i += 1
        return x


class _Walk:
    """A mean-reverting random walk (discrete Ornstein–Uhlenbeck) with ``dims`` components.

    Knot ``k`` sits at ``k × step_s``; between knots the value is smoothstep-interpolated.
    ``sigma`` is the stationary standard deviation, ``tau_s`` the relaxation time. Time only
    moves forward, so only the two knots around the current time are kept.
    """

    def __init__(
        self, normals: _Normals, dims: int, step_s: float, sigma: float, tau_s: float
    ) -> None:
        self._normals = normals
        self._step_s = step_s
        self._rho = math.exp(-step_s / tau_s)
        self._innov = sigma * math.sqrt(1.0 - self._rho * self._rho)
        self._k = 0  # index of the knot at or before the current time
        self._a = [sigma * normals.next() for _ in range(dims)]  # knot k, stationary start
        self._b = [self._step(x) for x in self._a]  # knot k + 1

    def _step(self, x: float) -> float:
        return self._rho * x + self._innov * self._normals.next()

    def at(self, s: float) -> list[float]:
        pos = s / self._step_s
        k = math.floor(pos)
        while self._k < k:
            self._a = self._b
            self._b = [self._step(x) for x in self._a]
            self._k += 1
        u = pos - k
        w = u * u * (3.0 - 2.0 * u)
        return [a + (b - a) * w for a, b in zip(self._a, self._b, strict=True)]


class ThreePhaseLoad:
    """A three-phase load seen by an energy meter. See the module docstring.

    ``start_ns`` anchors the model's time (the first ``values_at`` call if ``None``).
    ``day_s`` is the period of the compressed daily load curve.
    """

    channels: tuple[str, ...] = CHANNELS

    def __init__(
        self,
        seed: int = 0,
        *,
        start_ns: int | None = None,
        day_s: float = 600.0,
        nominal_voltage_v: float = 230.0,
        nominal_frequency_hz: float = 50.0,
    ) -> None:
        if day_s <= 0:
            raise ValueError("day_s must be positive")
        self.seed = seed
        self.day_s = day_s
        seeds = np.random.SeedSequence(seed).spawn(5)
        rng = np.random.default_rng(seeds[0])
        # Constants of this particular installation, drawn first so they do not depend on
        # anything else.
        self.base_current_a = float(rng.uniform(6.0, 25.0))
        self._unbalance = [float(x) for x in rng.uniform(-0.08, 0.08, 3)]
        self._v_offset = [float(x) for x in rng.uniform(-1.5, 1.5, 3)]
        self._pf_centre = [float(x) for x in rng.uniform(0.90, 0.95, 3)]
        self._line_r_ohm = float(rng.uniform(0.02, 0.06))
        self._curve_phase = float(rng.uniform(0.0, 2 * math.pi))
        self._curve_phase2 = float(rng.uniform(0.0, 2 * math.pi))
        self.initial_import_kwh = round(float(rng.uniform(1_000.0, 50_000.0)), 1)
        self.export_kwh = round(float(rng.uniform(0.0, 20.0)), 1)
        self._v_nominal = nominal_voltage_v
        self._f_nominal = nominal_frequency_hz

        # One generator per walk: a walk's knots then do not depend on when the others
        # were advanced, i.e. on the calling pattern.
        def normals(i: int) -> _Normals:
            return _Normals(np.random.default_rng(seeds[i]))

        self._v_walk = _Walk(normals(1), 3, step_s=1.0, sigma=0.8, tau_s=30.0)
        self._f_walk = _Walk(normals(2), 1, step_s=2.0, sigma=0.015, tau_s=20.0)
        self._i_walk = _Walk(normals(3), 3, step_s=2.0, sigma=0.08, tau_s=40.0)
        self._pf_walk = _Walk(normals(4), 3, step_s=3.0, sigma=0.012, tau_s=60.0)

        self._start_ns = start_ns
        self._last_ns: int | None = None
        self._last_power_w = 0.0
        self._import_kwh = self.initial_import_kwh

    @property
    def last_ns(self) -> int | None:
        """Time of the latest ``values_at`` call, ``None`` before the first."""
        return self._last_ns

    def values_at(self, t_ns: int) -> dict[str, float]:
        """Advance the model to ``t_ns`` and return every channel's engineering value.

        ``t_ns`` must not be earlier than the previous call's (``ValueError``); the same
        ``t_ns`` twice returns the same values and adds no energy.
        """
        if self._last_ns is not None and t_ns < self._last_ns:
            raise ValueError(f"time went backwards: {t_ns} < {self._last_ns}")
        if self._start_ns is None:
            self._start_ns = t_ns
        s = max(0.0, (t_ns - self._start_ns) / _NS_PER_S)

        day = 2 * math.pi * s / self.day_s
        curve = (
            1.0
            + 0.35 * math.sin(day + self._curve_phase)
            + 0.12 * math.sin(2 * day + self._curve_phase2)
        )
        dv = self._v_walk.at(s)
        di = self._i_walk.at(s)
        dpf = self._pf_walk.at(s)
        (df,) = self._f_walk.at(s)

        out: dict[str, float] = {}
        total_p = 0.0
        total_s = 0.0
        for n in range(3):
            i_a = self.base_current_a * (1.0 + self._unbalance[n]) * curve * (1.0 + di[n])
            i_a = max(i_a, 0.05 * self.base_current_a)
            v_v = self._v_nominal + self._v_offset[n] + dv[n] - self._line_r_ohm * i_a
            pf = min(0.99, max(0.85, self._pf_centre[n] + 0.02 * math.sin(day + n) + dpf[n]))
            apparent = v_v * i_a
            p_w = apparent * pf
            total_p += p_w
            total_s += apparent
            out[f"voltage_l{n + 1}"] = v_v
            out[f"current_l{n + 1}"] = i_a
            out[f"power_l{n + 1}"] = p_w
        out["power_total"] = total_p
        out["power_factor"] = total_p / total_s
        out["frequency"] = self._f_nominal + min(0.05, max(-0.05, df))

        if self._last_ns is not None:
            dt_s = (t_ns - self._last_ns) / _NS_PER_S
            self._import_kwh += (self._last_power_w + total_p) / 2.0 * dt_s / _J_PER_KWH
        self._last_ns = t_ns
        self._last_power_w = total_p
        out["energy_import"] = self._import_kwh
        out["energy_export"] = self.export_kwh
        return out
