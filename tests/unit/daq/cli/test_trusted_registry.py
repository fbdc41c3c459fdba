"""Commands and the dashboard use a registry only once its audit log passes its check: a
record changed behind the registry's back makes them refuse (exit 1, HTTP 409), as
``daq trace`` and the gateway's calibration stage do."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from gateway.dashboard.chain_view import ChainView

REPO = Path(__file__).resolve().parents[4]
DMM, DMM_CERT = "dmm-34465a-07", "LAB-2024-0815"  # in config/calibration/example-records.yaml


@pytest.fixture
def tampered(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    db = tmp_path / "r.sqlite"
    env = {**os.environ, "DAQ_REGISTRY": str(db), "DAQ_USER": "test"}
    imported = subprocess.run(
        [sys.executable, "-m", "daq.cli", "cert", "import",
         "config/calibration/example-records.yaml"],
        capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert imported.returncode == 0, imported.stderr
    with sqlite3.connect(db) as conn:  # the expired certificate made valid for two more years
        conn.execute("UPDATE certificates SET json = replace(json, '2025-06-10', '2027-06-10')"
                     " WHERE id = ?", (DMM_CERT,))
    conn.close()
    return db, env


@pytest.mark.parametrize("args", [("verify", "status"), ("drift", DMM)])
def test_commands_refuse_a_tampered_registry(tampered: tuple[Path, dict[str, str]],
                                             args: tuple[str, ...]) -> None:
    _, env = tampered
    out = subprocess.run([sys.executable, "-m", "daq.cli", *args], capture_output=True,
                         text=True, env=env, cwd=REPO, check=False)
    assert out.returncode == 1
    assert "the audit log fails its check" in out.stderr
    assert "not trusted" in out.stderr


def test_the_dashboard_shows_no_chain_from_a_tampered_registry(
        tampered: tuple[Path, dict[str, str]]) -> None:
    db, _ = tampered
    view = ChainView(str(db), "UTC")
    with pytest.raises(web.HTTPConflict):
        view.chain(DMM_CERT)
