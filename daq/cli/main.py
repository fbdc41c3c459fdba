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
option) is in ``common.py``. Imports of the rest of the repo happen inside the commands, so
``daq --help`` and ``daq config check`` stay fast and ``import daq.cli`` loads no runtime.
"""

from __future__ import annotations

import logging

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
from daq.cli.read import read
from daq.cli.services import gateway, ingest
from daq.cli.simulate import simulate
from daq.cli.verify import verify


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    # pymodbus logs every timeout at error level; our poller says it once per device instead
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """daq — metrology and energy-meter data acquisition."""
    _setup_logging(verbose)


for command in (config, broker, read, gateway, ingest, simulate, demo, dashboard, cert, audit,
                trace, verify, drift, calibrate, keys, evidence):
    main.add_command(command)

if __name__ == "__main__":
    main()
