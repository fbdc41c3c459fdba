"""``daq verify status`` and ``daq drift`` through click's runner, on a real registry file
(imported with ``daq cert import``) and on records files in tmp_path."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from daq.cli import main
from simulators.drift import certificate_history

REPO = Path(__file__).resolve().parents[4]
ENERGY = REPO / "config" / "calibration" / "example-energy-meters.yaml"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.sqlite"
    res = CliRunner().invoke(main, ["cert", "import", str(ENERGY), "--registry", str(path)],
                             env={"DAQ_USER": "tester"})
    assert res.exit_code == 0, res.output
    return path


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def test_status_table(registry: Path) -> None:
    code, out = run("verify", "status", "--registry", str(registry), "--at", "2026-03-10")
    assert code == 1  # a meter past its service life and one never verified
    names = ("gas-boiler-01", "meter-boundary-01", "steam-main-01", "water-dn20-canteen")
    assert sorted(names, key=out.index) == ["water-dn20-canteen", "steam-main-01",
                                            "meter-boundary-01", "gas-boiler-01"]
    assert "service_life_ended" in out
    assert "Per enterprise" in out
    # valid share by energy-flow weight: (12000 + 800) / (12000 + 5 + 800 + 3000)
    assert f"{12800 / 15805:.1%}" in out


def test_status_json_and_csv(registry: Path) -> None:
    code, out = run("verify", "status", "--registry", str(registry), "--at", "2024-01-01",
                    "--format", "json", "--enterprise", "demo-plant")
    data = json.loads(out)
    states = {r["instrument"]: r["state"] for r in data["instruments"]}
    assert states == {"water-dn20-canteen": "valid", "steam-main-01": "never_verified",
                      "meter-boundary-01": "never_verified", "gas-boiler-01": "valid"}
    assert code == 1
    assert data["enterprises"][0]["counts"]["never_verified"] == 2
    assert data["findings"]  # the gas and water meters are at levels without a 2006 table
    code, out = run("verify", "status", "--registry", str(registry), "--at", "2026-03-10",
                    "--format", "csv")
    header, first, *_ = out.splitlines()
    assert header.startswith("instrument,enterprise,state,")
    assert first.startswith("water-dn20-canteen,demo-plant,service_life_ended,")


def test_status_exit_0_when_all_valid(tmp_path: Path) -> None:
    data = yaml.safe_load(ENERGY.read_text(encoding="utf-8"))
    data["instruments"] = [i for i in data["instruments"]
                           if i["id"] in ("meter-boundary-01", "gas-boiler-01")]
    data["verifications"] = [v for v in data["verifications"]
                             if v["instrument"] in ("meter-boundary-01", "gas-boiler-01")]
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out = run("verify", "status", "--registry", str(path), "--at", "2026-03-10")
    assert code == 0, out
    assert "100.0%" in out


def test_status_bad_input(tmp_path: Path, registry: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("instruments:\n  - id: x\n", encoding="utf-8")
    code, out = run("verify", "status", "--registry", str(bad))
    assert code == 2
    assert f"{bad}:2: instruments[0]" in out
    code, out = run("verify", "status", "--registry", str(registry), "--enterprise", "nope")
    assert code == 2
    code, _ = run("verify", "status", "--registry", str(tmp_path / "missing.sqlite"))
    assert code == 2


@pytest.fixture
def drifting(tmp_path: Path) -> Path:
    """A 10 V DMM drifting +2 mV per 30 days, calibrated every 60 days, in a registry."""
    inst = {"id": "dvm", "maker": "m", "model": "x", "serial": "1", "quantity": "voltage",
            "unit": "V", "range": {"min": -10.0, "max": 10.0}, "resolution": 1.0e-6,
            "accuracy": {"a_pct_reading": 0.2, "b_pct_range": 0.1}, "owner": "lab",
            "location": "bench", "role": "working", "mandatory_verification": False}
    ref = {**inst, "id": "std", "role": "national_standard"}
    ref_cert = {"id": "REF-1", "instrument": "std", "laboratory": "NIM",
                "accreditation": "CIPM MRA", "calibration_date": dt.date(2023, 1, 1),
                "valid_until": dt.date(2030, 1, 1), "reference_certificates": [],
                "points": [{"nominal": 10.0, "reference": 10.0, "indicated": 10.0,
                            "error": 0.0, "U": 1.0e-6, "k": 2.0}],
                "model": {"kind": "offset", "c0": 0.0, "u_c0": 0.0}, "conformity": "ok"}
    certs = certificate_history("dvm", dt.date(2024, 1, 1), 60, 6, [0.0, 5.0, 10.0],
                                [0.0, 0.001 / 30, 0.002 / 30], sigma=0.0003, U=0.0006)
    records = tmp_path / "dvm.yaml"
    records.write_text(yaml.safe_dump({"instruments": [ref, inst],
                                       "certificates": [ref_cert, *certs]}), encoding="utf-8")
    path = tmp_path / "lab.sqlite"
    res = CliRunner().invoke(main, ["cert", "import", str(records), "--registry", str(path)],
                             env={"DAQ_USER": "tester"})
    assert res.exit_code == 0, res.output
    return path


def test_drift_text_and_plot(drifting: Path, tmp_path: Path) -> None:
    png = tmp_path / "dvm.png"
    code, out = run("drift", "dvm", "--registry", str(drifting), "--plot", str(png))
    assert code == 0, out
    assert "point 10 V (MPE ±0.03 V)" in out
    assert "model: linear" in out
    assert "predicted out of tolerance: 2025-03-" in out
    assert "recommended interval:" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 20_000 < len(data) < 2_000_000
    # IHDR: width and height of an 8 × 9 inch figure at 100 dpi
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (
        800, 900)


def test_drift_json(drifting: Path) -> None:
    code, out = run("drift", "dvm", "--registry", str(drifting), "--json")
    assert code == 0
    data = json.loads(out)
    assert [p["nominal"] for p in data["points"]] == [0.0, 5.0, 10.0]
    p10 = data["points"][2]
    assert p10["rate_per_day"] * 30 == pytest.approx(0.002, rel=0.05)
    assert data["predicted_oot"].startswith("2025-03-")
    assert data["recommended_days"] == data["drift_based"]["days"]


def test_drift_errors(drifting: Path) -> None:
    code, out = run("drift", "nope", "--registry", str(drifting))
    assert (code, "no instrument 'nope'" in out) == (2, True)
    code, out = run("drift", "std", "--registry", str(drifting))
    assert code == 1
    assert "at least 2" in out
