"""``daq dashboard CONFIG``: the monitoring centre's web dashboard (docs/dashboard.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from daq.cli.common import EXIT_CONFIG, load_site, registry_option, run
from daq.cli.logs import service_started
from daq.config.yamlsrc import SourceErrors


def read_token(token_file: str | None) -> str | None:
    """The write token: ``--token-file`` (or ``$DAQ_DASHBOARD_TOKEN_FILE``; its content,
    stripped) or ``$DAQ_DASHBOARD_TOKEN``; None = no token (anyone who can reach the port may
    acknowledge: allowed on loopback only, see docs/dashboard.md)."""
    if token_file is not None:
        token = Path(token_file).read_text(encoding="utf-8").strip()
        if not token:
            raise click.BadParameter(f"{token_file} is empty", param_hint="--token-file")
        return token
    return os.environ.get("DAQ_DASHBOARD_TOKEN") or None


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (127.0.0.1: this computer only).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0 picks a free one).")
@registry_option(optional=True)
@click.option("--topic", default="daq/#", show_default=True,
              help="MQTT subscription (e.g. daq/my-enterprise/#).")
@click.option("--tz", default="Asia/Shanghai", show_default=True,
              help="Time zone of energy intervals and days (IANA name).")
@click.option("--alarm-log", default=None,
              help="SQLite file for alarm history and acknowledgements "
                   "(default: var/dashboard.sqlite beside CONFIG).")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False, exists=True),
              envvar="DAQ_DASHBOARD_TOKEN_FILE", show_envvar=True,
              help="File holding the token required to acknowledge alarms (default: "
                   "$DAQ_DASHBOARD_TOKEN; none = no token, allowed on loopback only).")
@click.option("--read-only", is_flag=True,
              help="Refuse every acknowledgement (e.g. a wall display bound off loopback "
                   "without a token).")
@click.option("--register-max", default=999_999.99, show_default=True, type=float,
              help="Largest value energy registers show before rolling over to 0.")
@click.option("--max-interpolate-s", default=3600.0, show_default=True, type=float,
              help="Longest gap in a register's samples bridged by interpolation.")
@click.option("--energy-channel", default="energy_import", show_default=True,
              help="The channel id of the import energy register (quantity active_energy).")
def dashboard(config: str, host: str, port: int, registry_path: str | None, topic: str,
              tz: str, alarm_log: str | None, token_file: str | None, read_only: bool,
              register_max: float, max_interpolate_s: float, energy_channel: str) -> None:
    """Serve the web dashboard of CONFIG's broker and storage on http://HOST:PORT/.

    Bound to anything but loopback (--host 0.0.0.0), it needs a token (--token-file) or
    --read-only: it does not start with acknowledgements open to the network (exit 2)."""
    from zoneinfo import ZoneInfoNotFoundError

    from gateway.dashboard import DashboardOptions, serve
    from gateway.dashboard.security import DashboardExposed, check_exposure
    from gateway.energy.accounting import EnergyRules

    service_started("dashboard")
    token = read_token(token_file)
    try:
        check_exposure(host, token, read_only)
    except DashboardExposed as exc:
        click.echo(f"daq dashboard: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    loaded = load_site(config)
    options = DashboardOptions(
        host=host, port=port, topic=topic, registry=registry_path, token=token,
        read_only=read_only,
        alarm_log=alarm_log or str(loaded.resolve("var/dashboard.sqlite")), tz=tz,
        energy_channel=energy_channel,
        rules=EnergyRules(register_max=register_max, max_interpolate_s=max_interpolate_s))
    try:
        run(serve(loaded, options, announce=lambda s: click.echo(s, err=False)))
    except SourceErrors as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    except ZoneInfoNotFoundError:
        click.echo(f"--tz: unknown time zone {tz!r}", err=True)
        sys.exit(EXIT_CONFIG)
    except OSError as exc:
        click.echo(f"cannot serve: {exc}", err=True)
        sys.exit(1)
