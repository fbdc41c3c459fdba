"""`daq read`: one poll of one device, as a table or JSON, against a real simulator."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from simulators.fleet import MeterFleet, MeterSpec

REPO = Path(__file__).resolve().parents[3]


def site(tmp_path: Path, port: int) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(f"""
enterprise: {{id: plant}}
gateways:
  - id: gw
    buses:
      - id: lan
        protocol: modbus-tcp
        host: 127.0.0.1
        port: {port}
        timeout_ms: 300
        devices:
          - {{id: m1, profile: dtsu666}}
""")
    return p


async def daq(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daq.cli", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_read_prints_every_channel_with_its_true_value(tmp_path: Path) -> None:
    async with MeterFleet([MeterSpec("dtsu666", name="m")]) as fleet:
        sim = fleet["m"]
        code, out, err = await daq("read", str(site(tmp_path, sim.port)), "--device", "m1",
                                   "--json")
        assert code == 0, err
        rows = json.loads(out)
        assert {r["channel"] for r in rows} == {ch.id for ch in sim.profile.channels}
        for r in rows:
            assert r["quality"] == "good"
            assert r["value"] == sim.truth(r["channel"], r["ts"])
        code, out, _ = await daq("read", str(site(tmp_path, sim.port)), "--device", "m1")
        assert code == 0
        assert "voltage_l1" in out
        assert "energy_import" in out


async def test_read_of_a_silent_device_says_why_and_exits_1(tmp_path: Path) -> None:
    async with MeterFleet([MeterSpec("dtsu666", name="m")]) as fleet:
        fleet["m"].faults.silent = True
        code, out, err = await daq("read", str(site(tmp_path, fleet["m"].port)), "--device",
                                   "m1", "--json")
        assert code == 1, err
        assert {r["reason"] for r in json.loads(out)} == {"timeout"}
        assert "Traceback" not in err
        code, _, err = await daq("read", str(site(tmp_path, fleet["m"].port)), "--device", "nope")
        assert code == 2
