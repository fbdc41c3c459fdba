"""The one root of every error ``calibration`` raises: :class:`CalibrationError`.

A caller of calibration catches ``CalibrationError`` (or one of its kinds, each in the module
that raises it: ``ModelError``, ``UncertaintyError``, ``RegistryError``, ``RecordsError``,
``VerificationError``, ``DriftError``, ``SessionError``, ``DecisionError``). A calibration file
that does not load (records, a procedure, the legal tables) raises
:class:`CalibrationSourceErrors`, which is also the core's
:class:`~daq.config.yamlsrc.SourceErrors`, so the commands print its ``FILE:LINE`` lines like
any other config error.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from daq.config.yamlsrc import SourceErrors
from daq.errors import DaqError

__all__ = ["CalibrationError", "CalibrationSourceErrors", "located"]

P = ParamSpec("P")
R = TypeVar("R")


class CalibrationError(DaqError):
    """Base of every error calibration raises on purpose."""


class CalibrationSourceErrors(CalibrationError, SourceErrors):
    """A calibration file (records, procedure, legal table) with ``FILE:LINE`` errors."""


def located(load: Callable[P, R]) -> Callable[P, R]:
    """A loader whose :class:`SourceErrors` (from the core's YAML loading and validation)
    leave as :class:`CalibrationSourceErrors`, with the same located errors."""

    @wraps(load)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return load(*args, **kwargs)
        except CalibrationSourceErrors:
            raise
        except SourceErrors as exc:
            raise CalibrationSourceErrors(exc.errors) from exc

    return wrapper
