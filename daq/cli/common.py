"""What the ``daq`` command modules share: running a coroutine until a stop, and opening
the calibration registry. ``daq/cli/main.py`` and the command modules beside it
(``cli_calibrate``, ``cli_verify``) import from here, never from each other."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

EXIT_CONFIG = 2
T = TypeVar("T")


async def _stoppable(coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro``; SIGTERM (a service manager's stop) cancels it like Ctrl-C does."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await coro


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine until done, Ctrl-C or SIGTERM; on a stop its finally blocks run (the
    gateway flushes its outbox and goes offline) and the command exits 0."""
    try:
        return asyncio.run(_stoppable(coro))
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo("stopped", err=True)
        sys.exit(0)


def registry_path_default() -> str:
    return os.environ.get("DAQ_REGISTRY") or "var/registry.sqlite"


def who() -> str:
    import getpass

    return os.environ.get("DAQ_USER") or getpass.getuser()


registry_option = click.option(
    "--registry", "registry_path", default=None, type=click.Path(dir_okay=False),
    help="Registry file (default: $DAQ_REGISTRY or var/registry.sqlite).")


def open_registry(path: str | None, create: bool = False) -> Any:
    from calibration.registry import Registry, RegistryError

    try:
        return Registry(path or registry_path_default(), create=create)
    except RegistryError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)


def or_exit(load: Callable[..., T], *args: Any) -> T:
    """``load(*args)``; on :class:`SourceErrors` print each ``FILE:LINE: field: message``
    and exit 2."""
    from daq.config.yamlsrc import SourceErrors

    try:
        return load(*args)
    except SourceErrors as exc:
        for err in exc.errors:
            click.echo(str(err), err=True)
        sys.exit(EXIT_CONFIG)


def load_site(path: str) -> Any:
    """Load a site file, or print its FILE:LINE errors and exit 2."""
    from daq.config import load_config

    return or_exit(load_config, path)
