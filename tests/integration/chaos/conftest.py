"""The chaos suite's summary: one table of every scenario run, at the end of the session
(``pytest -s`` or not). Services come from ``tests/services.py`` as everywhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulators.fleet import MeterFleet
from tests.integration.chaos.ledger import ROWS, fleet, table


@pytest.fixture
async def meters() -> AsyncIterator[MeterFleet]:
    """Three simulated meters, started; their served values are the truth."""
    async with fleet() as f:
        yield f


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ROWS:
        terminalreporter.section("chaos suite: every reading counted against the meters")
        for line in table(ROWS):
            terminalreporter.write_line(line)
