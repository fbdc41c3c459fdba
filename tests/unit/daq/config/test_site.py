"""Config errors name the file, the line and the field — never a traceback — and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daq.config import load_config
from daq.config.yamlsrc import SourceErrors

REPO = Path(__file__).resolve().parents[4]

GOOD = """\
enterprise:
  id: plant-1
gateways:
  - id: gw-1
    buses:
      - id: lan-1
        protocol: modbus-tcp
        host: 127.0.0.1
        port: 5020
        devices:
          - id: m1
            profile: sdm630
          - id: m2
            profile: dtsu666
            unit_id: 2
mqtt:
  username: daq
  password: ${DAQ_TEST_SECRET}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(text)
    return p


def errors_of(path: Path) -> list[str]:
    with pytest.raises(SourceErrors) as info:
        load_config(path)
    return [str(e) for e in info.value.errors]


def test_good_config_loads_with_profiles_and_secret(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAQ_TEST_SECRET", "s3cret")
    loaded = load_config(write(tmp_path, GOOD))
    assert [d.id for _, _, d in loaded.devices()] == ["m1", "m2"]
    assert set(loaded.profiles) == {"sdm630", "dtsu666"}
    m = loaded.config.mqtt
    assert loaded.secret(m.password, m.password_file) == "s3cret"
    assert "s3cret" not in repr(loaded.config)  # secrets never print


def test_missing_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAQ_TEST_SECRET", raising=False)
    p = write(tmp_path, GOOD)
    assert errors_of(p) == [
        f"{p}:18: mqtt.password: environment variable DAQ_TEST_SECRET is not set"]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("        port: 5020", "        port: [5020"))
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:10: YAML syntax error")


def test_unknown_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAQ_TEST_SECRET", "x")
    p = write(tmp_path, GOOD.replace("profile: dtsu666", "profile: dtsu999"))
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:14: gateways[0].buses[0].devices[1].profile: unknown profile "
                          "'dtsu999' (known: ")
    assert "sdm630" in err


def test_duplicate_device_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAQ_TEST_SECRET", "x")
    p = write(tmp_path, GOOD.replace("- id: m2", "- id: m1"))
    assert errors_of(p) == [
        f"{p}:13: gateways[0].buses[0].devices[1].id: duplicate device id 'm1' "
        "(first at line 11)"]


def test_every_error_is_reported_with_its_line(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAQ_TEST_SECRET", "x")
    text = GOOD.replace("        port: 5020", "        port: 99999\n        colour: red")
    text = text.replace("            unit_id: 2", "            unit_id: two")
    p = write(tmp_path, text)
    assert errors_of(p) == [
        f"{p}:9: gateways[0].buses[0].port: Input should be less than or equal to 65535",
        f"{p}:10: gateways[0].buses[0].colour: unknown field",
        f"{p}:16: gateways[0].buses[0].devices[1].unit_id: Input should be a valid integer, "
        "unable to parse string as an integer",
    ]


def test_storage_union_errors_point_at_the_field(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAQ_TEST_SECRET", "x")
    p = write(tmp_path, GOOD + "storage:\n  kind: influxdb_v1\n  databse: x\n")
    assert errors_of(p) == [f"{p}:21: storage.databse: unknown field"]


@pytest.mark.parametrize("case", ["syntax", "profile", "duplicate", "env"])
def test_cli_prints_one_line_per_error_and_exits_2(tmp_path: Path, case: str) -> None:
    text = {
        "syntax": GOOD.replace("  id: plant-1", "  id: [plant-1"),
        "profile": GOOD.replace("profile: sdm630", "profile: nope"),
        "duplicate": GOOD.replace("- id: m2", "- id: m1"),
        "env": GOOD,
    }[case]
    p = write(tmp_path, text)
    env = {"PATH": "/usr/bin:/bin"} if case == "env" else {"PATH": "/usr/bin:/bin",
                                                           "DAQ_TEST_SECRET": "x"}
    proc = subprocess.run([sys.executable, "-m", "daq.cli", "config", "check", str(p)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{p}:")
    assert "Traceback" not in proc.stderr


def test_cli_check_prints_planned_requests(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("${DAQ_TEST_SECRET}", "x"))
    proc = subprocess.run([sys.executable, "-m", "daq.cli", "config", "check", str(p)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "FC4 0x0000" in proc.stdout  # SDM630's coalesced input-register read
    assert "m2" in proc.stdout


DLT = """\
enterprise: {id: plant-1}
gateways:
  - id: gw-1
    buses:
      - id: rs485
        protocol: dlt645-tcp
        host: 127.0.0.1
        port: 8899
        devices:
          - id: revenue
            profile: dlt645-3p
            address: "558890213594"
"""


def test_dlt645_bus_loads(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, DLT))
    (_, bus, dev) = loaded.devices()[0]
    assert bus.protocol == "dlt645-tcp"
    assert loaded.profiles["dlt645-3p"].protocol == "dlt645"
    assert dev.id == "revenue"


def test_a_profile_of_the_wrong_protocol_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, DLT.replace("profile: dlt645-3p", "profile: sdm630"))
    assert errors_of(p) == [
        f"{p}:11: gateways[0].buses[0].devices[0].profile: profile 'sdm630' is for modbus, "
        "this bus speaks dlt645"]


def test_a_bad_meter_address_is_located(tmp_path: Path) -> None:
    p = write(tmp_path, DLT.replace('"558890213594"', '"55889021359X"'))
    (err,) = errors_of(p)
    assert err.startswith(f"{p}:12: gateways[0].buses[0].devices[0].address: String should "
                          "match pattern")


INSTRUMENTS = """\
enterprise: {id: lab}
gateways:
  - id: gw
    buses:
      - id: dmm-lan
        protocol: instrument
        host: 127.0.0.1
        port: 5025
        devices:
          - id: dmm
            profile: scpi-dmm-dcv
            instruments:
              dcv: dmm-34465a-07
              acv: dmm-34465a-07
"""


def test_instruments_name_existing_channels_and_need_a_registry(tmp_path: Path) -> None:
    path = write(tmp_path, INSTRUMENTS)
    errs = errors_of(path)
    assert f"{path}:12: gateways[0].buses[0].devices[0].instruments: `instruments` names " \
           "the calibration registry, but the config has no `calibration: {registry: …}` " \
           "section" in errs
    assert f"{path}:14: gateways[0].buses[0].devices[0].instruments.acv: profile " \
           "'scpi-dmm-dcv' has no channel 'acv' (channels: dcv)" in errs
    ok = write(tmp_path, INSTRUMENTS.replace("              acv: dmm-34465a-07\n", "")
               + "calibration: {registry: reg.sqlite, reload_s: 2}\n")
    loaded = load_config(ok)
    assert loaded.config.calibration is not None
    assert loaded.config.calibration.reload_s == 2
    (_, _, dev), = loaded.devices()
    assert dev.instruments == {"dcv": "dmm-34465a-07"}


def test_drift_checks_name_channels_of_the_gateway(tmp_path: Path) -> None:
    text = INSTRUMENTS.replace("            instruments:\n              dcv: dmm-34465a-07\n"
                               "              acv: dmm-34465a-07\n", "")
    text = text.replace("    buses:\n", "    drift_checks:\n"
                        "      - {channel: dmm/dcv, reference: other/dcv}\n"
                        "      - {channel: dmm/dcv, reference: dmm/dcv, sigma: 1.0}\n"
                        "    buses:\n", 1)
    path = write(tmp_path, text)
    errs = errors_of(path)
    assert any(":6: gateways[0].drift_checks[1]" in e and "both mean and sigma" in e
               for e in errs), errs
    second = "      - {channel: dmm/dcv, reference: dmm/dcv, sigma: 1.0}\n"
    ok = write(tmp_path, text.replace(second, ""))
    assert errors_of(ok) == [
        f"{ok}:5: gateways[0].drift_checks[0].reference: no channel 'other/dcv' on gateway 'gw'"]
