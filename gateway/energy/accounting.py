"""Energy accounting: interval consumption from cumulative energy registers, and tce.

Pure (no I/O, no clock): samples and rules in, intervals out.

**Registers.** A meter's energy register (kWh) only grows, except when

* it *rolls over*: a register that shows at most ``register_max`` (999 999.99 kWh) wraps to 0
  after it, so the step across the wrap is ``modulus − previous + current`` with
  ``modulus = register_max + resolution``. A drop is taken as a rollover only when the
  previous value was in the top ``rollover_band`` share of the register and the wrapped step
  is not larger than that band (and, with ``max_power_kw``, not faster than that power);
* the meter is *replaced*: any other drop (a new meter starting from a low reading). The
  energy between the old meter's last and the new meter's first sample is unknown unless a
  :class:`Replacement` event gives the old meter's final and the new one's initial reading;
  without one the two sides are separate *segments* and nothing is invented across them.

Samples are unwrapped into a continuous cumulative series ``C(t)``; a boundary's value is
``C`` at that instant, linearly interpolated between the samples on either side when both
are in one segment and no further apart than ``max_interpolate_s``, else unknown.

**Intervals** ``[a, b)`` (15 min, hourly, daily, or any step), aligned to the wall clock of
``tz`` (an IANA zone; ``UTC`` by default; ``Asia/Shanghai`` for China Standard Time): daily
intervals start at local midnight, shorter ones at local multiples of the step (a DST day has
23 or 25 hourly intervals). Each gets a status:

* ``measured`` — at least one sample in ``[a, b)`` and both boundaries known from samples no
  further apart than ``gap_s`` (default: the step);
* ``interpolated`` — both boundaries known, but across a gap (no sample in the interval, or a
  boundary bridged by samples more than ``gap_s`` apart): linear interpolation, flagged;
* ``missing`` — a boundary unknown (a gap longer than ``max_interpolate_s``, before the
  first or after the last sample, across a replacement without an event): no value.

Completeness of a meter over a range = measured intervals ÷ expected intervals.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from daq.config.yamlsrc import Located, SourceError, SourceErrors

__all__ = [
    "BOUNDARY",
    "Coefficient",
    "EnergyRules",
    "Interval",
    "IntervalStatus",
    "MeterSeries",
    "Replacement",
    "Sample",
    "Segment",
    "account",
    "boundaries",
    "enterprise_totals",
    "parse_coefficients",
    "tce",
    "unwrap",
]

NS = 1_000_000_000
KGCE_MJ = 29.3076  # 1 kgce = 29.3076 MJ (7 000 kcal, GB/T 2589-2020)


class IntervalStatus(StrEnum):
    MEASURED = "measured"
    INTERPOLATED = "interpolated"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a cumulative register: ``value`` (kWh) at ``ts_ns``."""

    ts_ns: int
    value: float


@dataclass(frozen=True, slots=True)
class Replacement:
    """A meter exchange at ``ts_ns``: the old meter's final and the new one's initial reading."""

    ts_ns: int
    old_final: float
    new_initial: float


@dataclass(frozen=True, slots=True)
class EnergyRules:
    """How to read a meter's register. ``register_max``: the largest value it shows (None =
    it never wraps); ``resolution``: its last digit (the wrap goes max → 0 in one such
    step); ``rollover_band``: share of the register a rollover may span; ``max_power_kw``:
    refuse a rollover that would mean more power than this; ``max_interpolate_s``: longest gap
    bridged by interpolation; ``gap_s``: sample spacing beyond which an interval is no longer
    ``measured`` (None = the interval's own length)."""

    register_max: float | None = None
    resolution: float = 0.01
    rollover_band: float = 0.1
    max_power_kw: float | None = None
    max_interpolate_s: float = 3600.0
    gap_s: float | None = None

    def __post_init__(self) -> None:
        if self.register_max is not None and self.register_max <= 0:
            raise ValueError("register_max must be positive")
        if not 0 < self.rollover_band < 1:
            raise ValueError("rollover_band must be in (0, 1)")
        if self.resolution <= 0 or self.max_interpolate_s < 0:
            raise ValueError("resolution must be positive and max_interpolate_s >= 0")

    @property
    def modulus(self) -> float | None:
        return None if self.register_max is None else self.register_max + self.resolution


@dataclass(frozen=True, slots=True)
class Segment:
    """Samples of one meter (between replacements without events), unwrapped: ``cum`` is
    the energy since the segment's first sample."""

    ts_ns: tuple[int, ...]
    cum: tuple[float, ...]

    def at(self, t_ns: int, max_gap_ns: int) -> tuple[float, int] | None:
        """``(C(t), span_ns)`` — span of the samples bracketing t (0 on a sample), or None."""
        ts = self.ts_ns
        i = bisect.bisect_left(ts, t_ns)
        if i < len(ts) and ts[i] == t_ns:
            return self.cum[i], 0
        if i == 0 or i == len(ts):
            return None
        t0, t1 = ts[i - 1], ts[i]
        span = t1 - t0
        if span > max_gap_ns:
            return None
        c0, c1 = self.cum[i - 1], self.cum[i]
        return c0 + (c1 - c0) * (t_ns - t0) / span, span


@dataclass(frozen=True, slots=True)
class Interval:
    start_ns: int
    end_ns: int
    kwh: float | None  # None when missing
    status: IntervalStatus
    samples: int  # samples with start <= ts < end
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start_ns, "end": self.end_ns, "kwh": self.kwh,
                "status": str(self.status), "samples": self.samples, "note": self.note}


@dataclass(frozen=True, slots=True)
class MeterSeries:
    """One meter's intervals over a range, with what the register says about the whole range."""

    intervals: tuple[Interval, ...]
    rollovers: int
    replacements: int  # detected (no event) or given as events
    register_kwh: float | None  # Σ over segments of C(last) − C(first) inside the range
    first_ns: int | None  # first and last sample inside the range
    last_ns: int | None
    events: tuple[str, ...] = field(default=())

    @property
    def expected(self) -> int:
        return len(self.intervals)

    @property
    def received(self) -> int:
        return sum(1 for i in self.intervals if i.status is IntervalStatus.MEASURED)

    @property
    def completeness(self) -> float:
        return self.received / self.expected if self.intervals else 0.0

    @property
    def allocated_kwh(self) -> float:
        """Σ of the measured and interpolated intervals (missing ones count nothing)."""
        return math.fsum(i.kwh for i in self.intervals if i.kwh is not None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "intervals": [i.as_dict() for i in self.intervals],
            "expected": self.expected, "received": self.received,
            "completeness": self.completeness, "allocated_kwh": self.allocated_kwh,
            "missing": sum(1 for i in self.intervals if i.status is IntervalStatus.MISSING),
            "interpolated": sum(1 for i in self.intervals
                                if i.status is IntervalStatus.INTERPOLATED),
            "register_kwh": self.register_kwh, "first": self.first_ns, "last": self.last_ns,
            "rollovers": self.rollovers, "replacements": self.replacements,
            "events": list(self.events),
        }


# -- unwrapping ---------------------------------------------------------------------------


def unwrap(samples: Iterable[Sample], rules: EnergyRules,
           replacements: Sequence[Replacement] = ()) -> tuple[list[Segment], int, int, list[str]]:
    """Samples (any order; duplicates of one instant keep the last) → continuous segments.

    Returns ``(segments, rollovers, replacements, events)``; ``events`` are human-readable
    notes of each rollover and replacement, with their instant.
    """
    by_ts: dict[int, float] = {}
    for s in samples:
        if math.isfinite(s.value):
            by_ts[s.ts_ns] = float(s.value)
    ordered = sorted(by_ts.items())
    exchanges = sorted(replacements, key=lambda r: r.ts_ns)
    segments: list[Segment] = []
    events: list[str] = []
    rollovers = replaced = 0
    ts: list[int] = []
    cum: list[float] = []
    modulus = rules.modulus
    prev_t, prev_v = 0, 0.0
    for t, v in ordered:
        if not ts:
            ts, cum = [t], [0.0]
            prev_t, prev_v = t, v
            continue
        # explicit exchanges between the previous and this sample
        ex = [r for r in exchanges if prev_t < r.ts_ns <= t]
        if ex:
            r = ex[-1]
            step = (r.old_final - prev_v) + (v - r.new_initial)
            replaced += len(ex)
            events.append(f"meter replaced at {r.ts_ns} (event: old final {r.old_final}, "
                          f"new initial {r.new_initial})")
        elif v >= prev_v:
            step = v - prev_v
        else:
            wrapped: float | None = None
            if modulus is not None:
                band = rules.rollover_band * modulus
                w = modulus - prev_v + v
                if prev_v >= modulus - band and 0 <= w <= band:
                    hours = (t - prev_t) / NS / 3600
                    if rules.max_power_kw is None or w <= rules.max_power_kw * hours:
                        wrapped = w
            if wrapped is not None:
                step = wrapped
                rollovers += 1
                events.append(f"register rolled over at {t} ({prev_v} → {v})")
            else:
                replaced += 1
                events.append(f"meter replaced at {t} (drop {prev_v} → {v}, no event: "
                              "energy between the two meters unknown)")
                segments.append(Segment(tuple(ts), tuple(cum)))
                ts, cum = [t], [0.0]
                prev_t, prev_v = t, v
                continue
        ts.append(t)
        cum.append(cum[-1] + step)
        prev_t, prev_v = t, v
    if ts:
        segments.append(Segment(tuple(ts), tuple(cum)))
    return segments, rollovers, replaced, events


# -- boundaries ---------------------------------------------------------------------------


def boundaries(start_ns: int, end_ns: int, step_s: int, tz: str = "UTC") -> list[int]:
    """Interval boundaries covering ``[start, end)``, aligned to ``tz``'s wall clock: for a
    step of a day, local midnights; else local multiples of the step (which must divide a
    day). The first boundary is at or before ``start``, the last at or after ``end``."""
    if step_s <= 0 or (step_s < 86_400 and 86_400 % step_s) or (step_s > 86_400):
        raise ValueError(f"step {step_s} s: must divide a day, or be a day")
    zone = ZoneInfo(tz)
    start = dt.datetime.fromtimestamp(start_ns / NS, zone)
    out: list[int] = []
    if step_s == 86_400:
        day = start.date()
        while True:
            b = dt.datetime.combine(day, dt.time(), zone)
            b_ns = int(b.timestamp()) * NS
            out.append(b_ns)
            if b_ns >= end_ns:
                return out
            day += dt.timedelta(days=1)
    midnight = dt.datetime.combine(start.date(), dt.time(), zone)
    # local seconds since local midnight, floored to the step, back to an instant
    local_s = (start.replace(tzinfo=None) - midnight.replace(tzinfo=None)).total_seconds()
    first_local = midnight.replace(tzinfo=None) + dt.timedelta(
        seconds=math.floor(local_s / step_s) * step_s)
    b_ns = int(first_local.replace(tzinfo=zone).timestamp()) * NS
    out.append(b_ns)
    while b_ns < end_ns:
        b_ns += step_s * NS  # elapsed time: a DST change shifts wall labels, not spacing
        out.append(b_ns)
    return out


# -- accounting ---------------------------------------------------------------------------


def account(samples: Iterable[Sample], edges: Sequence[int], rules: EnergyRules | None = None,
            replacements: Sequence[Replacement] = ()) -> MeterSeries:
    """One meter's consumption in each interval ``[edges[i], edges[i+1])`` (see module doc)."""
    rules = rules or EnergyRules()
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError("need at least two strictly increasing interval edges")
    segments, rollovers, replaced, events = unwrap(samples, rules, replacements)
    max_gap_ns = int(rules.max_interpolate_s * NS)
    all_ts = sorted(t for s in segments for t in s.ts_ns)
    intervals: list[Interval] = []
    for a, b in itertools.pairwise(edges):
        gap_ns = int((rules.gap_s if rules.gap_s is not None else (b - a) / NS) * NS)
        n = bisect.bisect_left(all_ts, b) - bisect.bisect_left(all_ts, a)
        found = None
        for s in segments:
            ca, cb = s.at(a, max_gap_ns), s.at(b, max_gap_ns)
            if ca is not None and cb is not None:
                found = (ca, cb)
                break
        if found is None:
            broken = any(s0.ts_ns[-1] < b and s1.ts_ns[0] > a
                         for s0, s1 in itertools.pairwise(segments))
            why = ("meter replaced without an event" if broken
                   else "no samples" if n == 0
                   else "boundary not bracketed by samples within the interpolation limit")
            intervals.append(Interval(a, b, None, IntervalStatus.MISSING, n, why))
            continue
        (ca_v, span_a), (cb_v, span_b) = found
        kwh = cb_v - ca_v
        if n > 0 and span_a <= gap_ns and span_b <= gap_ns:
            intervals.append(Interval(a, b, kwh, IntervalStatus.MEASURED, n))
        else:
            gap = max(span_a, span_b) / NS
            intervals.append(Interval(a, b, kwh, IntervalStatus.INTERPOLATED, n,
                                      f"interpolated across a {gap:.0f} s gap"))
    lo, hi = edges[0], edges[-1]
    register: float | None = None
    first = last = None
    for s in segments:
        inside = [i for i, t in enumerate(s.ts_ns) if lo <= t <= hi]
        if not inside:
            continue
        register = (register or 0.0) + s.cum[inside[-1]] - s.cum[inside[0]]
        first = s.ts_ns[inside[0]] if first is None else min(first, s.ts_ns[inside[0]])
        last = s.ts_ns[inside[-1]] if last is None else max(last, s.ts_ns[inside[-1]])
    return MeterSeries(tuple(intervals), rollovers, replaced, register, first, last,
                       tuple(events))


# -- standard coal ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coefficient:
    """kgce per ``unit`` of ``energy``, with where it comes from and whether it was checked."""

    energy: str
    unit: str
    kgce_per_unit: float
    basis: str
    source: str
    confirmed: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"energy": self.energy, "unit": self.unit, "kgce_per_unit": self.kgce_per_unit,
                "basis": self.basis, "source": self.source, "confirmed": self.confirmed,
                "note": self.note}


def parse_coefficients(loc: Located) -> dict[str, Coefficient]:
    """Coefficients from an energy-coefficients file (built in:
    ``daq/data/energy-coefficients.yaml``) loaded with :func:`daq.config.yamlsrc.load_yaml`
    (a mapping with ``coefficients:``, a list). Raises :class:`~daq.config.yamlsrc.SourceErrors`
    (``FILE:LINE: field: message``) listing every problem."""
    data = loc.data
    if not isinstance(data, Mapping) or not isinstance(data.get("coefficients"), list):
        raise SourceErrors([loc.error(("coefficients",), "expected a list")])
    out: dict[str, Coefficient] = {}
    errors: list[SourceError] = []
    for i, item in enumerate(data["coefficients"]):
        where: tuple[str | int, ...] = ("coefficients", i)
        if not isinstance(item, Mapping):
            errors.append(loc.error(where, "expected a mapping"))
            continue
        missing = [k for k in ("energy", "unit", "kgce_per_unit", "basis", "source",
                               "confirmed") if k not in item]
        if missing:
            errors.append(loc.error(where, f"missing {', '.join(missing)}"))
            continue
        k = item["kgce_per_unit"]
        if isinstance(k, bool) or not isinstance(k, int | float) or not k > 0:
            errors.append(loc.error((*where, "kgce_per_unit"), "must be a positive number"))
            continue
        if not isinstance(item["confirmed"], bool):
            errors.append(loc.error((*where, "confirmed"), "must be true or false"))
            continue
        c = Coefficient(energy=str(item["energy"]), unit=str(item["unit"]),
                        kgce_per_unit=float(k), basis=str(item["basis"]),
                        source=str(item["source"]), confirmed=item["confirmed"],
                        note=str(item.get("note", "")))
        if c.energy in out:
            errors.append(loc.error((*where, "energy"), f"duplicate {c.energy!r}"))
            continue
        out[c.energy] = c
    if errors:
        raise SourceErrors(errors)
    return out


def tce(amount: float, coefficient: Coefficient) -> float:
    """Tonnes of standard coal equivalent of ``amount`` (in the coefficient's unit)."""
    return amount * coefficient.kgce_per_unit / 1000.0


BOUNDARY = "enterprise_boundary"


def enterprise_totals(meters: Sequence[dict[str, Any]], n_intervals: int) -> dict[str, Any]:
    """Sum meter series (``MeterSeries.as_dict()`` plus ``enterprise`` and, where the
    registry knows it, ``measurement_level``) into per-enterprise totals.

    An enterprise's consumption is what crosses its boundary (GB 17167's first level of
    metering): when any of its meters is known to be at ``enterprise_boundary``, only those
    are summed — the sub-meters behind them would count the same energy twice. Without any
    level known every meter is summed, and ``basis`` says so. Each meter dict gets
    ``in_total``; each enterprise ``basis``, its meter counts, interval sums (``None`` for an
    interval no summed meter measured), per-interval missing counts and completeness.
    """
    by_ent: dict[str, list[dict[str, Any]]] = {}
    for m in meters:
        by_ent.setdefault(str(m["enterprise"]), []).append(m)
    out: dict[str, Any] = {}
    for ent, ms in by_ent.items():
        boundary = [m for m in ms if m.get("measurement_level") == BOUNDARY]
        summed = boundary or ms
        for m in ms:
            m["in_total"] = any(m is x for x in summed)
        intervals: list[float | None] = [None] * n_intervals
        missing = [0] * n_intervals
        for m in summed:
            for i, iv in enumerate(m["intervals"][:n_intervals]):
                if iv["kwh"] is None:
                    missing[i] += 1
                else:
                    intervals[i] = (intervals[i] or 0.0) + iv["kwh"]
        expected = sum(m["expected"] for m in summed)
        received = sum(m["received"] for m in summed)
        out[ent] = {
            "basis": ("enterprise boundary meters" if boundary else
                      "all meters (no measurement levels known: sub-meters count twice)"),
            "meters": len(summed), "meters_all": len(ms),
            "allocated_kwh": sum(m["allocated_kwh"] for m in summed),
            "register_kwh": sum(m["register_kwh"] or 0.0 for m in summed),
            "expected": expected, "received": received,
            "completeness": received / expected if expected else 0.0,
            "intervals": intervals, "missing_intervals": missing,
        }
    return out
