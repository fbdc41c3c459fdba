"""Calibration sessions end to end (issue 5): ``daq calibrate run`` as a subprocess against a
simulated multifunction calibrator and a DMM with a known injected error, on real TCP
sockets; the certificate in the registry, the report, ``daq cert verify``, and a session
killed with SIGKILL between setpoints and resumed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import html.parser
import os
import signal
import sqlite3
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from calibration.chain import Records, resolve
from calibration.decision import Zone
from calibration.models import model_from_dict
from calibration.records import (
    Accuracy,
    Certificate,
    Instrument,
    Point,
    Range,
    RecordSet,
)
from calibration.registry import Registry
from daq.config import load_config
from daq.model import Reading
from daq.payload import decode_unverified
from gateway.acquisition.service import GatewayService
from gateway.bench.journal import SessionJournal
from gateway.outbox import Outbox
from simulators.broker import free_port
from simulators.calibrator import CalibratorSimulator, Source, SourcedDmmSimulator
from simulators.instruments import InstrumentModel

REPO = Path(__file__).resolve().parents[2]

# the calibrator's own error (its certificate describes it exactly)
SRC_GAIN, SRC_OFFSET = 1.0e-6, 2.0e-6
# the DMM's injected error: reading = truth·(1 + G) + O + noise
DMM_GAIN, DMM_OFFSET, DMM_NOISE = 20.0e-6, 5.0e-6, 1.0e-6
# MPE = 25 µV + 10 ppm of |nominal|: inside at 0, ±1 V; across at 2 V (|e| = MPE); outside
# at 5 V and ±10 V
NOMINALS = (0.0, 1.0, 2.0, 5.0, 10.0, -1.0, -10.0)
EXPECTED = {0.0: "pass", 1.0: "pass", -1.0: "pass", 2.0: "across", 5.0: "fail",
            10.0: "fail", -10.0: "fail"}


def true_output(setting: float) -> float:
    return setting * (1 + SRC_GAIN) + SRC_OFFSET


def injected_error(setting: float) -> float:
    t = true_output(setting)
    return t * DMM_GAIN + DMM_OFFSET


def procedure(dut_port: int, ref_port: int, settle_s: float = 0.05) -> str:
    setpoints = "\n".join(f"  - {{nominal: {v}}}" for v in NOMINALS)
    return f"""
id: dcv-test
title: DC voltage, 10 V range (test)
quantity: voltage
unit: V
method: Direct comparison against a commanded multifunction calibrator.
dut: {{instrument: dmm-t, driver: scpi-dmm, connection: {{host: 127.0.0.1, port: {dut_port}}},
      function: "VOLT:DC", range: 10.0}}
reference: {{instrument: cal-t, driver: calibrator,
            connection: {{host: 127.0.0.1, port: {ref_port}}}}}
defaults: {{settle_s: {settle_s}, readings: 8, command: ["SOUR:VOLT {{nominal:.7f}}", "OUTP ON"],
           stability: 5.0e-6}}
setpoints:
{setpoints}
acceptance: {{rule: simple, mpe: {{absolute: 25.0e-6, pct_reading: 0.001}}}}
contributions:
  - {{name: reference certificate, source: reference_certificate, kind: reference}}
  - {{name: reference drift, kind: drift, value: 0.3e-6, distribution: rectangular,
     sensitivity: -1.0}}
  - {{name: DUT resolution, source: dut_resolution, kind: resolution}}
fit: {{kind: linear}}
laboratory: {{name: Test lab, accreditation: none}}
environment: {{temperature_C: 23.0}}
"""


def records(today: dt.date) -> RecordSet:
    def inst(id_: str, role: str, res: float, **extra: float) -> Instrument:
        return Instrument.model_validate({
            "id": id_, "maker": "DAQSIM", "model": id_, "serial": f"SN-{id_}",
            "quantity": "voltage", "unit": "V", "range": Range(min=-11.0, max=11.0),
            "resolution": res, "accuracy": Accuracy(a_pct_reading=0.003, b_pct_range=0.0005),
            "owner": "lab", "location": "bench", "role": role,
            "mandatory_verification": False, **extra})

    ns = Certificate(
        id="NS-1", instrument="ns-t", laboratory="NMI", accreditation="CIPM MRA",
        calibration_date=today - dt.timedelta(days=400), valid_until=today + dt.timedelta(400),
        points=[Point(nominal=v, reference=v, indicated=v, error=0.0, U=1e-8, k=2.0)
                for v in (-12.0, 12.0)],
        model={"kind": "offset", "c0": 0.0}, conformity="n/a")
    cal_points = [Point(nominal=s, reference=true_output(s), indicated=s,
                        error=s - true_output(s), U=2.0e-6, k=2.0)
                  for s in (-11.0, -5.0, 0.0, 5.0, 11.0)]
    cal = Certificate(
        id="CAL-REF-1", instrument="cal-t", laboratory="NMI", accreditation="CNAS L0001",
        calibration_date=today - dt.timedelta(days=30), interval_days=365,
        reference_certificates=["NS-1"], points=cal_points,
        # the correction of the setting is the source's own error: δ(s) = O + G·s
        model={"kind": "gain_offset", "c0": SRC_OFFSET, "c1": SRC_GAIN, "x_min": -11.0,
               "x_max": 11.0},
        conformity="n/a")
    return RecordSet(instruments=[inst("ns-t", "national_standard", 1e-9),
                                  inst("cal-t", "reference", 1e-7),
                                  inst("dmm-t", "working", 1e-7)],
                     certificates=[ns, cal])


@dataclass
class Bench:
    dut_port: int
    ref_port: int
    registry: Path
    calibrator: CalibratorSimulator


@contextlib.asynccontextmanager
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    source = Source(gain=SRC_GAIN, offset=SRC_OFFSET)
    dmm = SourcedDmmSimulator(source, InstrumentModel(
        0.0, "V", gain=DMM_GAIN, offset=DMM_OFFSET, noise=DMM_NOISE, decimals=7, seed=7))
    cal = CalibratorSimulator(source)
    reg_path = tmp_path / "registry.sqlite"
    with Registry(reg_path) as reg:
        reg.import_records(records(dt.datetime.now(dt.UTC).date()), "test", "set-up")
    async with dmm, cal:
        _, dut_port = await dmm.start_tcp()
        _, ref_port = await cal.start_tcp()
        yield Bench(dut_port, ref_port, reg_path, cal)


async def daq(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "daq"), *args,
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "DAQ_USER": "technician-t"})


async def run_daq(*args: str, cwd: Path, timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await daq(*args, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


GATEWAY_SETTING = 7.3  # between the calibration points


async def gateway_readings(b: Bench, tmp_path: Path) -> list[Reading]:
    """Run a gateway on the DUT with the registry's certificate applied; its readings as they
    went into the outbox (no broker needed for that: nothing is lost while it is away)."""
    site = tmp_path / "site.yaml"
    site.write_text(f"""
enterprise: {{id: lab}}
calibration: {{registry: {b.registry}}}
gateways:
  - id: bench
    outbox: gw-outbox.sqlite
    buses:
      - {{id: dut-lan, protocol: instrument, host: 127.0.0.1, port: {b.dut_port},
         devices: [{{id: dut, profile: scpi-dmm-dcv, interval_ms: 50,
                     instruments: {{dcv: dmm-t}}}}]}}
mqtt: {{host: 127.0.0.1, port: {free_port()}}}
""")
    gw = GatewayService(load_config(site))
    task = asyncio.create_task(gw.run())
    try:
        deadline = time.monotonic() + 20
        while gw.coordinators[0].state.polls < 25:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    box = Outbox(tmp_path / "gw-outbox.sqlite")
    try:
        return [r for _, topic, payload, _ in box.pending(0, 10_000)
                for r in decode_unverified(payload, topic).readings]
    finally:
        box.close()


class Sections(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.images: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "img" and a.get("id"):
            self.images[str(a["id"])] = str(a.get("src"))


def check_report(report: Path) -> None:
    parser = Sections()
    parser.feed(report.read_text(encoding="utf-8"))
    assert {"identification", "reference", "method", "conditions", "results", "budget",
            "decision", "model", "plot", "certificate"} <= parser.ids
    src = parser.images["error-plot"]
    assert src.startswith("data:image/png;base64,")
    png = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # IHDR
    assert width > 300
    assert height > 200
    text = report.read_text(encoding="utf-8")
    for needle in ("simple acceptance", "Traceability chain", "CAL-REF-1", "NS-1",
                   "reference certificate", "DUT resolution", "rectangular", "±MPE"[1:]):
        assert needle in text


async def test_full_session_against_simulators(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        proc_file = tmp_path / "dcv.yaml"
        proc_file.write_text(procedure(b.dut_port, b.ref_port))
        journal = tmp_path / "s.sqlite"
        report = tmp_path / "report.html"
        code, out, err = await run_daq(
            "calibrate", "run", str(proc_file), "--yes", "--plain", "--registry",
            str(b.registry), "--journal", str(journal), "--report", str(report),
            "--certificate-id", "CAL-DMM-T-1", "--env", "temperature_C=23.2", cwd=tmp_path)
        assert code == 0, err + out
        assert "SOUR:VOLT -10.0000000" in b.calibrator.commands
        assert b.calibrator.source.on is False  # switched off at the end
        # the new certificate in use: a gateway polls the DUT at a value between the
        # calibration points and corrects its readings with it
        b.calibrator.source.setting, b.calibrator.source.on = GATEWAY_SETTING, True
        in_gateway = await gateway_readings(b, tmp_path)
    with Registry(b.registry, create=False) as reg:
        assert reg.verify() == []
        cert = reg.get("certificate", "CAL-DMM-T-1")
        assert isinstance(cert, Certificate)
        entry = reg.audit()[-1]
        records_ = Records.of(reg.list("instrument"), reg.list("certificate"))  # type: ignore[arg-type]
    assert entry.record_id == "CAL-DMM-T-1"
    assert entry.who == "technician-t"
    assert cert.reference_certificates == ["CAL-REF-1"]
    assert cert.environment["temperature_C"] == 23.2
    chain = resolve(records_, "dmm-t", dt.datetime.now(dt.UTC).date())
    assert chain.ok, chain.as_dict()

    # the certificate's errors are the injected ones, within their U
    by_nominal = {p.nominal: p for p in cert.points}
    assert sorted(by_nominal) == sorted(NOMINALS)
    for nominal, p in by_nominal.items():
        assert abs(p.error - injected_error(nominal)) <= p.U, nominal
        assert abs(p.reference - true_output(nominal)) < 1e-9
        assert p.U < 5e-6  # a sane budget: ref 1 µV, drift, noise/√8

    # verdicts at points inside, across and outside the MPE
    with SessionJournal.open(journal) as j:
        results = j.results()
        raw = {i: j.point_readings(i)[0] for i in range(len(NOMINALS))}
    for i, nominal in enumerate(NOMINALS):
        zone = Zone(results[i]["zone"])
        if EXPECTED[nominal] == "pass":
            assert zone is Zone.PASS, nominal
            assert results[i]["accepted"] is True
        elif EXPECTED[nominal] == "fail":
            assert zone is Zone.FAIL, nominal
            assert results[i]["accepted"] is False
        else:
            assert zone in (Zone.CONDITIONAL_PASS, Zone.CONDITIONAL_FAIL), nominal
    assert cert.conformity.startswith("DOES NOT CONFORM")

    # the new correction brings the DUT's raw readings onto the truth
    model = model_from_dict(cert.model)
    for i, nominal in enumerate(NOMINALS):
        corrected = np.asarray(model.apply(raw[i]))
        assert np.all(np.isfinite(corrected))
        truth = true_output(nominal)
        assert abs(float(corrected.mean()) - truth) <= by_nominal[nominal].U
        assert np.all(np.abs(corrected - truth) <= 6 * DMM_NOISE + by_nominal[nominal].U)
        uncorrected = float(np.mean(raw[i]))
        if abs(nominal) >= 5:
            assert abs(uncorrected - truth) > 10 * by_nominal[nominal].U

    # the DUT's scatter, pooled over the points, is on the certificate: the gateway's U of a
    # single reading includes it (the instrument record states none)
    assert cert.repeatability == pytest.approx(DMM_NOISE, rel=0.35)
    assert cert.repeatability_dof == len(NOMINALS) * 7  # 8 readings per point
    truth = true_output(GATEWAY_SETTING)
    assert len(in_gateway) >= 20
    assert all(r.cert == "CAL-DMM-T-1" and r.quality == "good" for r in in_gateway)
    errors = [abs(r.value - truth) for r in in_gateway]  # type: ignore[operator]
    big_u = [r.U for r in in_gateway]
    # single readings: their U (≈95 %) holds for most; their mean sits on the truth
    inside = sum(e <= u for e, u in zip(errors, big_u, strict=True))  # type: ignore[operator]
    assert inside >= 0.8 * len(in_gateway), (inside, len(in_gateway))
    mean_error = float(np.mean([r.value for r in in_gateway])) - truth  # type: ignore[misc]
    assert abs(mean_error) <= float(np.mean(big_u)) / 2  # type: ignore[arg-type]
    assert all(abs(r.raw - truth) > r.U for r in in_gateway)  # type: ignore[operator]

    check_report(report)
    code, out, err = await run_daq("cert", "verify", str(report), "--registry",
                                   str(b.registry), cwd=tmp_path)
    assert code == 0, err
    assert "matches the registry" in out
    # a report whose certificate was edited does not verify, and says why
    tampered = tmp_path / "tampered.html"
    tampered.write_text(report.read_text(encoding="utf-8").replace(
        "&quot;temperature_C&quot;:23.2", "&quot;temperature_C&quot;:20.0"), encoding="utf-8")
    code, _, err = await run_daq("cert", "verify", str(tampered), "--registry",
                                 str(b.registry), cwd=tmp_path)
    assert code == 1
    assert "the report was altered" in err


async def test_resume_after_sigkill_between_setpoints(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        proc_file = tmp_path / "dcv.yaml"
        proc_file.write_text(procedure(b.dut_port, b.ref_port, settle_s=0.4))
        journal = tmp_path / "s.sqlite"
        report = tmp_path / "r.html"
        run = await daq("calibrate", "run", str(proc_file), "--yes", "--plain", "--registry",
                        str(b.registry), "--journal", str(journal), "--report", str(report),
                        cwd=tmp_path)
        deadline = time.monotonic() + 30
        finished = 0
        while finished < 2:
            assert time.monotonic() < deadline, "the session did not finish 2 points"
            await asyncio.sleep(0.02)
            if journal.exists():
                with contextlib.suppress(sqlite3.OperationalError):
                    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
                    try:
                        finished = con.execute("SELECT COUNT(*) FROM points").fetchone()[0]
                    finally:
                        con.close()
        run.send_signal(signal.SIGKILL)
        await run.wait()
        with SessionJournal.open(journal) as j:
            before = j.readings()
            done_before = j.finished()
        assert 2 <= len(done_before) < len(NOMINALS)
        assert not report.exists()

        code, out, err = await run_daq("calibrate", "resume", str(journal), "--plain",
                                       cwd=tmp_path)
        assert code == 0, err + out
        assert f"{len(done_before)} already finished" in out
    with SessionJournal.open(journal) as j:
        after = j.readings()
        assert sorted(j.finished()) == list(range(len(NOMINALS)))
        for i, attempt in done_before.items():
            assert j.finished()[i] == attempt  # finished points were not measured again
        assert j.get("status") == "complete"
    assert after[:len(before)] == before  # every pre-kill raw reading is unchanged
    assert len(after) > len(before)
    with Registry(b.registry, create=False) as reg:
        cert = reg.get("certificate", f"CAL-{SessionJournal.open(journal)['session_id']}")
    assert isinstance(cert, Certificate)
    assert len(cert.points) == len(NOMINALS)
    for p in cert.points:
        assert abs(p.error - injected_error(p.nominal)) <= p.U


async def test_unattended_run_refuses_prompted_setpoints(tmp_path: Path) -> None:
    code, _, err = await run_daq("calibrate", "run", "prt-bath",  # the built-in procedure
                                 "--yes", "--plain", cwd=tmp_path)
    assert code == 2
    assert "--yes runs unattended, but some setpoints prompt the technician" in err
    assert not (tmp_path / "var").exists()


PRT_PROCEDURE = """
id: prt-test
title: Pt100 in a bath (test)
quantity: temperature
unit: °C
method: Comparison in a stirred bath.
dut: {{instrument: prt-dut, driver: prt-readout, connection: {{serial: "{dut}"}},
      cvd: {{r0: 100.0, a: 3.9083e-3, b: -5.775e-7, c: -4.183e-12}}}}
reference: {{instrument: prt-ref, driver: prt-readout, connection: {{serial: "{ref}"}},
            cvd: {{r0: 100.0, a: 3.9083e-3, b: -5.775e-7, c: -4.183e-12}}}}
defaults: {{settle_s: 0.05, readings: 5,
           prompt: "Set the bath to {{nominal:.3f}} {{unit}}; press Enter"}}
setpoints: [{{nominal: 0.0}}, {{nominal: 50.0}}, {{nominal: 100.0}}, {{nominal: 150.0}}]
acceptance: {{rule: guarded, mpe: {{absolute: 0.15, pct_reading: 0.2}}}}
contributions:
  - {{name: reference certificate, source: reference_certificate}}
  - {{name: DUT resolution, source: dut_resolution}}
fit: {{kind: cvd}}
laboratory: {{name: Test lab, accreditation: none}}
"""


async def test_prompted_prt_session_with_cvd_fit(tmp_path: Path) -> None:
    from calibration.records import Accuracy as Acc
    from simulators.instruments import PrtReadoutSimulator

    today = dt.datetime.now(dt.UTC).date()

    def inst(id_: str, role: str) -> Instrument:
        return Instrument(id=id_, maker="DAQSIM", model="PRT", serial=id_, quantity="temperature",
                          unit="°C", range=Range(min=-50, max=250), resolution=0.001,
                          accuracy=Acc(a_pct_reading=0.2, b_pct_range=0.0), owner="lab",
                          location="bath", role=role, mandatory_verification=False)

    ns = Certificate(id="NS-T", instrument="ns-t", laboratory="NMI", accreditation="x",
                     calibration_date=today - dt.timedelta(days=100),
                     valid_until=today + dt.timedelta(days=400),
                     points=[Point(nominal=v, reference=v, indicated=v, error=0.0, U=0.001, k=2)
                             for v in (-60.0, 300.0)],
                     model={"kind": "offset", "c0": 0.0}, conformity="n/a")
    ref_cert = Certificate(id="REF-PRT", instrument="prt-ref", laboratory="NMI",
                           accreditation="x", calibration_date=today - dt.timedelta(days=10),
                           interval_days=365, reference_certificates=["NS-T"],
                           points=[Point(nominal=v, reference=v, indicated=v, error=0.0,
                                         U=0.01, k=2) for v in (-20.0, 200.0)],
                           model={"kind": "offset", "c0": 0.0, "x_min": -20.0, "x_max": 200.0},
                           conformity="n/a")
    reg_path = tmp_path / "registry.sqlite"
    with Registry(reg_path) as reg:
        reg.import_records(RecordSet(instruments=[inst("ns-t", "national_standard"),
                                                  inst("prt-ref", "reference"),
                                                  inst("prt-dut", "working")],
                                     certificates=[ns, ref_cert]), "test", "set-up")
    # the DUT's sensor reads 0.04 Ω high: about +0.1 °C
    dut = PrtReadoutSimulator(0.0, model=InstrumentModel(100.0, "Ω", offset=0.04, decimals=4))
    ref = PrtReadoutSimulator(0.0)
    async with dut, ref:
        proc_file = tmp_path / "prt.yaml"
        proc_file.write_text(PRT_PROCEDURE.format(dut=dut.start_pty(), ref=ref.start_pty()))
        run = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "daq"), "calibrate", "run", str(proc_file),
            "--plain", "--registry", str(reg_path), "--journal", str(tmp_path / "p.sqlite"),
            "--report", str(tmp_path / "p.html"), cwd=tmp_path,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert run.stdout is not None
        assert run.stdin is not None
        seen = ""
        answered = 0
        deadline = time.monotonic() + 40
        while answered < 4:
            assert time.monotonic() < deadline, seen
            chunk = await asyncio.wait_for(run.stdout.read(4096), 20)
            assert chunk, seen
            seen += chunk.decode()
            for t in (0.0, 50.0, 100.0, 150.0)[answered:]:
                if f"Set the bath to {t:.3f} °C; press Enter " in seen.split("\n")[-1]:
                    dut.set_temperature(t)
                    ref.set_temperature(t)
                    run.stdin.write(b"\n")
                    await run.stdin.drain()
                    answered += 1
                break
        out, err = await asyncio.wait_for(run.communicate(), 30)
        assert run.returncode == 0, err.decode() + seen + out.decode()
    with Registry(reg_path, create=False) as reg:
        cert = reg.get("certificate", next(
            e.record_id for e in reg.audit() if e.record_id.startswith("CAL-prt-test")))
    assert isinstance(cert, Certificate)
    assert cert.environment["decision_rule"] == "guarded"
    for p in cert.points:
        # +0.04 Ω at dR/dt ≈ 0.39 Ω/°C … 0.37 Ω/°C
        assert 0.09 < p.error < 0.12
    # the certificate's correction is the DUT's own CVD: it brings the readout's
    # temperatures (computed with IEC 60751's coefficients) onto the reference
    assert cert.model["kind"] == "cvd"
    model = model_from_dict(cert.model)
    for p in cert.points:
        assert abs(float(model.apply(p.indicated)) - p.reference) <= p.U
    report = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert "Callendar–Van Dusen fit of the DUT: R0 = 100.04" in report
    assert "guarded acceptance" in report
