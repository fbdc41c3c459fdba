"""The dashboard in headless Chromium, fed by the real path: simulated meters → gateway →
Mosquitto → ingest → historian, and the dashboard subscribed to the same broker.

The plant runs in a background thread with its own event loop (the Playwright sync API runs
its own loop in the test's thread). Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from calibration.records import load_records
from calibration.registry import Registry
from daq.alarms import Alarm, AlarmEvent, AlarmKind, alarms_topic, encode_alarms
from daq.config import LoadedConfig, load_config
from daq.model import Quality, Reading
from daq.payload import data_topic, encode_batch
from gateway.acquisition.service import GatewayService
from gateway.dashboard import Dashboard, DashboardOptions
from gateway.dashboard.history import HistorianHistory, Where
from gateway.ingest.service import Ingest
from gateway.storage import open_storage
from simulators.fleet import MeterFleet, MeterSpec
from tests.integration.gateway.dashboard.background import Background
from tests.integration.pathrun import pin_keys

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[4]
SHOTS = REPO / "artifacts" / "screenshots"
NS = 1_000_000_000
INTERVAL_MS = 200
METERS = (("sdm630", "incomer"), ("dtsu666", "furnace-1"))
CERT = "LAB-2024-0815"  # of dmm-34465a-07 in config/calibration/example-records.yaml


@dataclass
class Plant:
    bg: Background
    loaded: LoadedConfig
    fleet: MeterFleet
    dash: Dashboard
    enterprise: str
    tmp: Path

    @property
    def url(self) -> str:
        return self.dash.url

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        cfg = self.loaded.config.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        client.connect(cfg.host, cfg.port)
        client.loop_start()
        try:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
        finally:
            client.loop_stop()
            client.disconnect()


def site_config(tmp: Path, broker: Any, ent: str, fleet: MeterFleet) -> LoadedConfig:
    buses = "".join(f"""
      - id: bus-{i}
        protocol: modbus-tcp
        host: 127.0.0.1
        port: {fleet[name].port}
        timeout_ms: 500
        devices:
          - {{id: {name}, profile: {profile}, interval_ms: {INTERVAL_MS}}}
""" for i, (profile, name) in enumerate(METERS))
    path = tmp / "site.yaml"
    path.write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: gw-1
    outbox: outbox.sqlite
    buses:{buses}
mqtt: {{host: {broker.host}, port: {broker.port}}}
ingest: {{subscription: "daq/{ent}/#", batch_interval_ms: 50, spool: spool.sqlite}}
storage: {{kind: historian, path: historian.sqlite}}
""")
    return load_config(path)


@pytest.fixture(scope="module")
def plant(mqtt_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    tmp = tmp_path_factory.mktemp("dashboard")
    ent = f"t{uuid.uuid4().hex[:10]}"
    bg = Background("plant")
    specs = [MeterSpec(p, 0, 1, seed, name=n) for seed, (p, n) in enumerate(METERS)]
    fleet = MeterFleet(specs)
    bg.run(fleet.start())
    loaded = site_config(tmp, mqtt_broker, ent, fleet)
    pin_keys(loaded)
    ingest = Ingest(loaded, open_storage(loaded))
    ingest.start()
    assert ingest.wait_subscribed(10)
    gateway = GatewayService(loaded)

    async def start_gateway() -> asyncio.Task[None]:
        return asyncio.create_task(gateway.run(), name="gateway")

    task = bg.run(start_gateway())
    registry = tmp / "registry.sqlite"
    with Registry(registry) as reg:
        reg.import_records(load_records(REPO / "config" / "calibration" / "example-records.yaml"),
                           "test", "dashboard chain view")
    dash = Dashboard(loaded, DashboardOptions(
        port=0, topic=f"daq/{ent}/#", alarm_log=str(tmp / "dashboard.sqlite"), tz="UTC",
        registry=str(registry)))
    bg.run(dash.start())
    try:
        yield Plant(bg, loaded, fleet, dash, ent, tmp)
    finally:
        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dash.stop()
            await fleet.stop()

        bg.run(stop())
        ingest.stop()
        bg.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"dashboard-{name}.png"), full_page=True)


def test_overview_loads_with_the_enterprise_and_its_devices_online(plant: Plant,
                                                                   page: Any) -> None:
    page.goto(plant.url)
    card = page.locator(f'[data-enterprise="{plant.enterprise}"]')
    card.wait_for(timeout=10_000)
    page.wait_for_function(
        """ent => document.querySelector(`[data-enterprise="${ent}"] [data-count=online]`)
                 ?.textContent.startsWith("2 online")""", arg=plant.enterprise, timeout=10_000)
    assert "0 faulty" in card.inner_text()
    # today's energy appears as soon as the meters are known (pushed, not polled)
    page.wait_for_function(
        """ent => /kWh · [^]* tce[^]*2 meters/.test(document.querySelector(
                 `[data-enterprise="${ent}"] [data-energy-today]`)?.textContent ?? "")""",
        arg=plant.enterprise, timeout=10_000)
    # no external assets: everything the page loaded came from the dashboard itself
    urls = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert urls
    assert all(u.startswith(plant.url.rstrip("/")) for u in urls), urls
    shot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"{plant.url}#/e/{plant.enterprise}")
    page.locator('[data-device$="/incomer"]').wait_for(timeout=10_000)
    # readable on a phone: nothing wider than the screen but the scrollable tables
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    shot(page, "enterprise-phone")


def test_a_value_served_by_the_simulator_appears_within_2_s(plant: Plant, page: Any) -> None:
    page.goto(f"{plant.url}#/e/{plant.enterprise}/g/gw-1/d/incomer")
    cell = page.locator(f'tr[data-key="{plant.enterprise}/gw-1/incomer/power_total"] '
                        '[data-f="v"]')
    cell.wait_for(timeout=10_000)
    marker = 12_345.25 + (time.time() % 100) // 1  # never served by the model; exact in f32
    assert marker != float(cell.inner_text().replace(",", ""))
    plant.fleet["incomer"].faults.override["power_total"] = marker
    try:
        # served at the next poll (≤ 200 ms), through the gateway, Mosquitto and the SSE push
        page.wait_for_function(
            "([el, want]) => el.textContent === want",
            arg=[cell.element_handle(), f"{marker:,.2f}"], timeout=2_000)
    finally:
        plant.fleet["incomer"].faults.override.clear()
    shot(page, "device")


def publish_overdue_meter(plant: Plant, device: str) -> None:
    now = time.time_ns()
    r = Reading(ts_ns=now, enterprise=plant.enterprise, gateway="gw-2", device=device,
                channel="energy_import", quantity="active_energy", unit="kWh", value=1234.5,
                quality=Quality.UNCERTAIN, reason="verification_overdue", u=0.5, k=2.0,
                cert=CERT, verification="overdue")
    plant.publish(data_topic(plant.enterprise, "gw-2"),
                  encode_batch(plant.enterprise, "gw-2", "00000000000000aa", 1, [[r]]))


def test_an_overdue_meter_shows_its_badge(plant: Plant, page: Any) -> None:
    publish_overdue_meter(plant, "tariff-meter")
    page.goto(f"{plant.url}#/e/{plant.enterprise}/g/gw-2/d/tariff-meter")
    badge = page.locator('h1 ~ p [data-verification="overdue"]')
    badge.wait_for(timeout=5_000)
    assert badge.inner_text() == "verification overdue"
    row = page.locator(f'tr[data-key="{plant.enterprise}/gw-2/tariff-meter/energy_import"]')
    assert CERT in row.inner_text()
    assert "± 1.000" in row.inner_text()  # U = k·u
    assert row.locator('[data-verification="overdue"]').count() == 1
    shot(page, "overdue-device")
    # the channel's certificate links to its traceability chain, resolved from the registry
    page.goto(f"{plant.url}#/e/{plant.enterprise}/g/gw-2/d/tariff-meter/c/energy_import")
    page.locator("[data-chain]").click()
    page.wait_for_url(f"{plant.url}chain/{CERT}")
    text = page.locator("main").inner_text()
    assert "Traceability of dmm-34465a-07" in text
    assert "nim-jvs-01" in text  # the national standard at the top of the chain
    shot(page, "chain")
    chain = page.request.get(f"{plant.url}api/chain/{CERT}").json()
    assert chain["instrument"] == "dmm-34465a-07"
    assert chain["chain"]["certificate"] == CERT
    page.goto(plant.url)
    counter = page.locator(f'[data-enterprise="{plant.enterprise}"] [data-count=overdue]')
    counter.wait_for(timeout=5_000)
    assert counter.inner_text() == "1 overdue"


def test_an_alarm_can_be_acknowledged_and_who_and_when_are_recorded(plant: Plant,
                                                                     page: Any) -> None:
    since = time.time_ns() - 60 * NS
    alarm = Alarm(AlarmKind.DRIFT, since, "drift 0.8 %/month against the check standard",
                  channel="power_total")
    plant.publish(alarms_topic(plant.enterprise, "gw-1", "furnace-1"),
                  encode_alarms(plant.enterprise, "gw-1", "furnace-1", since, [alarm],
                                [AlarmEvent("raised", since, alarm)]), retain=True)
    try:
        page.goto(f"{plant.url}#/alarms?kind=drift&enterprise={plant.enterprise}")
        button = page.locator(f'[data-ack-btn][data-dev="{plant.enterprise}/gw-1/furnace-1"]')
        button.wait_for(timeout=5_000)
        page.locator("#recent td", has_text="drift 0.8").first.wait_for(timeout=5_000)
        page.fill("#who", "Wang Fang")
        before = time.time_ns()
        button.click()
        acked = page.locator(f'tr[data-alarm="{plant.enterprise}/gw-1/furnace-1|drift:power_total"]'
                             ' [data-ack]')
        acked.wait_for(timeout=5_000)
        assert "Wang Fang" in acked.inner_text()
        shot(page, "alarms")
        with sqlite3.connect(plant.tmp / "dashboard.sqlite") as conn:
            rows = conn.execute("SELECT device, key, since_ns, who, at_ns FROM acks "
                                "WHERE enterprise = ?", (plant.enterprise,)).fetchall()
        assert len(rows) == 1
        device, key, since_ns, who, at_ns = rows[0]
        assert (device, key, since_ns, who) == ("furnace-1", "drift:power_total", since,
                                                "Wang Fang")
        assert before <= at_ns <= time.time_ns()
        # without a name, nothing is acknowledged: the API refuses
        alarm_id = f"{plant.enterprise}/gw-1/furnace-1|drift:power_total|{since}"
        resp = page.request.post(f"{plant.url}api/alarms/ack",
                                 data=orjson.dumps({"id": alarm_id, "who": " "}).decode(),
                                 headers={"Content-Type": "application/json"})
        assert resp.status == 400
        # a form or text/plain POST (what another site's page can send without a CORS
        # preflight) is refused whatever it says
        resp = page.request.post(f"{plant.url}api/alarms/ack", headers={
            "Content-Type": "text/plain"}, data=orjson.dumps(
                {"id": alarm_id, "who": "Mallory"}).decode())
        assert resp.status == 415
    finally:
        plant.publish(alarms_topic(plant.enterprise, "gw-1", "furnace-1"), b"", retain=True)


def expected_intervals(plant: Plant, device: str, edges: list[int]) -> list[float]:
    """Consumption per interval from the simulator's truth: the register as served at each
    poll instant (``truth()``), linearly interpolated to the interval boundaries."""
    history = HistorianHistory(str(plant.loaded.resolve("historian.sqlite")))
    stored = history.samples(Where(plant.enterprise, "gw-1", device, "energy_import",
                                   "active_energy"), edges[0] - 5 * NS, edges[-1] + 5 * NS)
    ts = np.array([s.ts_ns for s in stored], dtype=np.int64)
    truth = np.array([float(plant.fleet[device].truth("energy_import", int(t))) for t in ts])
    at = np.interp(np.array(edges, dtype=np.float64) - edges[0],
                   (ts - edges[0]).astype(np.float64), truth)
    return [float(b - a) for a, b in itertools.pairwise(at)]


def test_energy_page_shows_the_consumption_computed_from_the_simulators_truth(
        plant: Plant, page: Any) -> None:
    start = (time.time_ns() // NS + 1) * NS
    end = start + 3 * NS
    deadline = time.monotonic() + 15
    history = HistorianHistory(str(plant.loaded.resolve("historian.sqlite")))
    while True:  # until the historian holds samples after the last boundary
        last = history.samples(Where(plant.enterprise, "gw-1", "furnace-1", "energy_import",
                                     "active_energy"), end, end + 10 * NS)
        if len(last) >= 2:
            break
        assert time.monotonic() < deadline, "no samples after the range"
        time.sleep(0.2)
    page.goto(f"{plant.url}#/energy?step=1s&from={start}&to={end}")
    for device in ("incomer", "furnace-1"):
        key = f"{plant.enterprise}/gw-1/{device}/energy_import"
        rows = page.locator(f'[data-meter="{key}"] tr[data-interval-start]')
        rows.first.wait_for(state="attached", timeout=10_000)
        assert rows.count() == 3
        edges = [start + i * NS for i in range(4)]
        want = expected_intervals(plant, device, edges)
        assert all(w > 0 for w in want)  # the meters do consume
        for i, w in enumerate(want):
            row = rows.nth(i)
            assert int(row.get_attribute("data-interval-start")) == edges[i]
            assert row.get_attribute("data-status") == "measured"
            assert float(row.get_attribute("data-kwh")) == pytest.approx(w, rel=1e-9)
        completeness = page.locator(f'[data-meter="{key}"] [data-completeness]')
        assert float(completeness.get_attribute("data-completeness")) == 1.0
    shot(page, "energy")
