"""The layers of docs/architecture.md are import-linter contracts in pyproject.toml
(``lint-imports``, run by ``make lint``). These tests show the contracts hold on the tree and
that each kind of wrong import breaks the contract meant to catch it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("daq", "drivers", "calibration", "gateway", "simulators", "tests", "benchmarks")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages' Python files and pyproject.toml, to break on purpose."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(REPO / "pyproject.toml", root)
    for pkg in PACKAGES:
        for src in (REPO / pkg).rglob("*.py"):
            dst = root / src.relative_to(REPO)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return root


def test_contracts_hold_on_the_tree() -> None:
    out = lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("module", "bad_import", "contract"), [
    # the core importing the runtime (what daq/cli.py's exemption used to hide)
    ("daq/payload.py", "import gateway.acquisition.service", "all above the core"),
    # the dashboard reaching into the acquisition pipeline
    ("gateway/dashboard/state.py", "import gateway.acquisition.poller",
     "jobs do not know each other"),
    # runtime code importing the simulators or the tests' helpers
    ("gateway/ingest/service.py", "import simulators.broker", "all above the core"),
    ("drivers/modbus/plan.py", "import tests.services", "all above the core"),
    # a cycle inside a package
    ("drivers/result.py", "import drivers.modbus.driver", "No import cycles"),
    # pymodbus outside the one class that wraps it
    ("gateway/acquisition/poller.py", "import pymodbus.client", "pymodbus stays behind"),
    # GTC on the per-reading path
    ("calibration/apply.py", "import GTC", "GTC stays in calibration.multivariate"),
    # I/O in the pure layers
    ("calibration/apply.py", "import asyncio", "calibration is pure"),
    ("drivers/dlt645/codec.py", "import socket", "sans-I/O"),
])
def test_a_wrong_import_breaks_its_contract(tree: Path, module: str, bad_import: str,
                                            contract: str) -> None:
    path = tree / module
    good = path.read_text(encoding="utf-8")
    try:
        path.write_text(good + f"\n{bad_import}  # noqa\n", encoding="utf-8")
        out = lint(tree)
    finally:
        path.write_text(good, encoding="utf-8")
    assert out.returncode != 0, out.stdout
    # the report lists the broken contracts by name (a long name wraps over two lines)
    broken = " ".join(out.stdout.split("Broken contracts")[-1].split())
    assert contract in broken, out.stdout


def test_the_command_line_loads_no_runtime() -> None:
    """``daq --help`` must not pay for paho, aiohttp, pymodbus or numpy: the commands import the
    runtime inside themselves."""
    code = ("import sys, daq.cli; "
            "heavy = sorted(m for m in ('paho', 'aiohttp', 'pymodbus', 'numpy', 'gateway', "
            "'simulators', 'drivers') if m in sys.modules); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
