"""``daq simulate meter|all``: device simulators on 127.0.0.1 (Modbus TCP meters, or any mix
described in a spec file)."""

from __future__ import annotations

import sys

import click

from daq.cli.common import EXIT_CONFIG, or_exit, run
from daq.config.yamlsrc import SourceErrors


@click.group()
def simulate() -> None:
    """Run device simulators."""


@simulate.command("meter")
@click.option("--profile", required=True, help="Profile id, e.g. sdm630 or dtsu666.")
@click.option("--port", default=5020, show_default=True, help="First TCP port.")
@click.option("--count", default=1, show_default=True, help="Meters on consecutive ports.")
@click.option("--unit-id", default=1, show_default=True)
@click.option("--seed", default=0, show_default=True)
def simulate_meter(profile: str, port: int, count: int, unit_id: int, seed: int) -> None:
    """Serve simulated energy meters over Modbus TCP on 127.0.0.1."""
    from simulators.fleet import run_meters

    try:
        run(run_meters(profile, port, count, unit_id, seed))
    except SourceErrors as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    except OSError as exc:
        click.echo(f"cannot serve on port {port}: {exc.strerror}", err=True)
        sys.exit(1)


@simulate.command("all")
@click.argument("spec_file", metavar="SPEC", type=click.Path(dir_okay=False))
def simulate_all(spec_file: str) -> None:
    """Serve any mix of simulators described in SPEC (see config/simulators.yaml)."""
    from simulators.mix import load_mix, serve_mix

    spec = or_exit(load_mix, spec_file)

    def say(line: str) -> None:
        click.echo(line)

    try:
        run(serve_mix(spec, say))
    except SourceErrors as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    except OSError as exc:
        click.echo(f"cannot serve: {exc}", err=True)
        sys.exit(1)
