"""Online drift detection in the gateway: each configured pair (a channel and its check
standard or redundant reference channel, ``gateways[].drift_checks``) is watched with the
EWMA and CUSUM detectors of :mod:`gateway.acquisition.detectors` on the difference of their
(corrected) values.

Every reading of a watched channel is paired with the latest good reading of its reference
if that one is at most ``max_skew_ms`` older or newer; readings that are bad or not numeric
are skipped. A detection raises a ``drift`` alarm on the channel's device (key
``drift:<channel>``) with the detection time as ``since`` and the detector, the estimated
drift rate per day and start in ``details``. The rate estimated at the alarm is rough; once
data after the alarm span three times the time from the estimated start to the alarm, the rate is
refined by a straight-line fit to them, with its standard uncertainty, and the alarm updated
(``rate_refined: true``, ``u_rate_per_day``). The detectors latch: the alarm stays until the
gateway restarts (after the instrument has been recalibrated or adjusted) — a drift does not
end by itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from daq.alarms import Alarm, AlarmKind, Severity
from daq.config import DriftCheck
from daq.model import Quality, Reading
from gateway.acquisition.detectors import CusumDetector, Detection, EwmaDetector, PairMonitor

log = logging.getLogger(__name__)

__all__ = ["DriftWatch"]


@dataclass
class _Pair:
    device: str
    channel: str
    ref: tuple[str, str]
    max_skew_ns: int
    monitor: PairMonitor
    detection: Detection | None = None
    paired: int = 0
    # after a detection: the differences that follow it, for a refined rate
    after: list[tuple[float, float]] = field(default_factory=list)
    refined_rate_per_s: float | None = None
    u_refined_rate_per_s: float | None = None

    def refine(self, ts_ns: int, diff: float) -> None:
        """Collect the differences after a detection; once they span three times the time
        from the estimated start to the detection (and at least 30 samples), fit a straight line
        to them (least squares) for the drift rate and its standard uncertainty. Only data
        after the alarm are used: the samples that made the alarm are biased upwards by the
        very noise that pushed the statistic over its limit. The rate the detector estimates
        at the alarm is rougher (docs/drift.md)."""
        det = self.detection
        if det is None or self.refined_rate_per_s is not None:
            return
        start = det.started_at_ns if det.started_at_ns is not None else det.detected_at_ns
        self.after.append(((ts_ns - det.detected_at_ns) / 1e9, diff))
        span_s = self.after[-1][0]
        if span_s < 3 * max(det.detected_at_ns - start, 0) / 1e9 or len(self.after) < 30:
            return
        n = len(self.after)
        t_mean = sum(t for t, _ in self.after) / n
        x_mean = sum(x for _, x in self.after) / n
        stt = sum((t - t_mean) ** 2 for t, _ in self.after)
        if stt <= 0:
            return
        slope = sum((t - t_mean) * (x - x_mean) for t, x in self.after) / stt
        resid = sum((x - x_mean - slope * (t - t_mean)) ** 2 for t, x in self.after)
        self.refined_rate_per_s = slope
        self.u_refined_rate_per_s = math.sqrt(resid / (n - 2) / stt)
        log.warning("%s/%s: drift rate refined to %+.4g ± %.2g per day (%d samples)",
                    self.device, self.channel, slope * 86_400,
                    self.u_refined_rate_per_s * 86_400, n)
        self.after.clear()


class DriftWatch:
    """Pairs readings, feeds the detectors, and reports their alarms per device."""

    kinds: tuple[str, ...] = (AlarmKind.DRIFT,)

    def __init__(self, checks: Iterable[DriftCheck]) -> None:
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._refs: set[tuple[str, str]] = set()
        self._latest: dict[tuple[str, str], tuple[int, float]] = {}
        for c in checks:
            dev, ch = c.channel.split("/", 1)
            ref_dev, ref_ch = c.reference.split("/", 1)
            monitor = PairMonitor(
                c.channel,
                ewma=EwmaDetector(c.channel, lam=c.ewma.lambda_, L=c.ewma.L, mean=c.mean,
                                  sigma=c.sigma, warmup=c.warmup),
                cusum=CusumDetector(c.channel, k=c.cusum.k, h=c.cusum.h, mean=c.mean,
                                    sigma=c.sigma, warmup=c.warmup))
            self._pairs[(dev, ch)] = _Pair(dev, ch, (ref_dev, ref_ch),
                                           c.max_skew_ms * 1_000_000, monitor)
            self._refs.add((ref_dev, ref_ch))

    @property
    def active(self) -> bool:
        return bool(self._pairs)

    def observe(self, readings: Sequence[Reading]) -> None:
        """Feed one poll's readings (references first, so a pair on one device matches)."""
        usable = [r for r in readings if r.quality is not Quality.BAD
                  and isinstance(r.value, int | float) and not isinstance(r.value, bool)]
        for r in usable:
            if (r.device, r.channel) in self._refs:
                self._latest[(r.device, r.channel)] = (r.ts_ns, float(r.value))  # type: ignore[arg-type]
        for r in usable:
            pair = self._pairs.get((r.device, r.channel))
            if pair is None:
                continue
            ref = self._latest.get(pair.ref)
            if ref is None or abs(r.ts_ns - ref[0]) > pair.max_skew_ns:
                continue
            pair.paired += 1
            value = float(r.value)  # type: ignore[arg-type]
            if pair.detection is not None:
                pair.refine(r.ts_ns, value - ref[1])
                continue
            for det in pair.monitor.update(r.ts_ns, value, ref[1]):
                if pair.detection is None:
                    pair.detection = det
                    log.warning("%s/%s: drift against %s/%s detected (%s): %s", pair.device,
                                pair.channel, *pair.ref, det.kind, det.message)

    def alarms(self, device: str, now_ns: int) -> list[Alarm]:
        out = []
        for pair in self._pairs.values():
            det = pair.detection
            if pair.device != device or det is None:
                continue
            refined = pair.refined_rate_per_s
            rate = det.rate_per_day if refined is None else refined * 86_400
            out.append(Alarm(
                AlarmKind.DRIFT, det.detected_at_ns,
                f"{pair.channel} drifts against {'/'.join(pair.ref)} ({det.kind})"
                + (f", about {rate:+.3g} per day" if rate is not None else ""),
                Severity.WARNING, pair.channel,
                {"detector": det.kind, "reference": "/".join(pair.ref),
                 "rate_per_day": rate, "rate_refined": refined is not None,
                 "u_rate_per_day": None if pair.u_refined_rate_per_s is None
                 else pair.u_refined_rate_per_s * 86_400,
                 "rate_per_day_at_detection": det.rate_per_day,
                 "started_at": det.started_at_ns, "statistic": det.statistic,
                 "threshold": det.threshold}))
        return out
