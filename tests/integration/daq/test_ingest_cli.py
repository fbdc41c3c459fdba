"""`daq ingest` as a service manager runs it: when its writer cannot go on, the process exits
non-zero (so it is restarted) and says why, instead of staying up and acknowledging nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.services


def test_an_ingest_whose_writer_fails_exits_non_zero(tmp_path: Path, mqtt_broker: Any) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the dead-letter folder should be\n")
    site = tmp_path / "site.yaml"
    site.write_text(f"""
enterprise: {{id: ingest-cli}}
gateways: [{{id: gw-1, buses: []}}]
mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}}}
ingest: {{spool: spool.sqlite, dead_letter: not-a-dir/dead.sqlite}}
storage: {{kind: historian, path: hist.sqlite}}
""")
    out = subprocess.run([sys.executable, "-m", "daq.cli", "ingest", str(site)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    assert "ingest failed" in out.stderr
    assert "not-a-dir" in out.stderr
