"""The ``daq`` command line. Imports of the rest of the repo happen inside the commands, so
``daq --help`` and ``daq config check`` stay fast and ``daq`` stays the bottom layer."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from daq.cli.common import (
    EXIT_CONFIG,
    load_site,
    open_registry,
    or_exit,
    registry_option,
    run,
    who,
)
from daq.config.yamlsrc import SourceErrors


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


# ---------------------------------------------------------------------------------------------
@main.group()
def config() -> None:
    """Check and explain configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE; print a summary and the planned Modbus requests of every device.

    On error, print FILE:LINE: field: message for every problem and exit 2.
    """
    from drivers.modbus.plan import describe_plan, plan_device

    loaded = load_site(str(file))
    cfg = loaded.config
    click.echo(f"{file}: OK")
    click.echo(f"enterprise {cfg.enterprise.id} ({cfg.enterprise.name})")
    from daq.config import Device, Dlt645Device

    for gw, bus, dev in loaded.devices():
        profile = loaded.profiles[dev.profile]
        where = (f"unit {dev.unit_id}" if isinstance(dev, Device) else
                 f"address {dev.address}" if isinstance(dev, Dlt645Device) else profile.protocol)
        click.echo(f"  {gw.id} / {bus.id} ({bus.protocol} {bus.endpoint}) / {dev.id}: "
                   f"{profile.maker} {profile.model}, {where}, "
                   f"{len(profile.channels)} channels every {dev.interval_ms} ms")
        if isinstance(dev, Device):
            modbus = loaded.modbus_profile(dev.profile)
            plans = plan_device(modbus.channels, dev.max_gap, dev.max_registers,
                                dev.one_request_per_channel)
            for line in describe_plan(plans):
                click.echo(f"      {line}")
        elif isinstance(dev, Dlt645Device):
            click.echo(f"      {len(profile.channels)} reads per poll (one data identifier each)")
    m = cfg.mqtt
    auth = f"user {m.username}" if m.username else "anonymous"
    click.echo(f"mqtt: {m.host}:{m.port} ({auth}{', TLS' if m.tls else ''})")
    click.echo(f"storage: {cfg.storage.kind}")


# ---------------------------------------------------------------------------------------------
@main.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--device", "device_id", required=True, help="Device id from the config.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def read(config_file: str, device_id: str, as_json: bool) -> None:
    """Poll one device once and print its channels (commissioning)."""
    from daq.cli.read import read_device

    loaded = load_site(config_file)
    code = run(read_device(loaded, device_id, as_json))
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
@main.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--gateway", "gateway_id", default=None, help="Gateway id (default: the first).")
def gateway(config_file: str, gateway_id: str | None) -> None:
    """Run a gateway: poll its devices and publish to MQTT through the durable outbox."""
    from gateway.acquisition.service import GatewayService

    loaded = load_site(config_file)

    async def go() -> None:
        await GatewayService(loaded, gateway_id).run()

    run(go())


@main.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--client-id", default=None,
              help="Fixed MQTT client id: a persistent session kept across restarts.")
def ingest(config_file: str, client_id: str | None) -> None:
    """Subscribe to the gateways' data and write it to storage."""
    import time

    from gateway.ingest.service import Ingest
    from gateway.storage import open_storage

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    loaded = load_site(config_file)
    ing = Ingest(loaded, open_storage(loaded), client_id=client_id)
    ing.start()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        ing.stop()
        s = ing.stats
        click.echo(f"\ningest stopped: {s.written_readings} readings written, "
                   f"{s.spooled_messages} messages spooled", err=True)


# ---------------------------------------------------------------------------------------------
@main.group()
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


# ---------------------------------------------------------------------------------------------
@main.group()
def cert() -> None:
    """Calibration records: instruments, certificates, verifications."""


@cert.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@registry_option
@click.option("--why", default=None, help="Reason recorded in the audit log.")
def cert_import(file: str, registry_path: str | None, why: str | None) -> None:
    """Check FILE (YAML or JSON with instruments, certificates, verifications) and put its
    records into the registry, all or nothing. Errors: FILE:LINE: field: message, exit 2."""
    from calibration.records import load_records
    from calibration.registry import RegistryError

    with open_registry(registry_path, create=True) as reg:
        records = or_exit(load_records, file, reg.get)
        try:
            entries = reg.import_records(records, who(), why or f"import {file}")
        except RegistryError as exc:
            click.echo(f"{file}: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        click.echo(f"{file}: {len(records.records())} records, {len(entries)} changed "
                   f"({reg.path})")


@cert.command("list")
@registry_option
def cert_list(registry_path: str | None) -> None:
    """List the certificates in the registry."""
    from rich.console import Console
    from rich.table import Table

    from calibration.records import Certificate

    with open_registry(registry_path) as reg:
        table = Table()
        for name in ("certificate", "instrument", "calibrated", "expires", "references"):
            table.add_column(name, no_wrap=True)
        table.add_column("points", justify="right")
        table.add_column("laboratory")
        for c in reg.list("certificate"):
            assert isinstance(c, Certificate)
            table.add_row(c.id, c.instrument, str(c.calibration_date), str(c.expires),
                          ", ".join(c.reference_certificates) or "—", str(len(c.points)),
                          c.laboratory)
        console = Console()
        if not console.is_terminal:  # piped: do not squeeze ids into 80 columns
            console = Console(width=200)
        console.print(table)


@cert.command("show")
@click.argument("cert_id", metavar="ID")
@registry_option
def cert_show(cert_id: str, registry_path: str | None) -> None:
    """Print certificate ID as JSON, with the SHA-256 of its canonical JSON."""
    import json

    from calibration.registry import sha256_text

    with open_registry(registry_path) as reg:
        text = reg.raw_json("certificate", cert_id)
        if text is None:
            click.echo(f"no certificate {cert_id!r} in {reg.path}", err=True)
            sys.exit(1)
        click.echo(json.dumps(json.loads(text), indent=2, ensure_ascii=False))
        click.echo(f"sha256: {sha256_text(text)}")


@main.group()
def audit() -> None:
    """The registry's audit log."""


@audit.command("verify")
@registry_option
@click.option("--anchor", "anchors", multiple=True, metavar="SEQ:SHA256",
              help="A head recorded earlier outside the registry (daq audit head): the entry "
                   "SEQ must still have this hash. Repeatable.")
def audit_verify(registry_path: str | None, anchors: tuple[str, ...]) -> None:
    """Check the audit chain and the records against it; exit 1 on the first broken entry.

    The hash chain shows any edit that was not followed by recomputing every later hash;
    anchors (heads written down, printed on reports or kept on another machine) also catch
    a log rewritten from the start."""
    with open_registry(registry_path) as reg:
        problems = reg.verify()
        entries = {e.seq: e.entry_sha256 for e in reg.audit()}
        for anchor in anchors:
            seq, _, digest = anchor.partition(":")
            if not seq.isdigit() or len(digest) != 64:
                click.echo(f"--anchor {anchor!r}: expected SEQ:SHA256", err=True)
                sys.exit(EXIT_CONFIG)
            if entries.get(int(seq)) != digest.lower():
                problems.append(f"anchor {anchor}: audit entry {seq} "
                                + ("is missing" if int(seq) not in entries else
                                   f"has hash {entries[int(seq)]}") + ": the log was rewritten")
        if problems:
            for p in problems:
                click.echo(p, err=True)
            sys.exit(1)
        click.echo(f"audit log intact: {len(entries)} entries (head {reg.head()})"
                   + (f", {len(anchors)} anchors hold" if anchors else ""))


@audit.command("head")
@registry_option
def audit_head(registry_path: str | None) -> None:
    """Print the audit log's head as SEQ:SHA256, to record outside the registry (a lab
    notebook, another machine) and check later with ``daq audit verify --anchor``."""
    with open_registry(registry_path) as reg:
        entries = reg.audit()
        last = entries[-1] if entries else None
        click.echo(f"{last.seq}:{last.entry_sha256}" if last else f"0:{reg.head()}")


@main.command()
@click.argument("instrument")
@click.option("--at", "at_date", default=None, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="The instant (date) of interest; default today.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a tree.")
@registry_option
def trace(instrument: str, at_date: Any, as_json: bool, registry_path: str | None) -> None:
    """Print INSTRUMENT's traceability chain up to a national standard; exit 1 if broken."""
    import datetime as dt

    import orjson
    from rich.console import Console
    from rich.tree import Tree

    from calibration.chain import Link, Records, resolve

    at = at_date.date() if at_date is not None else dt.datetime.now(dt.UTC).date()
    with open_registry(registry_path) as reg:
        records = Records.of(reg.list("instrument"), reg.list("certificate"))
    chain = resolve(records, instrument, at)
    if as_json:
        click.echo(orjson.dumps(chain.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        def label(link: Link) -> str:
            mark = "[green]✔[/]" if not link.problems else "[red]✘[/]"
            u = f", u ≤ {link.u:.3g}" if link.u is not None else ""
            text = (f"{mark} {link.instrument} — {link.certificate or 'no certificate'} "
                    f"(valid at {link.at}{', expires ' + str(link.expires) if link.expires else ''}"
                    f"{u})")
            return text + "".join(f"\n   [red]{p}[/]" for p in link.problems)

        def grow(tree: Tree, link: Link) -> None:
            for ref in link.references:
                grow(tree.add(label(ref)), ref)

        root = Tree(label(chain))
        grow(root, chain)
        Console().print(root)
        Console().print("chain intact" if chain.ok else "[red]chain broken[/]")
    sys.exit(0 if chain.ok else 1)


# ---------------------------------------------------------------------------------------------
@main.command()
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False),
              help="Demo site config (default: config/demo.yaml).")
@click.option("--plain", is_flag=True, help="Print a plain table every few seconds.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the web dashboard.")
def demo(duration: float | None, config_file: str | None, plain: bool,
         no_dashboard: bool) -> None:
    """Simulated meters → gateway → MQTT → ingest → historian, with a live table and the
    web dashboard (http://127.0.0.1:8080/, or a free port if 8080 is taken)."""
    from daq.cli.demo import run_demo

    try:
        code = run(run_demo(duration, config_file, plain, dashboard=not no_dashboard))
    except SourceErrors as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    sys.exit(code)


# commands of their own modules (imported last: they import ``main`` and helpers from here)
from daq.cli.calibrate import register  # noqa: E402 (calibration sessions, cert verify)
from daq.cli.dashboard import dashboard  # noqa: E402 (the monitoring centre's web page)
from daq.cli.verify import drift, verify  # noqa: E402 (mandatory verification, drift)

main.add_command(verify)
main.add_command(drift)
main.add_command(dashboard)
register(main, cert)

if __name__ == "__main__":
    main()
