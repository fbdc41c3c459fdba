"""`daq evidence verify`: a site's stored readings checked against the signed messages its
ingest kept — all as signed after a real run; a reading changed in storage, or a kept message
changed, is found and the command exits 1."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from daq.config import load_config
from simulators.fleet import MeterFleet, MeterSpec
from tests.integration.pathrun import running, wait_for

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[3]


def verify(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daq.cli", "evidence", "verify", str(site)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


async def test_evidence_matches_storage_and_catches_changes(tmp_path: Path,
                                                            mqtt_broker: Any) -> None:
    ent = f"ev{uuid.uuid4().hex[:8]}"
    async with MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
        site = tmp_path / "site.yaml"
        site.write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: gw-1
    outbox: outbox.sqlite
    buses:
      - {{id: b, protocol: modbus-tcp, host: 127.0.0.1, port: {fleet["m"].port},
         devices: [{{id: m, profile: sdm630, interval_ms: 200}}]}}
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
ingest: {{subscription: "daq/{ent}/#", spool: spool.sqlite, dead_letter: dead.sqlite,
          evidence: all, evidence_store: evidence.sqlite, batch_interval_ms: 50}}
storage: {{kind: historian, path: hist.sqlite}}
""")
        loaded = load_config(site)
        async with running(loaded) as (gw, _ingest):
            await wait_for(lambda: gw.coordinators[0].state.polls >= 5, 20, "no polls")
    out = verify(site)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "with a valid signature of a pinned key" in out.stdout
    compared = int(out.stdout.split(" readings compared")[0].rsplit(" ", 1)[-1])
    assert compared >= 5 * 10  # five polls of an SDM630's numeric channels at least

    # a value changed in storage behind the ingest's back
    with sqlite3.connect(tmp_path / "hist.sqlite") as conn:
        conn.execute("UPDATE readings SET value = value + 1 WHERE channel = 'voltage_l1' AND "
                     "ts_ns = (SELECT MIN(ts_ns) FROM readings WHERE channel = 'voltage_l1')")
    conn.close()
    out = verify(site)
    assert out.returncode == 1
    assert "storage holds" in out.stdout

    # a kept message changed (its signature no longer matches)
    with sqlite3.connect(tmp_path / "evidence.sqlite") as conn:
        (seq, payload), = conn.execute("SELECT seq, payload FROM evidence LIMIT 1").fetchall()
        conn.execute("UPDATE evidence SET payload = ? WHERE seq = ?",
                     (bytes(payload).replace(b'"quality":"good"', b'"quality":"bad!"', 1), seq))
    conn.close()
    out = verify(site)
    assert out.returncode == 1
    assert "does not match the message" in out.stdout
