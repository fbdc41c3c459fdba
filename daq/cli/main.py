"""The ``daq`` root command: the group, the logging set-up, and the registration of every
command group, one module each beside this one:

================  =============================================================================
``config.py``     ``daq config check``
``broker.py``     ``daq broker access`` (the broker's password and ACL files from the site)
``read.py``       ``daq read`` (commissioning: poll one device once)
``services.py``   ``daq gateway``, ``daq ingest``
``simulate.py``   ``daq simulate meter|all``
``demo.py``       ``daq demo``
``dashboard.py``  ``daq dashboard``
``cert.py``       ``daq cert import|list|show|verify``, ``daq audit verify|head``, ``daq trace``
``verify.py``     ``daq verify status``
``drift.py``      ``daq drift``
``calibrate.py``  ``daq calibrate run|resume|simulate``
``keys.py``       ``daq keys pin|list|revoke`` (the gateways' signing keys)
``evidence.py``   ``daq evidence verify`` (stored readings against the signed messages)
================  =============================================================================

What they share (running a coroutine until a stop, loading a site file, the ``--registry``
option) is in ``common.py``; the logging set-up (ISO 8601 times, ``--log-format json``) in
``logs.py``. Imports of the rest of the repo happen inside the commands, so
``daq --help`` and ``daq config check`` stay fast and ``import daq.cli`` loads no runtime.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from daq.cli.broker import broker
from daq.cli.calibrate import calibrate
from daq.cli.cert import audit, cert, trace
from daq.cli.config import config
from daq.cli.dashboard import dashboard
from daq.cli.demo import demo
from daq.cli.drift import drift
from daq.cli.evidence import evidence
from daq.cli.keys import keys
from daq.cli.logs import setup_logging
from daq.cli.read import read
from daq.cli.services import gateway, ingest
from daq.cli.simulate import simulate
from daq.cli.verify import verify


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from daq.paths import DISTRIBUTION, version

    click.echo(f"daq ({DISTRIBUTION}) {version()}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print the installed version and exit.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, envvar="DAQ_LOG_FORMAT",
              help="Log lines as text with ISO 8601 times, or one JSON object per line "
                   "(ts, level, logger, message, exc_info) for log collectors.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where commands keep their state (the demo, the default registry, "
                   "sessions); sets $DAQ_HOME. Default: $DAQ_HOME, else $STATE_DIRECTORY, "
                   "else /var/lib/daq for root, else $XDG_DATA_HOME/daq or "
                   "~/.local/share/daq.")
def main(verbose: int, log_format: str, data_dir: Path | None) -> None:
    """daq — metrology and energy-meter data acquisition."""
    setup_logging(verbose, log_format)
    if data_dir is not None:
        # the environment, so that every part of the command and what it starts agree
        os.environ["DAQ_HOME"] = str(data_dir.expanduser().resolve())


for command in (config, broker, read, gateway, ingest, simulate, demo, dashboard, cert, audit,
                trace, verify, drift, calibrate, keys, evidence):
    main.add_command(command)

if __name__ == "__main__":
    main()
