"""A supervised loop that raises is logged (its traceback once per kind of failure) and
started again; cancelling the supervisor stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from gateway.dashboard.supervise import Supervised


async def test_a_failing_loop_is_logged_once_and_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    running = asyncio.Event()

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise TypeError("string indices must be integers")
        running.set()
        await asyncio.Event().wait()

    sup = Supervised("test-loop", body, restart_after_s=0.01)
    with caplog.at_level(logging.DEBUG, logger="gateway.dashboard.supervise"):
        task = sup.start()
        await asyncio.wait_for(running.wait(), 2.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sup.restarts == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # the same failure three times: one traceback
    assert errors[0].exc_info is not None
    assert "test-loop failed" in errors[0].getMessage()


async def test_a_loop_that_returns_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    done = asyncio.Event()

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            done.set()
            await asyncio.Event().wait()

    sup = Supervised("short-loop", body, restart_after_s=0.01)
    task = sup.start()
    await asyncio.wait_for(done.wait(), 2.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert sup.restarts == 1
    assert "short-loop ended by itself" in caplog.text
