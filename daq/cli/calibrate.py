"""``daq calibrate run|resume|simulate``: calibration sessions at the bench (issue 5). Imports
of the other packages stay inside the commands. ``daq cert verify`` (checking a session's
report against the registry) is in :mod:`daq.cli.cert`. Documentation:
``docs/calibration-sessions.md``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from daq.cli.common import (
    EXIT_CONFIG,
    open_registry,
    or_exit,
    registry_option,
    run,
    trusted_registry,
    who,
)
from daq.config.yamlsrc import SourceErrors

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def sessions_dir() -> Path:
    """Session journals and reports: ``sessions/`` in the data directory (``var/sessions``
    under the working directory where that exists and no data directory is set)."""
    from daq.paths import state_path

    return state_path("sessions")


@click.group()
def calibrate() -> None:
    """Calibrate a device under test against a reference: run, resume, simulate a bench."""


def _fail(message: str, code: int = EXIT_CONFIG) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _env_pairs(pairs: tuple[str, ...]) -> dict[str, str | int | float]:
    out: dict[str, str | int | float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--env {pair!r}: expected NAME=VALUE")
        try:
            out[key] = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            out[key] = value
    return out


@calibrate.command("run")
@click.argument("procedure_file", metavar="PROCEDURE")
@click.option("--procedure-dir", "procedure_dirs", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="A folder of the site's own procedures (<id>.yaml), searched before the "
                   "built-in ones when PROCEDURE is an id; repeatable.")
@click.option("--dut", "dut_id", default=None, help="DUT instrument id (default: the procedure's).")
@click.option("--ref", "ref_id", default=None,
              help="Reference instrument id (default: the procedure's).")
@click.option("--yes", "unattended", is_flag=True,
              help="Run unattended; refused when a setpoint needs the technician.")
@click.option("--plain", is_flag=True, help="Plain lines instead of the live view (logs, CI).")
@click.option("--journal", "journal_path", default=None, type=click.Path(dir_okay=False),
              help="Session journal (default: sessions/SESSION.sqlite in the data directory).")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False),
              help="HTML report (default: next to the journal, SESSION.html).")
@click.option("--certificate-id", default=None, help="Certificate id (default: CAL-SESSION).")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE",
              help="A measured condition for the certificate, e.g. temperature_C=23.1.")
@registry_option()
def calibrate_run(procedure_file: str, dut_id: str | None, ref_id: str | None,
                  unattended: bool, plain: bool, journal_path: str | None,
                  report_path: str | None, certificate_id: str | None, env: tuple[str, ...],
                  registry_path: str, procedure_dirs: tuple[Path, ...]) -> None:
    """Run the calibration PROCEDURE (a YAML file, or the id of a procedure in a
    --procedure-dir or built in, e.g. dcv-10v) on the DUT against the reference: a journaled
    session that ends with a certificate in the registry and an HTML report."""
    from calibration.procedure import find_procedure, load_procedure
    from gateway.bench.journal import JournalError, SessionJournal
    from gateway.bench.runner import BenchError

    if not Path(procedure_file).is_file():
        found = find_procedure(procedure_file, procedure_dirs)
        if found is None:
            _fail(f"{procedure_file}: no such procedure file, and no procedure of that id "
                  "in the --procedure-dir folders or built in")
        procedure_file = str(found)
    proc = or_exit(load_procedure, procedure_file)
    dut = dut_id or proc.dut.instrument
    ref = ref_id or proc.reference.instrument
    if dut is None or ref is None:
        _fail("name the DUT and the reference: --dut ID --ref ID (or instrument: in the "
              "procedure)")
    assert dut is not None
    assert ref is not None
    if unattended and not proc.commandable():
        _fail(f"{procedure_file}: --yes runs unattended, but some setpoints prompt the "
              "technician; run without --yes")
    registry = str(Path(registry_path).resolve())
    try:
        _context(registry, dut, ref)  # refuse early: unknown DUT, broken chain
    except BenchError as exc:
        _fail(str(exc))
    now = dt.datetime.now(dt.UTC)
    session_id = f"{proc.id}-{dut}-{now:%Y%m%dT%H%M%SZ}"
    journal_file = Path(journal_path) if journal_path else \
        sessions_dir() / f"{session_id}.sqlite"
    report = Path(report_path) if report_path else journal_file.with_suffix(".html")
    meta = {
        "session_id": session_id,
        "procedure": Path(procedure_file).read_text(encoding="utf-8"),
        "procedure_file": str(procedure_file),
        "dut": dut, "ref": ref, "registry": registry,
        "report": str(report.resolve()),
        "certificate_id": certificate_id or f"CAL-{session_id}",
        "environment": json.dumps(_env_pairs(env)),
        "unattended": "1" if unattended else "0",
        "started_at": now.isoformat(timespec="seconds"),
    }
    try:
        journal = SessionJournal.create(journal_file, meta)
    except JournalError as exc:
        _fail(str(exc))
    click.echo(f"session {session_id}: journal {journal.path}", err=True)
    with journal:
        _carry_on(journal, unattended, plain)


@calibrate.command("resume")
@click.argument("session")
@click.option("--yes", "unattended", is_flag=True, help="Run the rest unattended.")
@click.option("--plain", is_flag=True, help="Plain lines instead of the live view.")
def calibrate_resume(session: str, unattended: bool, plain: bool) -> None:
    """Resume SESSION (a journal file, or a session id in the data directory's sessions/) at
    its first unfinished setpoint; every reading already recorded is kept."""
    from gateway.bench.journal import JournalError, SessionJournal

    path = Path(session)
    if not path.is_file():
        path = sessions_dir() / f"{session}.sqlite"
    try:
        journal = SessionJournal.open(path)
    except JournalError as exc:
        _fail(str(exc))
    with journal:
        if journal.get("status") == "complete":
            click.echo(f"session {journal['session_id']} is complete: certificate "
                       f"{journal['certificate_id']}, report {journal['report']}")
            return
        _carry_on(journal, unattended or journal.get("unattended") == "1", plain)


def _context(registry: str, dut: str, ref: str) -> Any:
    from calibration.chain import Records
    from gateway.bench.runner import BenchError, context_from_records

    with trusted_registry(registry, "no session against a reference whose chain cannot be "
                          "trusted") as reg:
        records = Records.of(reg.list("instrument"), reg.list("certificate"))
    if dut not in records.instruments:
        raise BenchError(f"DUT {dut!r} is not in the registry {registry}: import its "
                         "instrument record first (daq cert import)")
    return context_from_records(records, dut, ref, dt.datetime.now(dt.UTC).date())


def _carry_on(journal: Any, unattended: bool, plain: bool) -> None:
    """Measure what is left, then issue the certificate and write the report."""
    from drivers.errors import DriverError
    from gateway.bench.runner import BenchError, run_session
    from gateway.bench.view import PlainView, RichView

    try:
        ctx = _context(journal["registry"], journal["dut"], journal["ref"])
    except BenchError as exc:
        _fail(str(exc))
    view: Any = PlainView(lambda line: click.echo(line)) if plain else RichView()

    async def prompt(text: str) -> None:
        if isinstance(view, RichView):
            view.pause()
        try:
            answer = await asyncio.to_thread(_ask, text)
        finally:
            if isinstance(view, RichView):
                view.unpause()
        if answer is None:
            raise BenchError("no technician at the terminal (end of input) to confirm: "
                             f"{text}")

    try:
        results = asyncio.run(run_session(journal, ctx, view, unattended=unattended,
                                          prompt=prompt))
    except KeyboardInterrupt:
        if isinstance(view, RichView):
            view.end()
        _fail(f"interrupted: every reading so far is in {journal.path}; resume with: "
              f"daq calibrate resume {journal.path}", EXIT_INTERRUPTED)
    except (DriverError, BenchError, SourceErrors, OSError) as exc:
        if isinstance(view, RichView):
            view.end()
        _fail(f"session stopped: {exc}\nevery reading so far is in {journal.path}; "
              f"resume with: daq calibrate resume {journal.path}", EXIT_FAILED)
    _issue(journal, ctx, results)


def _ask(text: str) -> str | None:
    try:
        return input(f"{text} ")
    except EOFError:
        return None


def _issue(journal: Any, ctx: Any, results: list[Any]) -> None:
    from calibration.procedure import procedure_from_text
    from calibration.records import record_json
    from calibration.registry import RegistryError, sha256_text
    from calibration.session import SessionError, build_certificate, evaluate_session
    from gateway.bench.report import ReportInputs, render_report

    proc = procedure_from_text(journal["procedure"], journal["procedure_file"])
    raw_means = [sum(journal.point_readings(i)[0]) / len(journal.point_readings(i)[0])
                 for i in range(len(proc.setpoints))]
    try:
        result = evaluate_session(proc, results, raw_means)
    except SessionError as exc:
        _fail(f"cannot evaluate the session: {exc}", EXIT_FAILED)
    today = dt.datetime.now(dt.UTC)
    certificate = build_certificate(
        proc, result, certificate_id=journal["certificate_id"], dut_id=journal["dut"],
        reference_certificate=ctx.reference_certificate, calibration_date=today.date(),
        environment=json.loads(journal["environment"]))
    with open_registry(journal["registry"]) as reg:
        try:
            reg.put(certificate, who(), f"calibration session {journal['session_id']} "
                                         f"({proc.id})")
        except RegistryError as exc:
            _fail(f"cannot issue the certificate: {exc}", EXIT_FAILED)
    sha = sha256_text(record_json(certificate))
    identities = {}
    for _, text in journal.events():
        role, sep, ident = text.partition(": ")
        if sep and role in ("DUT", "reference"):
            identities[role] = ident
    html = render_report(ReportInputs(
        proc=proc, session_id=journal["session_id"], certificate=certificate, result=result,
        dut=ctx.dut, reference=ctx.reference, reference_certificate=ctx.reference_certificate,
        chain=ctx.chain, identities=identities, started_at=journal["started_at"],
        finished_at=today.isoformat(timespec="seconds")))
    report = Path(journal["report"])
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(html, encoding="utf-8")
    journal.set("certificate_sha256", sha)
    journal.set("status", "complete")
    click.echo(f"certificate {certificate.id} issued into {journal['registry']} "
               f"(sha256 {sha})")
    click.echo(f"report {report}")
    click.echo(certificate.conformity)


@calibrate.command("simulate")
@click.option("--dut-port", default=5025, show_default=True, help="TCP port of the DUT DMM.")
@click.option("--ref-port", default=5026, show_default=True, help="TCP port of the calibrator.")
@click.option("--gain-ppm", default=25.0, show_default=True, help="The DMM's gain error.")
@click.option("--offset-uv", default=-8.0, show_default=True, help="The DMM's offset / µV.")
@click.option("--noise-uv", default=1.0, show_default=True, help="The DMM's noise (1 σ) / µV.")
def calibrate_simulate(dut_port: int, ref_port: int, gain_ppm: float, offset_uv: float,
                       noise_uv: float) -> None:
    """Serve a simulated bench on 127.0.0.1: a multifunction calibrator and a DMM reading its
    output with a known error (for the built-in procedure dcv-10v)."""
    from simulators.calibrator import CalibratorSimulator, Source, SourcedDmmSimulator
    from simulators.instruments import InstrumentModel

    async def serve() -> None:
        source = Source(gain=1e-6, offset=2e-6)
        dmm = SourcedDmmSimulator(source, InstrumentModel(
            0.0, "V", gain=gain_ppm * 1e-6, offset=offset_uv * 1e-6, noise=noise_uv * 1e-6,
            decimals=7))
        cal = CalibratorSimulator(source)
        async with dmm, cal:
            await dmm.start_tcp(port=dut_port)
            await cal.start_tcp(port=ref_port)
            click.echo(f"DMM on 127.0.0.1:{dut_port}, calibrator on 127.0.0.1:{ref_port} "
                       "(Ctrl-C stops)")
            await asyncio.Event().wait()

    try:
        run(serve())
    except OSError as exc:
        _fail(f"cannot serve: {exc}", EXIT_FAILED)


__all__ = ["calibrate"]
