"""The one ``--registry`` option: given, else ``$DAQ_REGISTRY``, else ``registry.sqlite`` in the
data directory (``var/registry.sqlite`` where it exists and no data directory is chosen); the
dashboard's optional form gives None when that file is not there."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from daq.cli.common import REGISTRY_DEFAULT_HELP, registry_option
from daq.cli.main import main


def resolved(args: list[str], **kwargs: bool) -> str:
    @click.command()
    @registry_option(**kwargs)
    def show(registry_path: str | None) -> None:
        click.echo(repr(registry_path))

    res = CliRunner().invoke(show, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output.strip()


@pytest.mark.parametrize("optional", [False, True])
def test_the_default_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          optional: bool) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAQ_REGISTRY", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("DAQ_HOME", str(home))
    in_home = repr(str(home / "registry.sqlite"))
    assert resolved(["--registry", "x.sqlite"], optional=optional) == "'x.sqlite'"
    assert resolved([], optional=optional) == ("None" if optional else in_home)
    home.mkdir()
    (home / "registry.sqlite").touch()
    assert resolved([], optional=optional) == in_home
    # a checkout's var/registry.sqlite is still found, unless a data directory is chosen
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "registry.sqlite").touch()
    assert resolved([], optional=optional) == in_home
    monkeypatch.delenv("DAQ_HOME")
    assert resolved([], optional=optional) == "'var/registry.sqlite'"
    monkeypatch.setenv("DAQ_REGISTRY", "env.sqlite")
    assert resolved([], optional=optional) == "'env.sqlite'"


def test_every_command_says_the_same() -> None:
    """One help text for --registry, with the records-file and optional variants."""
    helps: dict[str, str] = {}

    def walk(group: click.Group, prefix: str) -> None:
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                walk(cmd, f"{prefix}{name} ")
                continue
            for p in cmd.params:
                if isinstance(p, click.Option) and "--registry" in p.opts:
                    helps[prefix + name] = " ".join((p.help or "").split())

    walk(main, "")
    assert set(helps) >= {"cert import", "cert list", "cert show", "cert verify",
                          "audit verify", "audit head", "trace", "verify status", "drift",
                          "calibrate run", "dashboard"}
    plain = {h for c, h in helps.items()
             if c not in ("verify status", "drift", "dashboard", "keys pin")}
    assert plain == {f"Calibration registry (SQLite) (default: {REGISTRY_DEFAULT_HELP})."}
    assert helps["verify status"] == helps["drift"]
    assert ".yaml/.yml/.json" in helps["drift"]
    assert "if it exists, else none" in helps["dashboard"]
    # the keys of a site's gateways go where that site's ingest reads them
    assert "beside the site file" in helps["keys pin"]
