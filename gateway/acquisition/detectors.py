"""Online drift detectors (pure: no asyncio, no I/O; one sample per ``update`` call).

* :class:`EwmaDetector` and :class:`CusumDetector` watch the difference between a channel and
  its check standard or redundant reference channel (:class:`PairMonitor` forms it). Both
  work in units of the in-control standard deviation σ of that difference, with in-control
  mean μ₀; σ and μ₀ are either fixed (from configuration) or estimated from a warm-up window
  of the first ``warmup`` samples (assumed drift-free), then frozen.
* :class:`StuckDetector` and :class:`RangeDetector` watch every channel's raw value.

``update(ts_ns, value)`` returns a :class:`Detection` when an alarm starts and None otherwise.
A drift detector latches: after a detection it stays ``active`` and returns None until
:meth:`reset` (e.g. after recalibration). Stuck and out-of-range detectors clear themselves
when the condition ends (``active`` turns False). Parameters, their defaults, the measured
detection delays and false-alarm counts: ``docs/drift.md``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from gateway.errors import GatewayError

NS_PER_S = 1_000_000_000
SECONDS_PER_DAY = 86_400.0

Kind = Literal["ewma", "cusum_up", "cusum_down", "stuck", "out_of_range"]

# defaults (docs/drift.md): chosen for no false alarm in 24 h at 1 reading/s
EWMA_LAMBDA = 0.05
EWMA_L = 6.0
CUSUM_K = 0.5
CUSUM_H = 16.0
WARMUP = 1800
RAMP_BLOCK = 10
RAMP_BLOCKS = 720


class DetectorError(GatewayError):
    """Invalid detector parameters."""


@dataclass(frozen=True)
class Detection:
    """An alarm: what, on which channel, when, the statistic against its threshold and, for
    drift detectors, the estimated drift rate (in the channel's unit per second) and the
    estimated start of the change."""

    kind: Kind
    channel: str
    detected_at_ns: int
    statistic: float
    threshold: float
    message: str
    rate_per_s: float | None = None
    started_at_ns: int | None = None

    @property
    def rate_per_day(self) -> float | None:
        return None if self.rate_per_s is None else self.rate_per_s * SECONDS_PER_DAY


class _Baseline:
    """μ₀ and σ: fixed, or the mean and sample standard deviation of a warm-up window."""

    def __init__(self, mean: float | None, sigma: float | None, warmup: int) -> None:
        if sigma is not None and not sigma > 0:
            raise DetectorError(f"sigma must be > 0, got {sigma}")
        if (mean is None) != (sigma is None):
            raise DetectorError("give both mean and sigma (fixed) or neither (warm-up)")
        if sigma is None and warmup < 2:
            raise DetectorError(f"warmup must be >= 2 samples, got {warmup}")
        self.mean = 0.0 if mean is None else mean
        self.sigma = 1.0 if sigma is None else sigma
        self.ready = sigma is not None
        self.warmup = warmup
        self._n = 0
        self._m = 0.0
        self._s = 0.0

    def learn(self, x: float) -> bool:
        """Feed a warm-up sample (Welford); True once the baseline is ready."""
        self._n += 1
        d = x - self._m
        self._m += d / self._n
        self._s += d * (x - self._m)
        if self._n >= self.warmup:
            sd = math.sqrt(self._s / (self._n - 1))
            if sd > 0:
                self.mean, self.sigma, self.ready = self._m, sd, True
        return self.ready


class _Ramp:
    """Block means of the deviations from μ₀ over a recent window (``history_blocks`` blocks
    of ``block`` samples), for estimating a drift when an alarm fires: the least-squares fit
    of a hinge, dev = r·max(0, t − τ), over every candidate start τ at a block boundary
    (closed form per τ from suffix sums, O(blocks)); the τ with the smallest residual wins.
    Memory and per-sample cost are constant."""

    def __init__(self, block: int, history_blocks: int) -> None:
        if block < 1 or history_blocks < 2:
            raise DetectorError("block must be >= 1 and history_blocks >= 2")
        self.block, self.keep = block, history_blocks
        self.blocks: deque[tuple[float, float, int]] = deque(maxlen=history_blocks)
        self._n = 0
        self._st = self._sx = 0.0
        # times are kept relative to the first sample: epoch seconds squared (~3e18) would
        # cancel catastrophically in the fit's sums (found with wall-clock timestamps)
        self._t0_ns: int | None = None

    def add(self, ts_ns: int, dev: float) -> None:
        if self._t0_ns is None:
            self._t0_ns = ts_ns
        self._n += 1
        self._st += (ts_ns - self._t0_ns) / NS_PER_S
        self._sx += dev
        if self._n == self.block:
            self.blocks.append((self._st / self._n, self._sx / self._n, self._n))
            self._n = 0
            self._st = self._sx = 0.0

    def fit(self) -> tuple[int, float] | None:
        """(τ in ns, rate per second) of the best hinge, or None with too little data."""
        pts = list(self.blocks)
        if self._n:
            pts.append((self._st / self._n, self._sx / self._n, self._n))
        if len(pts) < 3:
            return None
        best: tuple[float, int, float] | None = None
        sw = swt = swtt = swx = swtx = 0.0
        for i in range(len(pts) - 1, 0, -1):  # the hinge starts between pts[i-1] and pts[i]
            t, x, w = pts[i]
            sw += w
            swt += w * t
            swtt += w * t * t
            swx += w * x
            swtx += w * t * x
            tau = pts[i - 1][0]
            sxy = swtx - tau * swx
            syy = swtt - 2 * tau * swt + sw * tau * tau
            if syy <= 0:
                continue
            gain = sxy * sxy / syy  # the residual sum of squares falls by this much
            if best is None or gain > best[0]:
                best = (gain, round(tau * NS_PER_S), sxy / syy)
        if best is None:
            return None
        assert self._t0_ns is not None
        return best[1] + self._t0_ns, best[2]


class EwmaDetector:
    """EWMA chart on x: z = λx + (1 − λ)z, z₀ = μ₀; alarm when |z − μ₀| > L·σ·√(λ/(2 − λ))
    (the asymptotic limit). λ (``lam``) and L are in units of σ as usual."""

    def __init__(self, channel: str, *, lam: float = EWMA_LAMBDA, L: float = EWMA_L,
                 mean: float | None = None, sigma: float | None = None,
                 warmup: int = WARMUP, ramp_block: int = RAMP_BLOCK,
                 ramp_blocks: int = RAMP_BLOCKS) -> None:
        if not 0 < lam <= 1:
            raise DetectorError(f"lambda must be in (0, 1], got {lam}")
        if not L > 0:
            raise DetectorError(f"L must be > 0, got {L}")
        self.channel, self.lam, self.L = channel, lam, L
        self._base = _Baseline(mean, sigma, warmup)
        self._ramp = _Ramp(ramp_block, ramp_blocks)
        self.active = False
        self._z = self._base.mean
        self._limit = L * self._base.sigma * math.sqrt(lam / (2 - lam))

    def reset(self) -> None:
        self.active = False
        self._z = self._base.mean

    def update(self, ts_ns: int, value: float) -> Detection | None:
        base = self._base
        if not base.ready:
            if base.learn(value):
                self._z = base.mean
                self._limit = self.L * base.sigma * math.sqrt(self.lam / (2 - self.lam))
            return None
        if self.active:
            return None
        self._z += self.lam * (value - self._z)
        dev = self._z - base.mean
        self._ramp.add(ts_ns, value - base.mean)
        if abs(dev) <= self._limit:
            return None
        self.active = True
        ramp = self._ramp.fit()
        return Detection("ewma", self.channel, ts_ns, dev / base.sigma,
                         self._limit / base.sigma,
                         f"EWMA of the difference {dev:+.4g} beyond ±{self._limit:.4g} "
                         f"(λ={self.lam:g}, L={self.L:g}, σ={base.sigma:.4g})",
                         ramp[1] if ramp else None, ramp[0] if ramp else None)


class CusumDetector:
    """Two-sided tabular CUSUM on x: S⁺ = max(0, S⁺ + (x − μ₀)/σ − k), S⁻ likewise for
    downward shifts; alarm when either exceeds h. k and h are in units of σ (k = half the
    shift to detect quickly). The drift rate and start come from the hinge fit of :class:`_Ramp`."""

    def __init__(self, channel: str, *, k: float = CUSUM_K, h: float = CUSUM_H,
                 mean: float | None = None, sigma: float | None = None,
                 warmup: int = WARMUP, ramp_block: int = RAMP_BLOCK,
                 ramp_blocks: int = RAMP_BLOCKS) -> None:
        if not k >= 0:
            raise DetectorError(f"k must be >= 0, got {k}")
        if not h > 0:
            raise DetectorError(f"h must be > 0, got {h}")
        self.channel, self.k, self.h = channel, k, h
        self._base = _Baseline(mean, sigma, warmup)
        self._ramp = _Ramp(ramp_block, ramp_blocks)
        self.active = False
        self._sp = self._sn = 0.0

    def reset(self) -> None:
        self.active = False
        self._sp = self._sn = 0.0

    def update(self, ts_ns: int, value: float) -> Detection | None:
        base = self._base
        if not base.ready:
            base.learn(value)
            return None
        if self.active:
            return None
        dev = value - base.mean
        zs = dev / base.sigma
        self._sp = max(0.0, self._sp + zs - self.k)
        self._sn = max(0.0, self._sn - zs - self.k)
        self._ramp.add(ts_ns, dev)
        if self._sp > self.h:
            kind: Kind = "cusum_up"
            stat = self._sp
        elif self._sn > self.h:
            kind, stat = "cusum_down", self._sn
        else:
            return None
        self.active = True
        ramp = self._ramp.fit()
        return Detection(kind, self.channel, ts_ns, stat, self.h,
                         f"CUSUM {'up' if kind == 'cusum_up' else 'down'} {stat:.3g} > h "
                         f"{self.h:g} (k={self.k:g}, σ={base.sigma:.4g})",
                         ramp[1] if ramp else None, ramp[0] if ramp else None)


class StuckDetector:
    """Alarm when the value has not changed by more than ``tolerance`` for ``min_count``
    consecutive samples spanning at least ``min_duration_s``; clears on the next change."""

    def __init__(self, channel: str, *, min_count: int = 60, min_duration_s: float = 0.0,
                 tolerance: float = 0.0) -> None:
        if min_count < 2:
            raise DetectorError(f"min_count must be >= 2, got {min_count}")
        if tolerance < 0:
            raise DetectorError(f"tolerance must be >= 0, got {tolerance}")
        self.channel, self.min_count, self.tolerance = channel, min_count, tolerance
        self.min_duration_ns = round(min_duration_s * NS_PER_S)
        self.active = False
        self._ref: float | None = None
        self._t0 = 0
        self._n = 0

    def reset(self) -> None:
        self.active = False
        self._ref, self._n = None, 0

    def update(self, ts_ns: int, value: float) -> Detection | None:
        if self._ref is None or abs(value - self._ref) > self.tolerance:
            self._ref, self._t0, self._n = value, ts_ns, 1
            self.active = False
            return None
        self._n += 1
        if self.active or self._n < self.min_count or ts_ns - self._t0 < self.min_duration_ns:
            return None
        self.active = True
        return Detection("stuck", self.channel, ts_ns, float(self._n), float(self.min_count),
                         f"value {value:g} unchanged (±{self.tolerance:g}) for {self._n} "
                         f"samples since {self._t0} ns", started_at_ns=self._t0)


class RangeDetector:
    """Alarm when the value leaves [low, high] (e.g. the channel's measuring range); clears
    when it is back inside."""

    def __init__(self, channel: str, *, low: float, high: float) -> None:
        if not low < high:
            raise DetectorError(f"low {low} must be below high {high}")
        self.channel, self.low, self.high = channel, low, high
        self.active = False

    def reset(self) -> None:
        self.active = False

    def update(self, ts_ns: int, value: float) -> Detection | None:
        inside = self.low <= value <= self.high
        if inside or math.isnan(value):
            self.active = False if inside else self.active
            return None
        if self.active:
            return None
        self.active = True
        bound = self.high if value > self.high else self.low
        return Detection("out_of_range", self.channel, ts_ns, value, bound,
                         f"value {value:g} outside [{self.low:g}, {self.high:g}]",
                         started_at_ns=ts_ns)


class PairMonitor:
    """EWMA and CUSUM on ``value − reference`` of a channel and its check standard or
    redundant reference channel (both already in the same unit)."""

    def __init__(self, channel: str, *, ewma: EwmaDetector | None = None,
                 cusum: CusumDetector | None = None) -> None:
        self.channel = channel
        self.ewma = ewma or EwmaDetector(channel)
        self.cusum = cusum or CusumDetector(channel)

    @property
    def active(self) -> bool:
        return self.ewma.active or self.cusum.active

    def reset(self) -> None:
        self.ewma.reset()
        self.cusum.reset()

    def update(self, ts_ns: int, value: float, reference: float) -> list[Detection]:
        diff = value - reference
        out = []
        for det in (self.ewma.update(ts_ns, diff), self.cusum.update(ts_ns, diff)):
            if det is not None:
                out.append(det)
        return out
