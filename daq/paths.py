"""Where an installation's files are: the built-in data that ships inside the package, the data
directory where commands keep their state, and the installed version.

* **Built-in data** (``daq/data/``: device profiles, calibration procedures, verification
  periods, GB 17167 classes, energy coefficients, the demo site) is read through
  :mod:`importlib.resources`, so it is found wherever the package is installed. It is only
  ever read: nothing is written inside the installed package.
* **The data directory** holds what commands create when no path is given: the demo's files,
  the default calibration registry, calibration sessions. :func:`data_dir` says which:
  ``$DAQ_HOME`` (``daq --data-dir DIR`` sets it), else systemd's ``$STATE_DIRECTORY``, else
  ``/var/lib/daq`` for root (system services), else ``$XDG_DATA_HOME/daq``, else
  ``~/.local/share/daq``. Relative paths in a site file stay relative to the site file.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
from collections.abc import Mapping
from pathlib import Path

from daq.errors import DaqError

__all__ = [
    "DISTRIBUTION",
    "PackageDataError",
    "builtin_data",
    "data_dir",
    "data_dir_is_explicit",
    "state_path",
    "version",
]

DISTRIBUTION = "daq-metrology"
SYSTEM_DATA_DIR = Path("/var/lib/daq")


class PackageDataError(DaqError):
    """The built-in data cannot be read as files (a package imported from a zip archive)."""


def builtin_data(*parts: str) -> Path:
    """A file or folder of the built-in data, ``daq/data/<parts>``.

    An installed wheel and a checkout both keep the package as files, so this is a real path
    (profiles are globbed, and errors name ``FILE:LINE``); a zip import raises
    :class:`PackageDataError`."""
    root = importlib.resources.files("daq") / "data"
    if not isinstance(root, Path):
        raise PackageDataError(f"daq's built-in data is not on the file system ({root}): "
                               "install the package from a wheel, not as a zip archive")
    return root.joinpath(*parts)


def version() -> str:
    """The installed distribution's version (``daq --version``), or ``unknown`` when the code
    runs from a checkout that was never installed."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _explicit(env: Mapping[str, str]) -> Path | None:
    if env.get("DAQ_HOME"):
        return Path(env["DAQ_HOME"]).expanduser()
    state = env.get("STATE_DIRECTORY")  # systemd's StateDirectory=: may list several
    if state:
        return Path(state.split(":")[0])
    return None


def data_dir_is_explicit(env: Mapping[str, str] | None = None) -> bool:
    """Whether the data directory was chosen (``$DAQ_HOME``, ``--data-dir``,
    ``$STATE_DIRECTORY``) rather than the platform's default."""
    return _explicit(os.environ if env is None else env) is not None


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The data directory (absolute; not created here)."""
    env = os.environ if env is None else env
    chosen = _explicit(env)
    if chosen is not None:
        return chosen.resolve()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return SYSTEM_DATA_DIR
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "daq"


def state_path(name: str, env: Mapping[str, str] | None = None) -> Path:
    """Where a command keeps ``name`` (``registry.sqlite``, ``sessions``) by default:
    ``DATA_DIR/name``; but ``var/name`` under the working directory when it exists there and
    no data directory was chosen (a checkout's files from before the data directory)."""
    env = os.environ if env is None else env
    legacy = Path("var") / name
    if not data_dir_is_explicit(env) and legacy.exists():
        return legacy
    return data_dir(env) / name
