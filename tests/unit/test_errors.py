"""The error contract (docs/architecture.md, "Errors"): every exception class defined in daq,
drivers, calibration and gateway derives from :class:`daq.errors.DaqError`, through its
layer's one root, so a caller catches one type per layer and a new error without a root fails
here."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from calibration.errors import CalibrationError
from daq.errors import DaqError
from drivers.errors import DriverError
from gateway.errors import GatewayError

PACKAGES = ("daq", "drivers", "calibration", "gateway")
ROOTS: dict[str, type[DaqError]] = {"daq": DaqError, "drivers": DriverError,
                                    "calibration": CalibrationError, "gateway": GatewayError}

def _modules() -> Iterator[str]:
    for name in PACKAGES:
        yield name
        pkg = importlib.import_module(name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{name}."):
            if info.name.rsplit(".", 1)[-1] != "__main__":  # would run the command line
                yield info.name


def _errors() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for modname in _modules():
        module = importlib.import_module(modname)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == modname:
                found[f"{modname}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


ERRORS = _errors()


def _name(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_the_walk_finds_the_errors() -> None:
    names = {_name(c) for c in ERRORS}
    assert {"daq.payload.PayloadError", "calibration.registry.RegistryError",
            "gateway.storage.base.StorageError", "drivers.errors.DeviceTimeout",
            "drivers.modbus.codec.ModbusProtocolError"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=_name)
def test_every_error_derives_from_its_layers_root(cls: type[BaseException]) -> None:
    name = _name(cls)
    root = ROOTS[cls.__module__.split(".", 1)[0]]
    assert issubclass(cls, root), f"{name} does not derive from {_name(root)}"


def test_a_calibration_file_that_does_not_load_is_a_calibration_error(
        tmp_path: Path) -> None:
    from calibration.errors import CalibrationSourceErrors
    from calibration.legal import load_periods
    from calibration.procedure import load_procedure
    from calibration.records import load_records
    from daq.config.yamlsrc import SourceErrors

    bad = tmp_path / "bad.yaml"
    bad.write_text("instruments: 3\n", encoding="utf-8")
    for load in (load_records, load_procedure, load_periods):
        with pytest.raises(CalibrationSourceErrors) as caught:
            load(bad)
        assert isinstance(caught.value, SourceErrors)  # the commands print it as FILE:LINE
        assert caught.value.errors[0].file.endswith("bad.yaml")
