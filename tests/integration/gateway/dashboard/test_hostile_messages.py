"""The dashboard shows what anyone who can publish on the broker sends, so it must never run
it: markup in every field that reaches the page — device, channel, unit, description,
maker, model, reading values, reasons, alarm reason and details, certificate ids, the name
of who acknowledged — is refused at the intake (ids, names) or shown as text (free texts),
in every view and on the chain page; the page is served with a Content-Security-Policy that
forbids inline script; a payload speaking for another device than its topic's is refused;
live updates go on; and acknowledging needs the token.

Real Mosquitto (retained messages on a unique enterprise prefix, cleared afterwards), an
in-process dashboard on a free loopback port in a background event loop, a calibration
registry whose certificate and instrument ids are markup, and Debian's headless Chromium.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from calibration.records import load_records
from calibration.registry import Registry
from daq.alarms import ALARMS_SCHEMA
from daq.config import load_config
from daq.payload import DATA_SCHEMA, META_SCHEMA
from gateway.dashboard import Dashboard, DashboardOptions
from gateway.dashboard.security import CSP
from tests.integration.gateway.dashboard.background import Background
from tests.services import http

pytestmark = pytest.mark.services

NS = 1_000_000_000
TOKEN = "t0ken-for-the-test"


def xss(where: str) -> str:
    """Markup that runs script if inserted as HTML (in text or in an attribute) and names
    the field it came in, so a failure says which field was not escaped."""
    return f'"><img src=x onerror="window.__pwned=\'{where}\'">'


SCRIPT = "</script><script>window.__pwned='script-tag'</script>"
JS_URL = "javascript:window.__pwned='js-url'"
CERT = xss("cert-id")  # in the registry: the chain page shows it
INSTRUMENT = xss("instrument-id")


@dataclass
class Site:
    dash: Dashboard
    ent: str
    broker: Any
    retained: set[str]

    @property
    def url(self) -> str:
        return self.dash.url

    def publish(self, topic: str, doc: dict[str, Any] | bytes, *, retain: bool = False) -> None:
        payload = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
        finally:
            client.loop_stop()
            client.disconnect()
        if retain:
            self.retained.add(topic)

    def state(self) -> dict[str, Any]:
        return orjson.loads(http("GET", self.url + "api/state").data)  # type: ignore[no-any-return]


def registry_with_markup(tmp: Path) -> Path:
    """A registry whose instrument and certificate ids are markup; the certificate has
    expired, so the chain page lists a problem naming it too."""
    records = {
        "instruments": [{
            "id": INSTRUMENT, "maker": xss("instr-maker"), "model": "PJVS-10", "serial": "S-1",
            "quantity": "voltage", "unit": "V", "range": {"min": -10.0, "max": 10.0},
            "resolution": 1e-9, "accuracy": {"a_pct_reading": 1e-6, "b_pct_range": 0.0},
            "owner": "nim", "location": xss("location"), "role": "national_standard",
            "mandatory_verification": False}],
        "certificates": [{
            "id": CERT, "instrument": INSTRUMENT, "laboratory": xss("laboratory"),
            "accreditation": "CNAS", "calibration_date": "2024-01-15",
            "valid_until": "2025-01-15", "reference_certificates": [],
            "points": [{"nominal": 1.0, "reference": 1.0, "indicated": 1.0, "error": 0.0,
                        "U": 1e-8, "k": 2.0}],
            "model": {"kind": "gain_offset", "c0": 0.0, "c1": 0.0,
                      "covariance": [[1e-18, 0.0], [0.0, 1e-19]], "dof": 100,
                      "x_min": -10, "x_max": 10},
            "conformity": xss("conformity")}],
    }
    src = tmp / "records.json"
    src.write_text(json.dumps(records), encoding="utf-8")
    path = tmp / "registry.sqlite"
    with Registry(path) as reg:
        reg.import_records(load_records(src), "test", "hostile ids")
    return path


@pytest.fixture(scope="module")
def site(mqtt_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("hostile")
    ent = f"t{uuid.uuid4().hex[:10]}"
    cfg = tmp / "site.yaml"
    cfg.write_text(f"""
enterprise: {{id: {ent}}}
gateways: []
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
storage: {{kind: historian, path: historian.sqlite}}
""")
    bg = Background("dash")
    dash = Dashboard(load_config(cfg), DashboardOptions(
        port=0, topic=f"daq/{ent}/#", alarm_log=str(tmp / "dashboard.sqlite"), tz="UTC",
        registry=str(registry_with_markup(tmp)), token=TOKEN))
    bg.run(dash.start())
    s = Site(dash, ent, mqtt_broker, set())
    try:
        yield s
    finally:
        try:
            for topic in sorted(s.retained):  # clear what the test left retained
                s.publish(topic, b"")
        finally:
            bg.run(dash.stop())
            bg.close()


def meta(ent: str, dev: str, **fields: Any) -> dict[str, Any]:
    return {"schema": META_SCHEMA, "enterprise": ent, "gateway": "gw-1", "device": dev,
            "profile": xss("profile"), "maker": xss("maker"), "model": xss("model"),
            "interval_ms": 1000,
            "channels": [{"id": "voltage", "quantity": "voltage", "unit": xss("meta-unit"),
                          "description": xss("description"), "range": [0, 300],
                          "resolution": 0.1}], **fields}


def reading(channel: str, value: Any, **fields: Any) -> dict[str, Any]:
    return {"channel": channel, "quantity": "voltage", "unit": xss("unit"),
            "ts": time.time_ns(), "value": value, "quality": "good", **fields}


def data(ent: str, dev: str, readings: list[dict[str, Any]], seq: int = 1,
         gateway: str = "gw-1") -> dict[str, Any]:
    """A batch of one poll (the dashboard does not check signatures: storage does)."""
    return {"schema": DATA_SCHEMA, "enterprise": ent, "gateway": gateway,
            "epoch": "00000000000000aa", "seq": seq,
            "polls": [{"device": dev, "readings": readings}], "events": []}


def alarms(ent: str, dev: str, since: int) -> dict[str, Any]:
    alarm = {"kind": "drift", "channel": "voltage", "since": since, "severity": "warning",
             "reason": xss("alarm-reason"), "details": {"note": xss("alarm-details"),
                                                        "rate_per_day": 0.01}}
    return {"schema": ALARMS_SCHEMA, "enterprise": ent, "gateway": "gw-1", "device": dev,
            "ts": since, "alarms": [alarm], "events": [{"action": "raised", "ts": since,
                                                        **alarm}]}


@pytest.fixture(scope="module")
def hostile(site: Site) -> dict[str, Any]:
    """Publish the hostile messages once for the module; what the tests look for."""
    ent, since = site.ent, time.time_ns() - 60 * NS
    t = f"daq/{ent}/gw-1"
    site.publish(f"{t}/dev-1/meta", meta(ent, "dev-1"), retain=True)
    site.publish(f"{t}/dev-1/alarms", alarms(ent, "dev-1", since), retain=True)
    site.publish(f"{t}/data", data(ent, "dev-1", [
        reading("voltage", xss("value"), cert=CERT, reasons=["out_of_range"],
                quality="uncertain"),
        reading("current", 1.5, cert=JS_URL),
        reading("power", SCRIPT)]))
    refused = {
        # markup where only an id or a name may stand: refused at the intake
        "meta device": (f"{t}/dev-2/meta", orjson.dumps(meta(ent, xss("device")))),
        "data channel": (f"{t}/data", orjson.dumps(
            data(ent, "dev-3", [reading(xss("channel"), 1.0)]))),
        "data quantity": (f"{t}/data", orjson.dumps(
            data(ent, "dev-3", [{**reading("v", 1.0), "quantity": xss("quantity")}]))),
        "meta channel id": (f"{t}/dev-4/meta", orjson.dumps(
            meta(ent, "dev-4", channels=[{"id": xss("meta-channel"), "quantity": "voltage",
                                          "unit": "V", "description": "", "range": [0, 1],
                                          "resolution": None}]))),
        "meta range": (f"{t}/dev-4/meta", orjson.dumps(
            meta(ent, "dev-4", channels=[{"id": "v", "quantity": "voltage", "unit": "V",
                                          "description": "", "range": [xss("range"), 1],
                                          "resolution": None}]))),
        "meta too long": (f"{t}/dev-4/meta", orjson.dumps(meta(ent, "dev-4", maker="m" * 300))),
        "alarm kind": (f"{t}/dev-5/alarms", orjson.dumps(
            {**alarms(ent, "dev-5", since), "alarms": [
                {**alarms(ent, "dev-5", since)["alarms"][0], "kind": xss("alarm-kind")}]})),
        "device in the batch": (f"{t}/data", orjson.dumps(
            data(ent, xss("batch-device"), [reading("v", 1.0)]))),
        "reading reason": (f"{t}/data", orjson.dumps(
            data(ent, "dev-3", [reading("v", 1.0, reasons=[xss("reading-reason")],
                                        quality="uncertain")]))),
        "gateway status": (f"daq/{ent}/{xss('topic-gateway')}/status", b"online"),
        "status text": (f"{t}/status", xss("status").encode()),
        # a payload speaking for another gateway or device than its topic's
        "data identity": (f"daq/{ent}/gw-6/data", orjson.dumps(data(ent, "dev-1", [
            reading("voltage", 99.0)]))),
        "meta identity": (f"{t}/dev-6/meta", orjson.dumps(meta(ent, "dev-1", maker="forged"))),
        "alarms identity": (f"{t}/dev-6/alarms", orjson.dumps(alarms(ent, "dev-1", since))),
    }
    before = site.dash.feed.dropped
    for topic, payload in refused.values():
        site.publish(topic, payload, retain=True)
    deadline = time.monotonic() + 5
    while site.dash.feed.dropped - before < len(refused):
        assert time.monotonic() < deadline, (
            f"only {site.dash.feed.dropped - before} of {len(refused)} refused")
        time.sleep(0.05)
    return {"since": since, "refused": refused}


def not_pwned(page: Any) -> None:
    """No script ran, and no markup of a message became an element: the policy blocks inline
    handlers anyway, so the absence of such elements is what shows the escaping works."""
    page.wait_for_timeout(300)  # let any injected <img> fail to load and fire its onerror
    assert page.evaluate("window.__pwned") is None
    injected = page.evaluate("""[...document.querySelectorAll(
        '[onerror], [onload], [onmouseover], script:not([src]), img[src=x]')]
        .map(e => e.outerHTML)""")
    assert injected == []
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")], hrefs


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    pg = context.new_page()
    pg.violations = []  # CSP violations the page itself causes (there must be none)
    pg.on("console", lambda m: "Content Security Policy" in m.text and pg.violations.append(
        m.text))
    try:
        yield pg
    finally:
        context.close()


def test_markup_in_every_field_is_shown_as_text_and_never_run(
        site: Site, hostile: dict[str, Any], page: Any) -> None:
    ent = site.ent
    resp = page.goto(site.url)
    assert resp.headers["content-security-policy"] == CSP
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    page.locator(f'[data-enterprise="{ent}"]').wait_for(timeout=10_000)
    not_pwned(page)

    page.goto(f"{site.url}#/e/{ent}")
    group = page.locator(f'[data-device="{ent}/gw-1/dev-1"]')
    group.wait_for(timeout=5_000)
    assert group.locator("[data-maker-model]").inner_text() == f"{xss('maker')} {xss('model')}"
    not_pwned(page)

    # the device drill-down: meta, readings, the active alarm with its details
    page.goto(f"{site.url}#/e/{ent}/g/gw-1/d/dev-1")
    alarm = page.locator('li[data-alarm-key="drift:voltage"]')  # in this view only
    alarm.wait_for(timeout=5_000)
    row = page.locator(f'tr[data-key="{ent}/gw-1/dev-1/voltage"]')
    assert row.locator('[data-f="v"]').inner_text() == xss("value")
    assert xss("unit") in row.inner_text()
    assert row.locator("[data-cert]").inner_text() == CERT
    assert "out_of_range" in row.locator('[data-f="q"]').inner_text()  # reasons: codes only
    assert row.locator("a").get_attribute("title") == xss("description")
    script_row = page.locator(f'tr[data-key="{ent}/gw-1/dev-1/power"]')
    assert script_row.locator('[data-f="v"]').inner_text() == SCRIPT
    assert alarm.locator("[data-reason]").inner_text() == xss("alarm-reason")
    assert xss("alarm-details") in alarm.locator("[data-details]").inner_text()
    assert f"profile {xss('profile')}" in page.locator("h1 + p").inner_text()
    not_pwned(page)

    # the channel view: description, certificate and the link to its chain
    page.goto(f"{site.url}#/e/{ent}/g/gw-1/d/dev-1/c/voltage")
    page.locator("[data-description]").wait_for(timeout=5_000)
    assert page.locator("[data-description]").inner_text() == xss("description")
    not_pwned(page)
    page.goto(f"{site.url}#/e/{ent}/g/gw-1/d/dev-1/c/current")  # javascript: as cert id
    page.locator("[data-cert]", has_text="javascript:").wait_for(timeout=5_000)
    assert page.locator("[data-chain]").get_attribute("href") == f"/chain/{quote(JS_URL, safe='')}"
    not_pwned(page)

    # alarms: active (the reason, the details) and recent (from the alarm log)
    page.goto(f"{site.url}#/alarms?enterprise={ent}")
    active = page.locator(f'tr[data-alarm="{ent}/gw-1/dev-1|drift:voltage"]')
    active.wait_for(timeout=5_000)
    assert xss("alarm-reason") in active.locator("[data-reason]").inner_text()
    page.locator("#recent [data-reason]", has_text="alarm-reason").first.wait_for(timeout=5_000)
    not_pwned(page)
    # acknowledged by a "name" that is markup, with the token: shown as text everywhere
    page.fill("#who", xss("who"))
    page.fill("#token", TOKEN)
    active.locator("[data-ack-btn]").click()
    active.locator("[data-ack]").wait_for(timeout=5_000)
    assert xss("who") in active.locator("[data-ack]").inner_text()
    not_pwned(page)
    page.goto(f"{site.url}#/e/{ent}/g/gw-1/d/dev-1")
    page.locator('li[data-alarm-key="drift:voltage"]', has_text="acknowledged by").wait_for(
        timeout=5_000)
    not_pwned(page)

    page.goto(f"{site.url}#/energy")
    page.locator("#energy .cards, #energy .error").first.wait_for(timeout=10_000)
    not_pwned(page)

    # the chain page, reached by the channel view's link: ids shown as text, the JSON link
    # URL-encoded, the same headers
    page.goto(f"{site.url}#/e/{ent}/g/gw-1/d/dev-1/c/voltage")
    with page.expect_response(lambda r: "/chain/" in r.url) as chain_resp:
        page.locator("[data-chain]").click()
    headers = chain_resp.value.headers
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    page.locator("h1").wait_for(timeout=5_000)
    assert page.locator("h1").inner_text() == f"Traceability of {INSTRUMENT}"
    assert page.locator("[data-cert]").inner_text() == CERT
    assert page.locator("[data-json]").get_attribute("href") == f"/api/chain/{quote(CERT, safe='')}"
    assert "chain broken" in page.locator("main").inner_text()  # the expired certificate
    not_pwned(page)
    assert page.evaluate("document.scripts.length") == 0

    # the page itself needs nothing the policy forbids
    assert page.violations == []
    # and the policy is what stops markup that would reach the parser anyway: an inline
    # handler injected by hand does not run
    page.goto(f"{site.url}#/")
    page.locator(f'[data-enterprise="{ent}"]').wait_for(timeout=5_000)
    page.evaluate("""document.body.insertAdjacentHTML("beforeend",
                     '<img src=x onerror="window.__csp_bypassed=1">')""")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__csp_bypassed") is None
    assert page.violations, "the injected handler should be reported as blocked"


def test_refused_messages_reach_no_view_and_live_updates_go_on(
        site: Site, hostile: dict[str, Any], page: Any) -> None:
    ent = site.ent
    state = site.state()
    devices = {d["key"]: d for d in state["devices"]}
    # only the device whose messages were well formed; nothing of the refused ones
    assert set(devices) == {f"{ent}/gw-1/dev-1"}, sorted(devices)
    assert devices[f"{ent}/gw-1/dev-1"]["maker"] == xss("maker")  # not "forged"
    assert {c["key"] for c in state["channels"]} == {
        f"{ent}/gw-1/dev-1/{ch}" for ch in ("voltage", "current", "power")}
    voltage = next(c for c in state["channels"] if c["channel"] == "voltage")
    assert voltage["value"] == xss("value")  # not the forged 99.0 sent on dev-6's topic
    assert state["gateways"] == []
    assert all(loop.restarts == 0 for loop in site.dash.loops)

    page.goto(f"{site.url}#/e/{ent}/g/gw-1/d/dev-1")
    cell = page.locator(f'tr[data-key="{ent}/gw-1/dev-1/current"] [data-f="v"]')
    cell.wait_for(timeout=5_000)
    site.publish(f"daq/{ent}/gw-1/data", data(ent, "dev-1", [
        reading("current", 4242.5)], seq=2))
    page.wait_for_function("el => el.textContent === '4,242.5'", arg=cell.element_handle(),
                           timeout=5_000)
    not_pwned(page)


def test_acknowledging_without_the_token_is_refused(site: Site,
                                                     hostile: dict[str, Any]) -> None:
    ent, since = site.ent, hostile["since"]
    # a fresh alarm instance on another channel, so this test does not depend on the other
    alarm = {**alarms(ent, "dev-1", since)["alarms"][0], "channel": "current",
             "reason": "drift"}
    site.publish(f"daq/{ent}/gw-1/dev-1/alarms", {
        **alarms(ent, "dev-1", since), "alarms": [alarm], "events": []}, retain=True)
    alarm_id = f"{ent}/gw-1/dev-1|drift:current|{since}"
    deadline = time.monotonic() + 5
    while not any(a["id"] == alarm_id for d in site.state()["devices"] for a in d["alarms"]):
        assert time.monotonic() < deadline, "the alarm did not arrive"
        time.sleep(0.05)
    body = orjson.dumps({"id": alarm_id, "who": "Mallory"})
    json_type = {"Content-Type": "application/json"}
    assert http("POST", site.url + "api/alarms/ack", body=body, headers=json_type).status == 403
    assert http("POST", site.url + "api/alarms/ack", body=body,
                headers={**json_type, "X-Daq-Token": TOKEN + "x"}).status == 403
    resp = http("POST", site.url + "api/alarms/ack", body=body,
                headers={**json_type, "X-Daq-Token": TOKEN})
    assert resp.status == 200, resp.data
    assert orjson.loads(resp.data)["who"] == "Mallory"
