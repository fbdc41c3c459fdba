"""The package as a site installs it: the sdist and the wheel are built from a copy of the
repository, the wheel is installed into a fresh virtual environment (its dependencies from
the configured package index) and run from a directory that has nothing to do with the
checkout, with the data directory in a temporary folder. Nothing may be written inside the
installed package.

Slow (a venv, an install: about half a minute here), so one module-scoped installation
serves every test. Under ``CI=true`` nothing is skipped: a missing tool fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services import is_ci

pytestmark = [pytest.mark.packaging, pytest.mark.services]

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "version"]
# what a checkout has that is not part of the source (caches, venvs, state, build output)
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "var", "build", "dist", "artifacts",
                                    "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
                                    "*.sqlite*")
SUMMARY = re.compile(r"demo finished: (\d+) readings acquired, (\d+) stored")


@dataclass
class Installed:
    dist: Path  # the sdist and the wheel
    venv: Path
    site_packages: Path
    cwd: Path  # unrelated to the checkout
    home: Path  # DAQ_HOME
    env: dict[str, str]

    def daq(self, *args: str, timeout_s: float = 120, **env: str
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "daq"), *args], cwd=self.cwd,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=timeout_s, check=False)


def run(*cmd: str | Path, cwd: Path, env: dict[str, str], timeout_s: float = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("packaging")
    # a clean environment: nothing of the checkout or of the test run's venv leaks in
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DAQ_REGISTRY", "DAQ_VAR",
                        "STATE_DIRECTORY")}
    env["DAQ_HOME"] = str(tmp / "home")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    try:
        # a builder venv with the build frontend: the sdist, then the wheel from the sdist
        # (as `python -m build` does), so a file missing from the sdist fails here too
        run(sys.executable, "-m", "venv", tmp / "builder", cwd=tmp, env=env)
        run(tmp / "builder/bin/python", "-m", "pip", "install", "-q", "build",
            "setuptools>=68", "wheel", cwd=tmp, env=env)
        run(tmp / "builder/bin/python", "-m", "build", "--no-isolation", "--outdir",
            tmp / "dist", src, cwd=tmp, env=env)
        wheel = next((tmp / "dist").glob("daq_metrology-*.whl"))
        run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp, env=env)
        run(tmp / "venv/bin/python", "-m", "pip", "install", "-q", wheel, cwd=tmp, env=env)
    except (subprocess.TimeoutExpired, StopIteration, OSError) as exc:
        if is_ci():
            pytest.fail(f"could not build and install the wheel: {exc}", pytrace=False)
        pytest.skip(f"could not build and install the wheel: {exc}")
    site = Path(run(tmp / "venv/bin/python", "-c", "import sysconfig; "
                    "print(sysconfig.get_paths()['purelib'])", cwd=tmp, env=env).strip())
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    yield Installed(tmp / "dist", tmp / "venv", site, cwd, tmp / "home", env)
    shutil.rmtree(tmp, ignore_errors=True)  # two venvs: some 450 MB


def test_sdist_and_wheel_carry_the_builtin_data(installed: Installed) -> None:
    data = ["daq/data/demo.yaml", "daq/data/profiles/sdm630.yaml",
            "daq/data/procedures/dcv-10v.yaml", "daq/data/verification-periods.yaml",
            "daq/data/gb17167-classes.yaml", "daq/data/energy-coefficients.yaml",
            "gateway/dashboard/static/app.js", "drivers/dlt645/identifiers.yaml",
            "daq/py.typed"]
    wheel = next(installed.dist.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(data) <= names
    assert not any(n.startswith(("tests/", "config/", "benchmarks/")) for n in names)
    with tarfile.open(next(installed.dist.glob("*.tar.gz"))) as sdist:
        in_sdist = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert set(data) <= in_sdist


def test_the_installed_package_runs_outside_the_checkout(installed: Installed,
                                                         mqtt_broker: Any) -> None:
    where = run(installed.venv / "bin/python", "-c", "import daq, gateway; "
                "print(daq.__file__); print(gateway.__file__)", cwd=installed.cwd,
                env=installed.env)
    assert all(Path(p).is_relative_to(installed.site_packages) for p in where.split())
    before = listing(installed.site_packages)

    out = installed.daq("--version")
    assert out.stdout == f"daq (daq-metrology) {VERSION}\n", out.stderr

    # the demo: built-in profiles and demo site, its files in the data directory
    demo = installed.daq("demo", "--duration", "3", "--plain", "--no-dashboard",
                         DAQ_MQTT_PORT=str(mqtt_broker.port), COLUMNS="200",
                         DAQ_DEMO_ENTERPRISE=f"p{uuid.uuid4().hex[:10]}")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    m = SUMMARY.search(demo.stdout.replace("\n", " "))
    assert m, demo.stdout
    assert int(m.group(1)) > 0
    assert int(m.group(2)) == int(m.group(1))
    for name in ("historian.sqlite", "registry.sqlite", "gw-01-outbox.sqlite"):
        assert (installed.home / "demo" / name).is_file(), name
    assert not (installed.cwd / "var").exists()

    # the built-in periods and classes, on a records file
    records = installed.cwd / "energy-meters.yaml"
    shutil.copy(REPO / "config/calibration/example-energy-meters.yaml", records)
    status = installed.daq("verify", "status", "--registry", str(records),
                           "--enterprise", "demo-plant", "--at", "2026-03-10")
    assert status.returncode == 1, status.stdout + status.stderr  # findings, not bad input
    assert "service_life_ended" in status.stdout
    assert "never_verified" in status.stdout
    # and on the demo's registry
    status = installed.daq("verify", "status", "--registry",
                           str(installed.home / "demo/registry.sqlite"), "--format", "json")
    assert '"overdue"' in status.stdout, status.stderr

    # the demo site, as a site starts from it
    site = installed.cwd / "site.yaml"
    example = installed.daq("config", "example")
    site.write_text(example.stdout, encoding="utf-8")
    check = installed.daq("config", "check", str(site))
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines()[0] == f"{site}: OK (daq {VERSION})"
    assert "Eastron SDM630" in check.stdout

    # the dashboard starts (built-in energy coefficients) and logs its version first
    dash = subprocess.Popen([str(installed.venv / "bin/daq"), "--log-format", "json",
                             "dashboard", str(site), "--port", "0"], cwd=installed.cwd,
                            env={**installed.env, "DAQ_MQTT_PORT": str(mqtt_broker.port)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert dash.stdout is not None
        line = dash.stdout.readline()
    finally:
        dash.send_signal(signal.SIGINT)
        _, err = dash.communicate(timeout=30)
    assert "daq dashboard on http://127.0.0.1:" in line, line + err
    assert f'"message": "daq dashboard {VERSION} starting"' in err.splitlines()[0], err

    assert listing(installed.site_packages) == before, "written inside the installed package"
