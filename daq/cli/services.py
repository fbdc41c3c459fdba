"""The long-running services of a site: ``daq gateway CONFIG`` (poll, outbox, MQTT) and
``daq ingest CONFIG`` (MQTT → storage). Both stop cleanly on Ctrl-C and SIGTERM."""

from __future__ import annotations

import signal
import sys

import click

from daq.cli.common import EXIT_CONFIG, load_site, run
from daq.cli.logs import service_started


@click.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--gateway", "gateway_id", default=None, help="Gateway id (default: the first).")
def gateway(config_file: str, gateway_id: str | None) -> None:
    """Run a gateway: poll its devices and publish to MQTT through the durable outbox."""
    from daq.config import UnknownGatewayError
    from gateway.acquisition.service import GatewayService
    from gateway.outbox import OutboxOpenError

    service_started("gateway")
    loaded = load_site(config_file)
    try:
        loaded.gateway(gateway_id)
    except UnknownGatewayError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)

    async def go() -> None:
        try:
            service = GatewayService(loaded, gateway_id)
        except OutboxOpenError as exc:  # e.g. a read-only directory: one line, exit 1
            click.echo(f"daq gateway: {exc}", err=True)
            sys.exit(1)
        await service.run()

    run(go())


@click.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--client-id", default=None,
              help="Fixed MQTT client id: a persistent session kept across restarts.")
def ingest(config_file: str, client_id: str | None) -> None:
    """Subscribe to the gateways' data and write it to storage."""
    from gateway.ingest.service import Ingest
    from gateway.storage import open_storage

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    service_started("ingest")
    loaded = load_site(config_file)
    ing = Ingest(loaded, open_storage(loaded), client_id=client_id)
    ing.start()
    try:
        while not ing.failed.wait(1):
            pass
    except KeyboardInterrupt:
        ing.stop()
        s = ing.stats
        click.echo(f"\ningest stopped: {s.written_readings} readings written, "
                   f"{s.spooled_messages} messages spooled, {s.rejected_messages} rejected",
                   err=True)
        return
    # the writer could not go on: exit non-zero so a service manager restarts us; what was
    # not acknowledged stays with the broker and is delivered again
    ing.stop(drain_s=0)
    click.echo(f"ingest failed: {ing.failure}", err=True)
    sys.exit(1)
