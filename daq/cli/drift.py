"""``daq drift INSTRUMENT``: drift from calibration history — a model per calibration point,
the predicted out-of-tolerance date and a recommended interval (docs/drift.md); the PNG is
drawn by :mod:`daq.cli.drift_plot`. Imports of the rest of the repo happen inside the
command."""

from __future__ import annotations

import sys

import click

from daq.cli.common import load_record_set, registry_option

EXIT_USAGE = 2


@click.command()
@click.argument("instrument")
@registry_option(records_files=True)
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Write a PNG of error against time with U bars, ±MPE and the prediction "
                   "band.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--reliability", default=0.90, show_default=True,
              type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="End-of-period reliability target of the drift-based interval.")
def drift(instrument: str, registry_path: str, plot_path: str | None, as_json: bool,
          reliability: float) -> None:
    """INSTRUMENT's calibration history, drift model, predicted out-of-tolerance date and
    recommended interval. Exit 1 when there is not enough history, 2 on bad input."""
    import orjson

    from calibration.drift import DriftError, analyse

    records = load_record_set(registry_path)
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
