"""What the ``daq`` command modules share: running a coroutine until a stop, loading a site
file, the one ``--registry`` option and opening the calibration registry. The command modules
(``daq/cli/*.py``) import from here, never from each other; ``daq/cli/main.py`` imports them
all to register their commands."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import click

EXIT_CONFIG = 2
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


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


RECORDS_SUFFIXES = (".yaml", ".yml", ".json")
REGISTRY_DEFAULT_HELP = ("$DAQ_REGISTRY, else registry.sqlite in the data directory, or "
                         "var/registry.sqlite where that exists and no data directory is set")


def registry_path_default() -> str:
    """``$DAQ_REGISTRY``, else ``registry.sqlite`` in the data directory
    (:func:`daq.paths.state_path`: ``var/registry.sqlite`` under the working directory where
    that exists and no data directory was chosen)."""
    from daq.paths import state_path

    return os.environ.get("DAQ_REGISTRY") or str(state_path("registry.sqlite"))


def who() -> str:
    import getpass

    return os.environ.get("DAQ_USER") or getpass.getuser()


def registry_option(*, records_files: bool = False,
                    optional: bool = False) -> Callable[[F], F]:
    """The ``--registry FILE`` option of every command that reads calibration records; the
    command gets the path as ``registry_path``, the default already applied
    (:func:`registry_path_default`).

    ``records_files``: the command also reads a records file (.yaml/.yml/.json) directly
    (:func:`load_record_set`). ``optional``: the command runs without a registry too (the
    dashboard: no traceability chains); the default then applies only when that file exists,
    else the command gets None.
    """
    what = ("Calibration registry (SQLite), or a records file (.yaml/.yml/.json) read "
            "directly" if records_files else "Calibration registry (SQLite)")
    default = (f"{REGISTRY_DEFAULT_HELP}; used only if it exists, else none: no "
               "traceability chains" if optional else REGISTRY_DEFAULT_HELP)

    def resolve(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value:
            return value
        path = registry_path_default()
        if optional and not os.environ.get("DAQ_REGISTRY") and not os.path.isfile(path):
            return None
        return path

    return click.option("--registry", "registry_path", default=None, metavar="FILE",
                        type=click.Path(dir_okay=False), callback=resolve,
                        help=f"{what} (default: {default}).")


def open_registry(path: str | None, create: bool = False) -> Any:
    from calibration.registry import Registry, RegistryError

    try:
        return Registry(path or registry_path_default(), create=create)
    except RegistryError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)


@contextlib.contextmanager
def trusted_registry(path: str | None, refused: str) -> Iterator[Any]:
    """The registry, once its audit log passes its check (``daq audit verify``): records
    changed behind its back are not used. Otherwise print the first problem and ``refused``
    (what the command will not do) and exit 1; a file that cannot be read exits 2."""
    from calibration.registry import RegistryError

    with open_registry(path) as reg:
        try:
            problems = reg.verify()
        except RegistryError as exc:  # corrupt, locked, a record that does not parse
            click.echo(str(exc), err=True)
            sys.exit(EXIT_CONFIG)
        if problems:
            click.echo(f"{reg.path}: the audit log fails its check (daq audit verify): "
                       f"{problems[0]}", err=True)
            click.echo(refused, err=True)
            sys.exit(1)
        yield reg


def load_record_set(path: str) -> Any:
    """All the records (a :class:`calibration.records.RecordSet`) of a records file
    (.yaml/.yml/.json) or of a registry whose audit log passes its check; exit 2 on errors,
    1 on a registry that is not trusted."""
    from calibration.records import RecordSet, load_records

    if path.lower().endswith(RECORDS_SUFFIXES):
        return or_exit(load_records, path)
    with trusted_registry(path, "its records are not used: the registry is not trusted") as reg:
        return RecordSet.model_validate({
            "instruments": reg.list("instrument"), "certificates": reg.list("certificate"),
            "verifications": reg.list("verification")})


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
