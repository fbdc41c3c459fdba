"""Online drift detectors in accelerated time (samples fed in a loop, no sleeping): false
alarms over 24 simulated hours at 1 reading/s without drift, detection delay and estimated
rate for a drift starting at a known instant; stuck-value and out-of-range detectors.
The numbers are recorded in docs/drift.md."""

from __future__ import annotations

import pytest

from gateway.acquisition.detectors import (
    WARMUP,
    CusumDetector,
    Detection,
    DetectorError,
    EwmaDetector,
    PairMonitor,
    RangeDetector,
    StuckDetector,
)
from simulators.drift import NS_PER_S, DriftingSignal

DAY = 86_400


def first_detection(det: EwmaDetector | CusumDetector, signal: DriftingSignal,
                    n: int) -> Detection | None:
    ts, xs = signal.samples(0, n)
    update = det.update
    for t, x in zip(ts.tolist(), xs.tolist(), strict=True):
        found = update(t, x)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("make", [EwmaDetector, CusumDetector])
@pytest.mark.parametrize("seed", range(5))
def test_no_false_alarm_in_24_hours(make: type[EwmaDetector | CusumDetector],
                                    seed: int) -> None:
    signal = DriftingSignal(sigma=0.002, offset=0.5, seed=seed)
    assert first_detection(make("dmm"), signal, WARMUP + DAY) is None


# drift of 6 σ per hour (0.1 σ per minute) starting one hour in (after the warm-up)
SIGMA = 0.002
RATE = 6 * SIGMA / 3600
START_NS = 3600 * NS_PER_S


@pytest.mark.parametrize("make", [EwmaDetector, CusumDetector])
@pytest.mark.parametrize("seed", range(5))
def test_detection_delay_and_rate(make: type[EwmaDetector | CusumDetector],
                                  seed: int) -> None:
    signal = DriftingSignal(sigma=SIGMA, rate_per_s=RATE, start_ns=START_NS, offset=0.5,
                            seed=seed)
    det = make("dmm")
    found = first_detection(det, signal, 4 * 3600)
    assert found is not None
    delay_s = (found.detected_at_ns - START_NS) / NS_PER_S
    assert 0 < delay_s < 600  # measured 267–438 s (docs/drift.md)
    assert found.kind in ("ewma", "cusum_up")
    assert found.rate_per_s is not None
    assert RATE / 5 < found.rate_per_s < RATE * 5
    assert found.rate_per_day == pytest.approx(found.rate_per_s * 86_400)
    assert found.started_at_ns is not None
    assert abs(found.started_at_ns - START_NS) < 900 * NS_PER_S  # measured ≤ 736 s
    assert det.active
    assert det.update(found.detected_at_ns + NS_PER_S, 100.0) is None  # latched
    det.reset()
    assert not det.active


def test_downward_drift_and_fixed_baseline() -> None:
    signal = DriftingSignal(sigma=1.0, rate_per_s=-1 / 60, start_ns=0, seed=3)
    found = first_detection(CusumDetector("x", mean=0.0, sigma=1.0), signal, 3600)
    assert found is not None
    assert found.kind == "cusum_down"
    assert found.detected_at_ns < 200 * NS_PER_S  # no warm-up with a fixed baseline
    assert found.rate_per_s is not None
    assert found.rate_per_s < 0


def test_pair_monitor_watches_the_difference() -> None:
    mon = PairMonitor("dmm", ewma=EwmaDetector("dmm", mean=0.0, sigma=0.01),
                      cusum=CusumDetector("dmm", mean=0.0, sigma=0.01))
    # the reference moves with the channel: no alarm however large the common signal
    for i in range(2000):
        assert mon.update(i * NS_PER_S, 10.0 + i, 10.0 + i) == []
    found: list[Detection] = []
    for i in range(2000, 4000):
        found += mon.update(i * NS_PER_S, 10.0 + i + 0.001 * (i - 2000), 10.0 + i)
    assert {d.kind for d in found} == {"ewma", "cusum_up"}
    assert mon.active


def test_stuck_detector() -> None:
    det = StuckDetector("p", min_count=5, tolerance=0.001)
    out = [det.update(i * NS_PER_S, 1.0 + (0.0005 if i % 2 else 0.0)) for i in range(7)]
    assert [o is not None for o in out] == [False] * 4 + [True, False, False]
    hit = out[4]
    assert hit is not None
    assert (hit.kind, hit.started_at_ns, hit.statistic) == ("stuck", 0, 5.0)
    assert det.active
    assert det.update(8 * NS_PER_S, 2.0) is None
    assert not det.active
    timed = StuckDetector("p", min_count=2, min_duration_s=10)
    assert [timed.update(i * NS_PER_S, 3.0) is not None for i in range(12)].index(True) == 10


def test_range_detector() -> None:
    det = RangeDetector("v", low=-10.0, high=10.0)
    seq = [0.0, 10.0, 10.5, 11.0, 5.0, -12.0]
    out = [det.update(i * NS_PER_S, v) for i, v in enumerate(seq)]
    assert [o.kind if o else None for o in out] == [None, None, "out_of_range", None, None,
                                                    "out_of_range"]
    assert out[5] is not None
    assert out[5].threshold == -10.0


def test_parameters_are_checked() -> None:
    with pytest.raises(DetectorError, match="lambda"):
        EwmaDetector("x", lam=0.0)
    with pytest.raises(DetectorError, match="both mean and sigma"):
        CusumDetector("x", sigma=1.0)
    with pytest.raises(DetectorError, match="sigma"):
        CusumDetector("x", mean=0.0, sigma=0.0)
    with pytest.raises(DetectorError, match="min_count"):
        StuckDetector("x", min_count=1)
    with pytest.raises(DetectorError, match="below"):
        RangeDetector("x", low=1.0, high=1.0)
