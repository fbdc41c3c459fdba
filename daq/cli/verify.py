"""``daq verify status``: the mandatory-verification register (docs/verification.md). Imports
of the rest of the repo happen inside the command."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from daq.cli.common import load_record_set, or_exit, registry_option

EXIT_FINDINGS = 1   # verify status: some instrument must not be relied on (see docs)
EXIT_USAGE = 2


def _load_data(loader: Any, path: str | None) -> Any:
    return or_exit(loader, path) if path else or_exit(loader)


@click.group()
def verify() -> None:
    """Mandatory verification (强制检定): due and overdue instruments."""


@verify.command("status")
@registry_option(records_files=True)
@click.option("--enterprise", default=None, help="Only this enterprise (instrument owner).")
@click.option("--at", "at_date", default=None, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="The date of interest; default today (UTC).")
@click.option("--window-days", default=30, show_default=True, type=click.IntRange(min=0),
              help="Due soon when due within this many days.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv"]))
@click.option("--periods", "periods_path", default=None, type=click.Path(dir_okay=False),
              help="The site's own periods: the instrument types it lists override the "
                   "built-in ones (daq/data/verification-periods.yaml).")
@click.option("--classes", "classes_path", default=None, type=click.Path(dir_okay=False),
              help="GB 17167 classes, replacing the built-in table "
                   "(daq/data/gb17167-classes.yaml).")
@click.option("--edition", default=None, help="GB 17167 edition to check classes against "
              "(default: the one in force at --at).")
def verify_status(registry_path: str, enterprise: str | None, at_date: Any,
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
    register = Register.from_records(load_record_set(registry_path))
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
