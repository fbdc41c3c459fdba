"""``daq read CONFIG --device ID``: poll one device once and show what came back — the
commissioning tool."""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING, Any

import click

from daq.cli.common import load_site, run
from daq.model import Quality, Reading

if TYPE_CHECKING:
    from rich.table import Table

    from daq.config import LoadedConfig


@click.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--device", "device_id", required=True, help="Device id from the config.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def read(config_file: str, device_id: str, as_json: bool) -> None:
    """Poll one device once and print its channels (commissioning)."""
    loaded = load_site(config_file)
    code = run(read_device(loaded, device_id, as_json))
    sys.exit(code)


async def _noop(_: list[Reading]) -> None:
    return None


async def read_device(loaded: LoadedConfig, device_id: str, as_json: bool) -> int:
    """Poll ``device_id`` once; print a table or JSON. Returns 0 if every channel is good."""
    import orjson
    from rich.console import Console

    from gateway.acquisition.poller import build_coordinators

    # piped output (logs, scripts) is not cut to 80 columns
    console = Console(width=None if sys.stdout.isatty() else 160)
    for gw in loaded.config.gateways:
        for coord in build_coordinators(loaded, gw, _noop):
            if coord.config.id != device_id:
                continue
            try:
                readings = await coord.poll_once()
            finally:
                await coord.bus.close()
            if as_json:
                print(orjson.dumps([_as_dict(r) for r in readings],
                                   option=orjson.OPT_INDENT_2).decode())
            else:
                console.print(_table(coord.config.id, coord.bus.config.endpoint, readings))
            return 0 if all(r.quality is Quality.GOOD for r in readings) else 1
    known = ", ".join(dev.id for _, _, dev in loaded.devices())
    console.print(f"[red]no device {device_id!r} in {loaded.path}[/] (devices: {known})")
    return 2


def _as_dict(r: Reading) -> dict[str, Any]:
    return {
        "device": r.device,
        "channel": r.channel,
        "quantity": r.quantity,
        "value": r.value,
        "raw": r.raw,
        "unit": r.unit,
        "quality": r.quality.value,
        "reason": r.reason,
        "ts": r.ts_ns,
    }


def _table(device: str, endpoint: str, readings: list[Reading]) -> Table:
    from rich.table import Table

    table = Table(title=f"{device} @ {endpoint}")
    for col in ("channel", "quantity", "value", "raw", "unit", "quality", "time (UTC)"):
        table.add_column(col, justify="right" if col in ("value", "raw") else "left")
    for r in readings:
        ts = dt.datetime.fromtimestamp(r.ts_ns / 1e9, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        quality = r.quality.value + (f" ({r.reason})" if r.reason else "")
        table.add_row(r.channel, r.quantity, "—" if r.value is None else f"{r.value:.6g}"
                      if isinstance(r.value, float) else str(r.value),
                      "" if r.raw is None else str(r.raw), r.unit, quality, ts)
    return table
