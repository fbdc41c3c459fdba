"""``daq demo``: simulated meters → gateway → MQTT → ingest → historian, live table, and the
web dashboard (``--no-dashboard`` leaves it out) on http://127.0.0.1:8080/ or a free port.

A composition root: it ties the simulators, the gateway and storage together, importing them
only when the command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from daq.cli.common import EXIT_CONFIG, run
from daq.config.yamlsrc import SourceErrors
from daq.paths import builtin_data, data_dir

if TYPE_CHECKING:
    from rich.console import Console

    from daq.config import LoadedConfig
    from gateway.dashboard import Dashboard
    from gateway.dashboard.terminal import LiveFeed
    from simulators.instruments import InstrumentModel

DEFAULT_CONFIG = builtin_data("demo.yaml")
DLT645_ADDRESS = "558890213594"
DASHBOARD_PORT = 8080
DEMO_METERS = (("sdm630", "incomer", 1), ("dtsu666", "furnace-1", 2),
               ("dtsu666", "compressor-1", 3))

log = logging.getLogger(__name__)


@click.command()
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False),
              help="Demo site config (default: the built-in demo site, daq/data/demo.yaml).")
@click.option("--plain", is_flag=True, help="Print a plain table every few seconds.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the web dashboard.")
def demo(duration: float | None, config_file: str | None, plain: bool,
         no_dashboard: bool) -> None:
    """Simulated meters → gateway → MQTT → ingest → historian, with a live table and the
    web dashboard (http://127.0.0.1:8080/, or a free port if 8080 is taken)."""
    try:
        code = run(run_demo(duration, config_file, plain, dashboard=not no_dashboard))
    except SourceErrors as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    sys.exit(code)


async def run_demo(duration_s: float | None, config_file: str | None, plain: bool,
                   dashboard: bool = True) -> int:
    from rich.console import Console
    from rich.live import Live

    from calibration.keys import pin_site_keys
    from calibration.registry import Registry
    from daq.config import load_config
    from gateway.acquisition.service import GatewayService
    from gateway.dashboard.terminal import LiveFeed, render
    from gateway.ingest.service import Ingest
    from gateway.mqtt import unique_client_id
    from gateway.storage import open_storage
    from simulators.broker import ensure_broker
    from simulators.dlt645_meter import Dlt645MeterSimulator
    from simulators.fleet import MeterFleet, MeterSpec
    from simulators.instruments import ScpiDmmSimulator

    console = Console(stderr=False)
    var = _data_dir()
    with ensure_broker("127.0.0.1", int(os.environ.get("DAQ_MQTT_PORT", 1883)),
                       install=True) as broker:
        where = "private Mosquitto" if broker.private else "Mosquitto"
        console.print(f"[bold]daq demo[/]: {where} on {broker.host}:{broker.port}; data in {var}")
        specs = [MeterSpec(profile, 0, 1, seed, name=name) for profile, name, seed in DEMO_METERS]
        dmm = ScpiDmmSimulator(_demo_dmm(5.0, seed=0))
        registry = _demo_registry(var)
        os.environ.setdefault("DAQ_REGISTRY", str(registry))
        async with MeterFleet(specs) as fleet, dmm, \
                Dlt645MeterSimulator(DLT645_ADDRESS, seed=4, transport="pty") as revenue:
            _, dmm_port = await dmm.start_tcp()
            env = {"DAQ_VAR": str(var), "DAQ_MQTT_HOST": broker.host,
                   "DAQ_MQTT_PORT": str(broker.port), "DAQ_DEMO_DLT645_PORT": revenue.path,
                   "DAQ_DEMO_DMM_PORT": str(dmm_port)}
            for i, name in enumerate(fleet, start=1):
                env[f"DAQ_DEMO_PORT_{i}"] = str(fleet[name].port)
            os.environ.update(env)
            loaded = load_config(config_file or DEFAULT_CONFIG)
            for name in fleet:
                sim = fleet[name]
                console.print(f"  simulated {sim.profile.maker} {sim.profile.model} '{name}' "
                              f"on {sim.host}:{sim.port}")
            console.print(f"  simulated DL/T 645-2007 meter {DLT645_ADDRESS} 'grid-revenue' on "
                          f"{revenue.path}")
            console.print(f"  simulated SCPI multimeter 'bench-dmm' on 127.0.0.1:{dmm_port}")
            console.print(f"  calibration registry {registry}: bench-dmm corrected by its "
                          "certificate; grid-revenue's mandatory verification overdue")
            with Registry(loaded.keys_registry()) as reg:  # as `daq keys pin` does
                for gw_id, kid, _ in pin_site_keys(reg, loaded, "daq demo",
                                                   "demo: the gateway's signing key"):
                    console.print(f"  gateway {gw_id} signs with key {kid}, pinned in the "
                                  "registry")
            storage = open_storage(loaded)
            ingest = Ingest(loaded, storage)
            ingest.start()
            gateway = GatewayService(loaded)
            feed = LiveFeed(loaded, unique_client_id("daq", "live"))
            feed.start()
            dash = await _start_dashboard(loaded, var) if dashboard else None
            if dash is not None:
                console.print(f"  dashboard on [bold]{dash.url}[/] (open it in a browser)")
            started = time.monotonic()

            def footer() -> str:
                s = ingest.stats
                return (f"acquired {gateway.acquired} readings · published "
                        f"{gateway.publisher.acknowledged} messages (acknowledged) · stored "
                        f"{s.written_readings} readings in {loaded.config.storage.kind} · "
                        f"outbox {gateway.outbox.count()} · "
                        f"{time.monotonic() - started:.0f} s"
                        + ("" if duration_s is None else f" of {duration_s:.0f} s")
                        + " · Ctrl-C stops")

            gw_task = asyncio.create_task(gateway.run(), name="gateway")
            try:
                if plain:
                    await _plain(console, feed, footer, duration_s, started)
                else:
                    with Live(render(feed, footer), console=console, refresh_per_second=4,
                              transient=False) as live:
                        while duration_s is None or time.monotonic() - started < duration_s:
                            await asyncio.sleep(0.25)
                            live.update(render(feed, footer))
            except asyncio.CancelledError:
                # Ctrl-C: asyncio cancels us; stop everything in order and say what we did
                console.print("[yellow]stopping…[/]")
            finally:
                gw_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gw_task
                await asyncio.to_thread(ingest.stop)
                feed.stop()
                if dash is not None:
                    await dash.stop()
            stored = ingest.stats.written_readings
            console.print(f"demo finished: {gateway.acquired} readings acquired, {stored} "
                          f"stored in {loaded.resolve(getattr(loaded.config.storage, 'path', ''))}")
    return 0


async def _start_dashboard(loaded: LoadedConfig, var: Path) -> Dashboard:
    """The dashboard on 127.0.0.1:8080, or on a free port when 8080 is taken."""
    from gateway.dashboard import Dashboard, DashboardOptions

    ent = loaded.config.enterprise.id
    port = int(os.environ.get("DAQ_DASHBOARD_PORT", DASHBOARD_PORT))
    for try_port in (port, 0):
        dash = Dashboard(loaded, DashboardOptions(
            port=try_port, topic=f"daq/{ent}/#", alarm_log=str(var / "dashboard.sqlite"),
            registry=os.environ.get("DAQ_REGISTRY") or None))
        try:
            await dash.start()
        except OSError:
            await dash.stop()
            if try_port == 0:
                raise
            continue
        return dash
    raise AssertionError("unreachable")


def _demo_dmm(true_value: float, seed: int) -> InstrumentModel:
    """The demo DMM: the lab calibrates one with these errors (simulators/lab.py), and the
    gateway corrects the demo's readings with the resulting certificate."""
    from simulators.instruments import InstrumentModel

    return InstrumentModel(true_value, "V", offset=2e-4, gain=5e-5, noise=3e-6, decimals=6,
                           seed=seed)


def _demo_registry(var: Path) -> Path:
    """The demo's calibration registry: a three-level chain ending at the bench DMM (calibrated
    30 days ago by the simulated lab) and the energy meters' verification records — the grid
    revenue meter overdue, the furnace meter due soon. Recreated at each start (dates are
    relative to today), so its audit log is the demo's own."""
    import datetime as dt

    from calibration.records import RecordSet
    from calibration.registry import Registry
    from simulators.lab import calibrate, chain

    today = dt.datetime.now(dt.UTC).date()
    lab = chain(today, {"demo-dmm-01": calibrate(_demo_dmm(0.0, seed=7))},
                instrument_extra={"demo-dmm-01": {"repeatability": 3e-6}})

    def meter(id_: str, model: str, quantity_max: float, level: str) -> dict[str, object]:
        return {"id": id_, "maker": "demo", "model": model, "serial": f"SN-{id_}",
                "quantity": "active_energy", "unit": "kWh",
                "range": {"min": 0.0, "max": quantity_max}, "resolution": 0.01,
                "accuracy": {"class": "0.5S"}, "owner": os.environ.get(
                    "DAQ_DEMO_ENTERPRISE", "demo-steel"),
                "location": "demo site", "role": "working", "mandatory_verification": True,
                "verification": {"mode": "periodic", "period_months": 24},
                "energy_type": "electricity", "measurement_level": level}

    def verified(inst: str, days_ago: int) -> dict[str, object]:
        on = today - dt.timedelta(days=days_ago)
        return {"instrument": inst, "date": on.isoformat(), "result": "pass",
                "authority": "city institute of metrology (demo)",
                "record_number": f"JD-{inst}-{on:%Y%m%d}",
                "next_due": (on + dt.timedelta(days=730)).isoformat()}

    meters = RecordSet.model_validate({
        # GB 17167 levels: the utility's revenue meter is the enterprise boundary, the
        # incomer a secondary unit, the furnace main energy-using equipment (the dashboard
        # sums only boundary meters into the enterprise's consumption)
        "instruments": [meter("em-grid-revenue", "DL/T 645-2007 meter", 1e6,
                              "enterprise_boundary"),
                        meter("em-incomer", "SDM630", 1e6, "secondary_unit"),
                        meter("em-furnace-1", "DTSU666", 1e6, "main_equipment")],
        "verifications": [verified("em-grid-revenue", 800), verified("em-incomer", 200),
                          verified("em-furnace-1", 715)]})
    path = var / "registry.sqlite"
    path.unlink(missing_ok=True)
    with Registry(path) as reg:
        reg.import_records(lab, "daq demo", "demo: the simulated lab's certificates")
        reg.import_records(meters, "daq demo", "demo: the site's energy meters")
    return path


def _data_dir() -> Path:
    """The demo's files: ``$DAQ_VAR``, else ``demo/`` in the data directory."""
    var = Path(os.environ.get("DAQ_VAR") or data_dir() / "demo").resolve()
    var.mkdir(parents=True, exist_ok=True)
    return var


async def _plain(console: Console, feed: LiveFeed, footer: Callable[[], str],
                 duration_s: float | None, started: float) -> None:
    from gateway.dashboard.terminal import render

    while True:
        left = 5.0 if duration_s is None else duration_s - (time.monotonic() - started)
        if left <= 0:
            return
        await asyncio.sleep(min(5.0, left))
        console.print(render(feed, footer))
