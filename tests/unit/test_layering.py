"""The dependency direction of docs/architecture.md, checked on the source (no import-linter
needed): gateway → drivers, calibration → daq; simulators may use drivers, calibration (the
simulated lab) and daq; nothing at run time imports simulators; daq imports the rest only
inside its command modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("daq", "drivers", "calibration", "gateway", "simulators")
ALLOWED = {
    "daq": {"daq"},
    "drivers": {"daq", "drivers"},
    "calibration": {"daq", "calibration"},
    "gateway": {"daq", "drivers", "calibration", "gateway"},
    "simulators": {"calibration", "daq", "drivers", "simulators"},  # lab.py: a simulated lab
}
# composition roots: the commands that start simulators and tie the layers together
# (and every daq/cli_*.py: command modules registered in daq/cli.py)
COMMAND_MODULES = {"daq/cli.py", "daq/demo.py", "daq/read.py"}


def is_command_module(rel: str) -> bool:
    return rel in COMMAND_MODULES or (rel.startswith("daq/cli_") and rel.endswith(".py"))


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_dependency_direction(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if is_command_module(rel):
            continue
        for line, top in imports_of(path):
            if top in PACKAGES and top not in ALLOWED[package]:
                bad.append(f"{rel}:{line}: imports {top}")
    assert bad == []
