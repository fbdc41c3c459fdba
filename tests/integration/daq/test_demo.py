"""`daq demo` as a user runs it: it exits by itself, or on Ctrl-C, cleanly and having stored
every reading it acquired."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[3]
SUMMARY = re.compile(r"demo finished: (\d+) readings acquired, (\d+) stored")


def demo(tmp_path: Path, broker: Any, *args: str,
         dashboard_port: int = 0) -> subprocess.Popen[str]:
    env = {**os.environ, "DAQ_VAR": str(tmp_path), "DAQ_MQTT_PORT": str(broker.port),
           "COLUMNS": "200", "DAQ_DASHBOARD_PORT": str(dashboard_port),
           # its own enterprise id: another demo on the shared broker must not count here
           "DAQ_DEMO_ENTERPRISE": f"t{uuid.uuid4().hex[:10]}"}
    return subprocess.Popen([sys.executable, "-m", "daq.cli", "demo", "--plain", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def check_summary(out: str) -> None:
    assert "Traceback" not in out, out
    m = SUMMARY.search(out.replace("\n", " "))
    assert m, out
    acquired, stored = int(m.group(1)), int(m.group(2))
    assert acquired > 0
    assert stored == acquired


def test_demo_with_duration_exits_by_itself(tmp_path: Path, mqtt_broker: Any) -> None:
    with socket.socket() as taken:  # the dashboard's port is taken: it picks a free one
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        proc = demo(tmp_path, mqtt_broker, "--duration", "3", dashboard_port=busy)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    m = re.search(r"dashboard on http://127\.0\.0\.1:(\d+)/", out)
    assert m, out
    assert int(m.group(1)) != busy
    check_summary(out)
    assert "incomer" in out
    assert "furnace-1" in out
    assert "grid-revenue" in out  # the DL/T 645 meter on a pseudo-terminal
    assert "bench-dmm" in out  # the SCPI multimeter
    # the calibrated DMM's readings are corrected onto the truth (5 V) within their U; the
    # revenue meter's overdue verification is on every one of its readings
    from gateway.storage.historian import HistorianStorage

    with HistorianStorage(tmp_path / "historian.sqlite") as hist:
        dmm = hist.series("bench-dmm", "dcv")
        assert dmm
        assert all(r.cert == "LAB-demo-dmm-01" for r in dmm)
        # U covers ≈95 % of single readings: judge their mean, not each one
        mean = sum(r.value for r in dmm) / len(dmm)  # type: ignore[misc]
        assert abs(mean - 5.0) <= sum(r.U for r in dmm) / len(dmm)  # type: ignore[misc]
        assert all(abs(r.raw - 5.0) > r.U for r in dmm)  # type: ignore[operator]
        revenue = hist.series("grid-revenue", "energy_import")
        assert revenue
        assert all(r.verification == "overdue" for r in revenue)


def test_ctrl_c_stops_everything_cleanly(tmp_path: Path, mqtt_broker: Any) -> None:
    proc = demo(tmp_path, mqtt_broker, "--no-dashboard")
    time.sleep(4)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    check_summary(out)
    assert "dashboard on" not in out
    # no process of the demo's session is left behind
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_demo_starts_a_private_broker_when_none_answers(tmp_path: Path) -> None:
    from simulators.broker import Broker, find_mosquitto, free_port

    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: run .ci/install-deps")
    proc = demo(tmp_path, Broker("127.0.0.1", free_port(), private=False), "--duration", "2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "private Mosquitto" in out
    check_summary(out)
