"""Where an installation's files are: built-in data inside the package (read only), the data
directory for state, and the sites' own profiles, procedures and periods over the built-ins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import daq
from calibration.legal import load_periods
from calibration.procedure import find_procedure
from daq.config.profiles import BUILTIN_PROFILE_DIR, load_profile, profile_dirs
from daq.paths import SYSTEM_DATA_DIR, builtin_data, data_dir, state_path

BUILTIN = ["demo.yaml", "energy-coefficients.yaml", "gb17167-classes.yaml",
           "verification-periods.yaml", "profiles/sdm630.yaml", "procedures/dcv-10v.yaml"]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_data_is_in_the_package(name: str) -> None:
    path = builtin_data(*name.split("/"))
    assert path.is_file()
    assert path.is_relative_to(Path(daq.__file__).parent)
    assert builtin_data("profiles") == BUILTIN_PROFILE_DIR


def test_the_data_directory_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = str(tmp_path / "h")
    assert data_dir({"DAQ_HOME": home, "STATE_DIRECTORY": "/s"}) == Path(home)
    assert data_dir({"STATE_DIRECTORY": "/srv/a:/srv/b"}) == Path("/srv/a")  # systemd
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert data_dir({"XDG_DATA_HOME": "/x"}) == SYSTEM_DATA_DIR  # a system service
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/daq")
    assert data_dir({"XDG_DATA_HOME": "relative"}) == tmp_path / ".local/share/daq"
    assert data_dir({}) == tmp_path / ".local/share/daq"


def test_a_checkouts_var_is_used_only_without_a_chosen_data_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = str(tmp_path / "h")
    assert state_path("sessions", {"DAQ_HOME": home}) == Path(home) / "sessions"
    (tmp_path / "var" / "sessions").mkdir(parents=True)
    assert state_path("sessions", {"DAQ_HOME": home}) == Path(home) / "sessions"
    assert state_path("sessions", {"XDG_DATA_HOME": home}) == Path("var/sessions")


def test_a_sites_profile_overrides_the_builtin_of_its_id(tmp_path: Path) -> None:
    own = (BUILTIN_PROFILE_DIR / "sdm630.yaml").read_text(encoding="utf-8").replace(
        "model: SDM630", "model: SDM630 (site's own)")
    (tmp_path / "sdm630.yaml").write_text(own, encoding="utf-8")
    assert load_profile("sdm630", profile_dirs([tmp_path])).model == "SDM630 (site's own)"
    assert load_profile("dtsu666", profile_dirs([tmp_path])).model  # the rest: built in


def test_a_sites_procedure_overrides_the_builtin_of_its_id(tmp_path: Path) -> None:
    assert find_procedure("dcv-10v") == builtin_data("procedures", "dcv-10v.yaml")
    (tmp_path / "dcv-10v.yaml").write_text("id: dcv-10v\n", encoding="utf-8")
    assert find_procedure("dcv-10v", [tmp_path]) == tmp_path / "dcv-10v.yaml"
    assert find_procedure("prt-bath", [tmp_path]) == builtin_data("procedures", "prt-bath.yaml")
    assert find_procedure("nope", [tmp_path]) is None


def test_a_sites_periods_override_the_builtin_types_they_list(tmp_path: Path) -> None:
    own = tmp_path / "periods.yaml"
    own.write_text("types:\n  water_meter:\n    name: the site's water meters\n    rules:\n"
                   "      - {mode: periodic, period_months: 12, regulation: site rule,\n"
                   "         confirmed: true}\n"
                   "  site_thing:\n    name: a type of the site's own\n    rules:\n"
                   "      - {mode: periodic, period_months: 6, regulation: site rule,\n"
                   "         confirmed: true}\n", encoding="utf-8")
    builtin = load_periods()
    merged = load_periods(own)
    assert merged.types["water_meter"].rules[0].period_months == 12
    assert merged.types["site_thing"].rules[0].period_months == 6
    assert set(merged.types) == set(builtin.types) | {"site_thing"}
    assert set(load_periods(own, over_builtin=False).types) == {"water_meter", "site_thing"}


def test_calibrate_run_takes_a_procedure_id(tmp_path: Path) -> None:
    """``daq calibrate run ID``: the site's ``--procedure-dir`` first (here a broken
    ``dcv-10v.yaml``, whose error names it), then the built-ins; an unknown id is refused."""
    (tmp_path / "dcv-10v.yaml").write_text("id: dcv-10v\ncolour: red\n", encoding="utf-8")

    def daq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daq.cli", "calibrate", "run", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60,
                              env={**os.environ, "DAQ_REGISTRY": str(tmp_path / "r.sqlite")},
                              check=False)

    out = daq("dcv-10v", "--procedure-dir", str(tmp_path), "--yes")
    assert out.returncode == 2
    assert f"{tmp_path / 'dcv-10v.yaml'}:" in out.stderr
    out = daq("prt-bath", "--procedure-dir", str(tmp_path), "--yes")  # built in: prompts
    assert out.returncode == 2
    assert "--yes runs unattended, but some setpoints prompt the technician" in out.stderr
    out = daq("no-such-procedure")
    assert out.returncode == 2
    assert "no procedure of that id" in out.stderr
