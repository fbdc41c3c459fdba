"""``daq verify status`` and ``daq drift``: the mandatory-verification register and drift
from calibration history (docs/verification.md, docs/drift.md). Imports of the rest of the
repo happen inside the commands."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from daq.cli.common import or_exit

EXIT_FINDINGS = 1   # verify status: some instrument must not be relied on (see docs)
EXIT_USAGE = 2


def _records(registry_path: str | None) -> Any:
    """A RecordSet from a records file (.yaml/.yml/.json) or from a registry (SQLite)."""
    from calibration.records import RecordSet, load_records
    from daq.cli.common import open_registry

    if registry_path and registry_path.lower().endswith((".yaml", ".yml", ".json")):
        return or_exit(load_records, registry_path)
    with open_registry(registry_path) as reg:
        return RecordSet.model_validate({
            "instruments": reg.list("instrument"), "certificates": reg.list("certificate"),
            "verifications": reg.list("verification")})


def _load_data(loader: Any, path: str | None) -> Any:
    return or_exit(loader, path) if path else or_exit(loader)


_registry_option = click.option(
    "--registry", "registry_path", default=None, type=click.Path(dir_okay=False),
    help="Registry file (default: $DAQ_REGISTRY or var/registry.sqlite), or a records file "
         "(.yaml/.json).")


@click.group()
def verify() -> None:
    """Mandatory verification (强制检定): due and overdue instruments."""


@verify.command("status")
@_registry_option
@click.option("--enterprise", default=None, help="Only this enterprise (instrument owner).")
@click.option("--at", "at_date", default=None, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="The date of interest; default today (UTC).")
@click.option("--window-days", default=30, show_default=True, type=click.IntRange(min=0),
              help="Due soon when due within this many days.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv"]))
@click.option("--periods", "periods_path", default=None, type=click.Path(dir_okay=False),
              help="Default periods (default: config/verification-periods.yaml).")
@click.option("--classes", "classes_path", default=None, type=click.Path(dir_okay=False),
              help="GB 17167 classes (default: config/gb17167-classes.yaml).")
@click.option("--edition", default=None, help="GB 17167 edition to check classes against "
              "(default: the one in force at --at).")
def verify_status(registry_path: str | None, enterprise: str | None, at_date: Any,
                  window_days: int, fmt: str, periods_path: str | None,
                  classes_path: str | None, edition: str | None) -> None:
    """One line per instrument, most urgent first, with a per-enterprise summary and
    GB 17167 class findings. Exit 0 when every instrument may be relied on, 1 when any is
    overdue, past its service life, failed or never verified (or a class is insufficient),
    2 on bad input."""
    import csv
    import io

    import orjson

    from calibration.legal import load_classes, load_periods
    from calibration.verification import Register, class_findings, register_status, summaries

    at = at_date.date() if at_date is not None else dt.datetime.now(dt.UTC).date()
    register = Register.from_records(_records(registry_path))
    periods = _load_data(load_periods, periods_path)
    classes = _load_data(load_classes, classes_path)
    if enterprise is not None and not any(i.owner == enterprise
                                          for i in register.instruments.values()):
        click.echo(f"no instrument of enterprise {enterprise!r}", err=True)
        sys.exit(EXIT_USAGE)
    rows = register_status(register, at, window_days, periods, enterprise)
    sums = summaries(register, rows)
    findings = class_findings(register, classes, at, edition, enterprise)
    bad = any(r.taints_readings for r in rows) or \
        any(f.kind == "class_insufficient" for f in findings)
    if fmt == "json":
        click.echo(orjson.dumps({
            "at": at.isoformat(), "window_days": window_days,
            "instruments": [r.as_dict() for r in rows],
            "enterprises": [s.as_dict() for s in sums],
            "findings": [f.as_dict() for f in findings]},
            option=orjson.OPT_INDENT_2).decode())
    elif fmt == "csv":
        buf = io.StringIO()
        fields = list(rows[0].as_dict()) if rows else ["instrument"]
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r.as_dict())
        click.echo(buf.getvalue(), nl=False)
    else:
        _print_table(rows, sums, findings, at, window_days)
    sys.exit(EXIT_FINDINGS if bad else 0)


_STYLE = {"service_life_ended": "bold red", "overdue": "bold red", "failed": "bold red",
          "never_verified": "red", "calibration_expired": "yellow", "due_soon": "yellow",
          "valid": "green", "not_required": "dim"}


def _print_table(rows: list[Any], sums: list[Any], findings: list[Any], at: dt.date,
                 window_days: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=220)
    table = Table(title=f"Verification status at {at} (due soon: within {window_days} days)")
    for name in ("instrument", "enterprise", "state", "mode", "last", "due"):
        table.add_column(name, no_wrap=True)
    table.add_column("days", justify="right")
    table.add_column("reason")
    for r in rows:
        table.add_row(r.instrument, r.enterprise, f"[{_STYLE[r.state]}]{r.state}[/]",
                      r.mode or r.basis, str(r.last_date or "—"), str(r.due or "—"),
                      "" if r.days_left is None else str(r.days_left),
                      r.reason + (f" [dim]({r.source})[/]" if r.source else ""))
    console.print(table)
    summary = Table(title="Per enterprise")
    summary.add_column("enterprise")
    for name in ("valid", "due soon", "overdue", "other", "energy meters", "valid share"):
        summary.add_column(name, justify="right")
    for s in sums:
        c = s.counts
        other = sum(c.values()) - c["valid"] - c["due_soon"] - c["overdue"]
        share = "—" if s.valid_share is None else f"{s.valid_share:.1%}"
        summary.add_row(s.enterprise, str(c["valid"]), str(c["due_soon"]), str(c["overdue"]),
                        str(other), str(s.energy_meters), share)
    console.print(summary)
    for f in findings:
        mark = "[red]class[/]" if f.kind == "class_insufficient" else "[dim]unchecked[/]"
        console.print(f"{mark} {f.instrument}: {f.message}")


@click.command()
@click.argument("instrument")
@_registry_option
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Write a PNG of error against time with U bars, ±MPE and the prediction "
                   "band.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--reliability", default=0.90, show_default=True,
              type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="End-of-period reliability target of the drift-based interval.")
def drift(instrument: str, registry_path: str | None, plot_path: str | None, as_json: bool,
          reliability: float) -> None:
    """INSTRUMENT's calibration history, drift model, predicted out-of-tolerance date and
    recommended interval. Exit 1 when there is not enough history, 2 on bad input."""
    import orjson

    from calibration.drift import DriftError, analyse

    records = _records(registry_path)
    inst = next((i for i in records.instruments if i.id == instrument), None)
    if inst is None:
        click.echo(f"no instrument {instrument!r}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        report = analyse(inst, records.certificates, reliability)
    except DriftError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if plot_path:
        from daq.cli.drift_plot import plot_drift

        plot_drift(report, plot_path)
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    u = report.unit
    click.echo(f"{instrument}: {len(report.points[0].history)} calibrations, last "
               f"{report.last_calibration}, current interval {report.current_interval_days} d")
    for p in report.points:
        click.echo(f"\npoint {p.nominal:g} {u} (MPE ±{p.mpe:.4g} {u})")
        for o in p.history:
            click.echo(f"  {o.date}  {o.certificate:<28} error {o.error:+.4g} {u}  "
                       f"U {o.U:.2g} (k={o.k:g})")
        model = "quadratic" if p.degree == 2 else "linear"
        qt = "" if p.quadratic_t is None else f", quadratic term t = {p.quadratic_t:.2f}"
        click.echo(f"  model: {model}, rate {p.rate_per_day * 30:+.4g} {u}/30 d "
                   f"(u {p.u_rate_per_day * 30:.2g}), Birge ratio {p.birge:.2f}, "
                   f"dof {p.dof}{qt}")
        oot = p.predicted_oot or "not within the horizon"
        click.echo(f"  out of tolerance (|e| + U ≥ MPE): {oot}"
                   + (f" (early bound {p.oot_early})" if p.oot_early else ""))
    for s in report.skipped:
        click.echo(f"skipped {s}")
    click.echo(f"\npredicted out of tolerance: {report.predicted_oot or 'not within the horizon'}")
    click.echo(f"simple reaction method: {report.reaction.days} d — {report.reaction.reason}")
    click.echo(f"drift-based method: {report.drift_based.days or '—'} d — "
               f"{report.drift_based.reason}")
    click.echo(f"recommended interval: {report.recommended_days or '—'} d")
    if plot_path:
        click.echo(f"plot: {plot_path}")
