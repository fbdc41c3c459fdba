"""Running a calibration session at the bench (async: it does I/O, so it is not in
``calibration/``).

For each setpoint not yet finished in the session's journal: set the reference (send the
procedure's commands to a source, or prompt the technician and wait for Enter), wait the
settling time, then take n readings of DUT and reference *simultaneously* — two concurrent
tasks, or interleaved (DUT, reference, DUT, …) when both are on one bus — journaling every
raw reading the moment it arrives; then evaluate the point (``calibration.session``) and
journal its result. A killed session resumes at its first unfinished setpoint, which is
tried again from settling; the interrupted attempt's readings stay in the journal.

Every failure is a typed exception: :class:`BenchError` for the session, a
``drivers.errors.DriverError`` from an instrument.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from calibration.chain import Link, Records, resolve
from calibration.procedure import InstrumentSpec, Procedure, procedure_from_text
from calibration.records import Certificate, Instrument
from calibration.session import PointResult, evaluate_point, mpe_function, to_unit
from drivers.text.driver import (
    CalibratorDriver,
    Opener,
    PrtReadoutDriver,
    ScpiDmmDriver,
    tcp_opener,
    tty_opener,
)
from gateway.bench.journal import Role, SessionJournal
from gateway.errors import GatewayError

__all__ = [
    "BenchContext",
    "BenchError",
    "BenchInstrument",
    "SessionView",
    "context_from_records",
    "evaluate_journal",
    "open_instrument",
    "run_session",
]

Prompt = Callable[[str], Awaitable[None]]


class BenchError(GatewayError):
    """The session cannot run or go on (an unattended run needs a prompt, no valid reference
    certificate, a broken traceability chain …)."""


class SessionView(Protocol):
    """What the runner tells the technician (``gateway.bench.view``: rich or plain)."""

    def begin(self, proc: Procedure, session_id: str, finished: list[PointResult]) -> None: ...
    def setpoint(self, i: int, action: str) -> None: ...
    def reading(self, i: int, dut: list[float], ref: list[float]) -> None: ...
    def point(self, result: PointResult) -> None: ...
    def message(self, text: str) -> None: ...
    def end(self) -> None: ...


# -- instruments ---------------------------------------------------------------------------


def _opener(spec: InstrumentSpec) -> Opener:
    c = spec.connection
    if c.serial is not None:
        return tty_opener(c.serial, c.baudrate)
    assert c.host is not None
    assert c.port is not None
    return tcp_opener(c.host, c.port)


class BenchInstrument:
    """The DUT or the reference of a session: one driver, one ``read()`` of a raw value."""

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        opener = _opener(spec)
        self.dmm: ScpiDmmDriver | None = None
        self.prt: PrtReadoutDriver | None = None
        self.source: CalibratorDriver | None = None
        if spec.driver == "scpi-dmm":
            self.dmm = ScpiDmmDriver(opener, timeout_s=spec.timeout_s)
        elif spec.driver == "prt-readout":
            self.prt = PrtReadoutDriver(opener, timeout_s=spec.timeout_s)
        else:
            self.source = CalibratorDriver(opener, timeout_s=spec.timeout_s)

    async def prepare(self) -> str:
        """Identify the instrument (and configure a DMM); returns its identity line."""
        driver = self.dmm or self.prt or self.source
        assert driver is not None
        ident = await driver.identify()
        if self.dmm is not None:
            await self.dmm.configure(self.spec.function, self.spec.range)
        return f"{ident.maker} {ident.model} s/n {ident.serial} fw {ident.firmware}"

    async def read(self) -> float:
        if self.dmm is not None:
            return await self.dmm.read()
        if self.prt is not None:
            return await self.prt.read_resistance()
        assert self.source is not None
        return await self.source.setting()

    async def close(self) -> None:
        for d in (self.dmm, self.prt, self.source):
            if d is not None:
                await d.close()


def open_instrument(spec: InstrumentSpec) -> BenchInstrument:
    return BenchInstrument(spec)


# -- what the registry says ----------------------------------------------------------------


@dataclass(frozen=True)
class BenchContext:
    """The records a session needs: the DUT (may be unknown to the registry until its first
    certificate, but then ``dut_resolution`` and ``from_dut`` MPEs need values), the
    reference, its certificate valid today and its traceability chain (must be intact)."""

    dut_id: str
    dut: Instrument | None
    reference: Instrument
    reference_certificate: Certificate
    chain: Link
    records: Records


def context_from_records(records: Records, dut_id: str, ref_id: str, today: dt.date
                         ) -> BenchContext:
    ref = records.instruments.get(ref_id)
    if ref is None:
        raise BenchError(f"reference {ref_id!r} is not in the registry")
    chain = resolve(records, ref_id, today)
    if not chain.ok or chain.certificate is None:
        problems = "; ".join(_problems(chain)) or "no certificate"
        raise BenchError(f"reference {ref_id!r}: traceability chain broken: {problems}")
    cert = records.certificates[chain.certificate]
    return BenchContext(dut_id, records.instruments.get(dut_id), ref, cert, chain, records)


def _problems(link: Link) -> list[str]:
    out = [f"{link.certificate or link.instrument}: {p}" for p in link.problems]
    for r in link.references:
        out += _problems(r)
    return out


# -- running ---------------------------------------------------------------------------------


def evaluate_journal(journal: SessionJournal, proc: Procedure, ctx: BenchContext,
                     setpoint: int) -> PointResult:
    """A finished setpoint's result, recomputed from its raw readings in the journal."""
    dut_raw, ref_raw = journal.point_readings(setpoint)
    return evaluate_point(proc, setpoint, dut_raw, ref_raw,
                          reference_certificate=ctx.reference_certificate, dut=ctx.dut,
                          mpe=mpe_function(proc, ctx.dut)(setpoint))


async def _take(inst: BenchInstrument, journal: SessionJournal, attempt: int, i: int,
                role: Role, idx: int, into: list[float]) -> None:
    value = await inst.read()
    journal.add_reading(attempt, i, role, idx, value, time.time_ns())
    into.append(value)


async def run_session(
    journal: SessionJournal,
    ctx: BenchContext,
    view: SessionView,
    *,
    unattended: bool,
    prompt: Prompt,
    dut: BenchInstrument | None = None,
    ref: BenchInstrument | None = None,
) -> list[PointResult]:
    """Run (or resume) the session in ``journal`` to its end; returns every point's result.
    The procedure is the one stored in the journal, so a resumed session runs what it began
    with even if the file changed since."""
    proc = procedure_from_text(journal["procedure"], journal["procedure_file"])
    if unattended and not proc.commandable():
        manual = [f"{s.nominal:g}" for i, s in enumerate(proc.setpoints)
                  if proc.commands(i) is None]
        raise BenchError(f"--yes runs unattended, but setpoints {', '.join(manual)} need the "
                         "technician (prompt): run without --yes")
    done = journal.finished()
    results = {i: evaluate_journal(journal, proc, ctx, i) for i in sorted(done)}
    view.begin(proc, journal["session_id"], list(results.values()))
    dut = dut or open_instrument(proc.dut)
    ref = ref or open_instrument(proc.reference)
    shared_bus = proc.dut.connection.bus == proc.reference.connection.bus
    try:
        if len(done) < len(proc.setpoints):
            for role, inst in (("DUT", dut), ("reference", ref)):
                ident = await inst.prepare()
                journal.event(f"{role}: {ident}")
                view.message(f"{role}: {ident}")
        for i in range(len(proc.setpoints)):
            if i in done:
                continue
            results[i] = await _run_point(journal, proc, ctx, view, i, dut, ref, shared_bus,
                                          prompt)
        if ref.source is not None and len(done) < len(proc.setpoints):
            await ref.source.output(False)
            journal.event("reference output off")
    finally:
        await dut.close()
        await ref.close()
    journal.set("status", "measured")
    view.end()
    return [results[i] for i in range(len(proc.setpoints))]


async def _run_point(journal: SessionJournal, proc: Procedure, ctx: BenchContext,
                     view: SessionView, i: int, dut: BenchInstrument, ref: BenchInstrument,
                     shared_bus: bool, prompt: Prompt) -> PointResult:
    sp = proc.setpoints[i]
    commands = proc.commands(i)
    if commands is not None:
        assert ref.source is not None
        view.setpoint(i, f"setting {sp.nominal:g} {proc.unit}")
        for command in commands:
            await ref.source.command(command)
            journal.event(f"setpoint {i}: sent {command}")
        await ref.source.wait_complete()
    else:
        text = proc.prompt(i)
        view.setpoint(i, text)
        journal.event(f"setpoint {i}: prompt: {text}")
        await prompt(text)
        journal.event(f"setpoint {i}: confirmed by the technician")
    settle = proc.settle_s(i)
    if settle > 0:
        view.setpoint(i, f"settling {settle:g} s")
        await asyncio.sleep(settle)
    attempt = journal.start_attempt(i)
    view.setpoint(i, "reading")
    dut_raw: list[float] = []
    ref_raw: list[float] = []
    for k in range(proc.readings(i)):
        if shared_bus:  # one link: interleave
            await _take(dut, journal, attempt, i, "dut", k, dut_raw)
            await _take(ref, journal, attempt, i, "ref", k, ref_raw)
        else:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_take(dut, journal, attempt, i, "dut", k, dut_raw),
                               name=f"read-dut-{i}-{k}")
                tg.create_task(_take(ref, journal, attempt, i, "ref", k, ref_raw),
                               name=f"read-ref-{i}-{k}")
        view.reading(i, list(to_unit(proc.dut, dut_raw)), list(to_unit(proc.reference, ref_raw)))
    result = evaluate_point(proc, i, dut_raw, ref_raw,
                            reference_certificate=ctx.reference_certificate, dut=ctx.dut,
                            mpe=mpe_function(proc, ctx.dut)(i))
    journal.finish_point(i, attempt, result.as_dict())
    if result.stable is False:
        journal.event(f"setpoint {i}: not stable (halves differ by more than "
                      f"{proc.defaults.stability:g} {proc.unit})")
        view.message(f"setpoint {sp.nominal:g}: readings not stable")
    view.point(result)
    return result
