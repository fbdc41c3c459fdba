"""Online drift detection in the gateway: a DMM simulator read against a reference DMM on the
same (simulated) source starts drifting at a known instant; the gateway's EWMA/CUSUM watch on
their difference raises a retained ``drift`` alarm after it — never before — with a drift
rate of the right size. Time runs fast inside the drifting simulator (its clock), so a few
seconds of test are a realistic drift."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from daq.alarms import AlarmKind
from daq.config import load_config
from gateway.acquisition.service import GatewayService
from simulators.instruments import InstrumentModel, ScpiDmmSimulator
from tests.integration.pathrun import alarm_states, wait_for

pytestmark = pytest.mark.services

NOISE_V = 2e-5
DRIFT_V_PER_DAY = 2e-3  # in the simulator's own (fast) time
SPEED = 600.0  # simulator days pass 600 times faster than the test's
TRUE_RATE_V_PER_S = DRIFT_V_PER_DAY * SPEED / 86_400  # as the gateway sees it: ≈ 0.5 σ/s


async def test_a_drift_starting_at_a_known_instant_raises_a_drift_alarm(
        tmp_path: Path, mqtt_broker: Any) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    started: list[float] = []  # monotonic instant the drift starts

    def fast_clock() -> float:
        return 1000.0 if not started else 1000.0 + (time.monotonic() - started[0]) * SPEED

    ref = ScpiDmmSimulator(InstrumentModel(5.0, "V", noise=NOISE_V, decimals=6, seed=1))
    dut = ScpiDmmSimulator(InstrumentModel(5.0, "V", noise=NOISE_V, decimals=6, seed=2,
                                           drift_per_day=DRIFT_V_PER_DAY, clock=fast_clock))
    async with ref, dut:
        _, ref_port = await ref.start_tcp()
        _, dut_port = await dut.start_tcp()
        site = tmp_path / "site.yaml"
        site.write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: lab
    outbox: outbox.sqlite
    drift_checks:
      - {{channel: dut/dcv, reference: ref/dcv, warmup: 100, max_skew_ms: 100}}
    buses:
      - {{id: ref-lan, protocol: instrument, host: 127.0.0.1, port: {ref_port},
         devices: [{{id: ref, profile: scpi-dmm-dcv, interval_ms: 20}}]}}
      - {{id: dut-lan, protocol: instrument, host: 127.0.0.1, port: {dut_port},
         devices: [{{id: dut, profile: scpi-dmm-dcv, interval_ms: 20}}]}}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
""")
        gw = GatewayService(load_config(site))
        with alarm_states(mqtt_broker.host, mqtt_broker.port,
                          f"daq/{ent}/lab/+/alarms") as states:
            task = asyncio.create_task(gw.run())
            try:
                pair = gw.drift._pairs[("dut", "dcv")]
                # warm-up (100) and 150 in-control samples
                await wait_for(lambda: pair.paired >= 250, 30, "too few pairs")
                assert pair.detection is None  # no false alarm before the drift
                start_ns = time.time_ns()
                started.append(time.monotonic())
                await wait_for(lambda: pair.detection is not None, 20, "drift not detected")
                await wait_for(lambda: any(s.device == "dut" and s.alarms
                                           and s.alarms[0].details["rate_refined"]
                                           for s in states), 20,
                               "no retained, refined drift alarm")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    det = pair.detection
    delay_s = (det.detected_at_ns - start_ns) / 1e9
    # ≈ 0.5 σ of the difference per second: EWMA (λ 0.05, L 6) crosses after ≈ 2–3 s
    assert 0 < delay_s < 8, delay_s
    (alarm,) = next(s for s in reversed(states) if s.device == "dut").alarms
    assert (alarm.kind, alarm.channel, alarm.since_ns) == (
        AlarmKind.DRIFT, "dcv", det.detected_at_ns)
    rate = alarm.details["rate_per_day"] / 86_400
    u_rate = alarm.details["u_rate_per_day"] / 86_400
    # the refined rate agrees with the truth within its stated uncertainty (3 u), and that
    # uncertainty is small enough to mean something
    assert abs(rate - TRUE_RATE_V_PER_S) <= 3 * u_rate, (rate, u_rate)
    assert u_rate < 0.5 * TRUE_RATE_V_PER_S, (rate, u_rate)
    assert all(not s.alarms for s in states if s.device == "ref")
