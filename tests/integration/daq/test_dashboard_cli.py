"""``daq dashboard CONFIG`` as an operator runs it: it prints its URL, serves the page and its
assets itself (nothing external), refuses writes without the token, and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.services import http

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[3]
STATIC = REPO / "gateway" / "dashboard" / "static"
# what would make the page depend on the internet
EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""")


def run(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from daq.cli import main; main()", *args],
                            cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def url_line(proc: subprocess.Popen[str]) -> str:
    """The line announcing the URL; the log lines before it (the service's first says its
    version) are passed over."""
    assert proc.stdout is not None
    log = re.compile(r"^\d{4}-\d\d-\d\dT\S+ [A-Z]+ ")
    line = proc.stdout.readline()
    while log.match(line):
        line = proc.stdout.readline()
    return line


def test_assets_reference_nothing_outside_the_dashboard() -> None:
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "app.css"}
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert not EXTERNAL.search(text), f"{f.name}: {EXTERNAL.search(text)}"
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    assert "EventSource(\"/api/events\")" in js  # live values are pushed, not polled


def test_assets_have_no_inline_script_and_one_place_that_writes_markup() -> None:
    """What the Content-Security-Policy requires (no inline script or handlers), and what
    keeps message fields from reaching the HTML parser unescaped: innerHTML is assigned in
    setHtml() only, which takes h`…` templates only; no other way to parse markup is used."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/app.js" defer>']
    assert not re.search(r"\son[a-z]+\s*=", page)  # no onclick=, onload= …
    assert "javascript:" not in page
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    assert re.findall(r"\.innerHTML\s*\+?=(?!=)", js) == [".innerHTML ="]
    assert "el.innerHTML = html.text;" in js
    for sink in ("insertAdjacentHTML", "outerHTML", "document.write", "eval(", "new Function",
                 "setTimeout(\"", "srcdoc"):
        assert sink not in js, sink


def test_dashboard_command_serves_and_stops_on_ctrl_c(tmp_path: Path, mqtt_broker: Any) -> None:
    ent = f"t{uuid.uuid4().hex[:10]}"
    cfg = tmp_path / "site.yaml"
    cfg.write_text(f"""
enterprise: {{id: {ent}}}
gateways: [{{id: gw-1, buses: []}}]
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
storage: {{kind: historian, path: historian.sqlite}}
""")
    proc = run(["dashboard", str(cfg), "--port", "0", "--topic", f"daq/{ent}/#"],
               {"DAQ_DASHBOARD_TOKEN": "s3cret"})
    try:
        assert proc.stdout is not None
        line = url_line(proc)
        m = re.search(r"daq dashboard on (http://127\.0\.0\.1:\d+/)", line)
        assert m, line + (proc.stdout.read() if proc.poll() is not None else "")
        url = m.group(1)
        page = http("GET", url)
        assert page.status == 200
        assert b'<script src="/static/app.js"' in page.data
        assert http("GET", url + "static/app.js").status == 200
        state = orjson.loads(http("GET", url + "api/state").data)
        assert state["channels"] == []
        assert state["token_required"] is True
        ack = {"id": f"{ent}/gw-1/d|drift|1", "who": "Zhang San"}
        resp = http("POST", url + "api/alarms/ack", body=orjson.dumps(ack),
                    headers={"Content-Type": "application/json"})
        assert resp.status == 403  # no token
        resp = http("POST", url + "api/alarms/ack", body=orjson.dumps(ack),
                    headers={"Content-Type": "application/json", "X-Daq-Token": "s3cret"})
        assert resp.status == 404  # the token passes; there is no such active alarm
        assert (tmp_path / "var" / "dashboard.sqlite").exists()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def site(tmp_path: Path, broker: Any) -> tuple[str, Path]:
    ent = f"t{uuid.uuid4().hex[:10]}"
    cfg = tmp_path / "site.yaml"
    cfg.write_text(f"""
enterprise: {{id: {ent}}}
gateways: []
mqtt: {{host: {broker.host}, port: {broker.port}}}
storage: {{kind: historian, path: historian.sqlite}}
""")
    return ent, cfg


def test_off_loopback_without_a_token_it_refuses_to_start(tmp_path: Path,
                                                          mqtt_broker: Any) -> None:
    _, cfg = site(tmp_path, mqtt_broker)
    env = {"DAQ_DASHBOARD_TOKEN": "", "DAQ_DASHBOARD_TOKEN_FILE": ""}
    proc = run(["dashboard", str(cfg), "--host", "0.0.0.0", "--port", "0"], env)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 2, out
    assert "reachable from other computers" in out
    assert "--token-file" in out
    assert "--read-only" in out
    assert "daq dashboard on" not in out  # it never served
    assert "Traceback" not in out
    assert not (tmp_path / "var").exists()  # nothing opened either


def test_the_token_file_may_come_from_the_environment(tmp_path: Path,
                                                      mqtt_broker: Any) -> None:
    ent, cfg = site(tmp_path, mqtt_broker)
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    proc = run(["dashboard", str(cfg), "--port", "0", "--topic", f"daq/{ent}/#"],
               {"DAQ_DASHBOARD_TOKEN_FILE": str(token), "DAQ_DASHBOARD_TOKEN": ""})
    try:
        assert proc.stdout is not None
        line = url_line(proc)
        m = re.search(r"daq dashboard on (http://127\.0\.0\.1:\d+/)", line)
        assert m, line + (proc.stdout.read() if proc.poll() is not None else "")
        url = m.group(1)
        page = http("GET", url)
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert orjson.loads(http("GET", url + "api/state").data)["token_required"] is True
        ack = orjson.dumps({"id": f"{ent}/gw-1/d|drift|1", "who": "Zhang San"})
        json_type = {"Content-Type": "application/json"}
        assert http("POST", url + "api/alarms/ack", body=ack, headers=json_type).status == 403
        assert http("POST", url + "api/alarms/ack", body=ack, headers={
            **json_type, "X-Daq-Token": "from-a-file"}).status == 404  # token passes
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out


def test_a_read_only_dashboard_refuses_every_acknowledgement(tmp_path: Path,
                                                             mqtt_broker: Any) -> None:
    ent, cfg = site(tmp_path, mqtt_broker)
    proc = run(["dashboard", str(cfg), "--port", "0", "--topic", f"daq/{ent}/#", "--read-only"],
               {"DAQ_DASHBOARD_TOKEN": "s3cret"})
    try:
        assert proc.stdout is not None
        line = url_line(proc)
        m = re.search(r"daq dashboard on (http://127\.0\.0\.1:\d+/)", line)
        assert m, line + (proc.stdout.read() if proc.poll() is not None else "")
        url = m.group(1)
        assert orjson.loads(http("GET", url + "api/state").data)["read_only"] is True
        resp = http("POST", url + "api/alarms/ack", headers={
            "Content-Type": "application/json", "X-Daq-Token": "s3cret"},
            body=orjson.dumps({"id": f"{ent}/gw-1/d|drift|1", "who": "Zhang San"}))
        assert resp.status == 403  # even with the token
        assert b"read-only" in resp.data
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out


def test_bad_config_is_refused_with_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text("enterprise: {id: x}\ngateways: []\nmqtt: {port: 0}\n")
    proc = run(["dashboard", str(cfg)], {})
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert f"{cfg}:3: mqtt.port:" in out
