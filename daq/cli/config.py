"""``daq config check FILE``: validate a site file and show what the gateways will do;
``daq config example``: the built-in demo site, to start a site file from."""

from __future__ import annotations

from pathlib import Path

import click

from daq.cli.common import load_site


@click.group()
def config() -> None:
    """Check and explain configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE; print a summary and the planned Modbus requests of every device.

    On error, print FILE:LINE: field: message for every problem and exit 2.
    """
    from daq.config import Device, Dlt645Device
    from daq.paths import version
    from drivers.modbus.plan import describe_plan, plan_device

    loaded = load_site(str(file))
    cfg = loaded.config
    click.echo(f"{file}: OK (daq {version()})")
    click.echo(f"enterprise {cfg.enterprise.id} ({cfg.enterprise.name})")
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


@config.command("example")
def config_example() -> None:
    """Print the demo site (the one `daq demo` runs) to start a site file from:
    daq config example > site.yaml. Its profiles are the built-in ones."""
    from daq.paths import builtin_data

    click.echo(builtin_data("demo.yaml").read_text(encoding="utf-8"), nl=False)
