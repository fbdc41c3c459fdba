"""``daq broker access CONFIG --out DIR``: the broker's password and ACL files from the site."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from daq.cli.common import EXIT_CONFIG, or_exit

PASSWORDS = "passwords"
ACL = "acl"


@click.group()
def broker() -> None:
    """The MQTT broker's configuration, generated from the site file."""


@broker.command("access")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the password file and the ACL file (created if missing).")
@click.option("--persistence-location", default="/var/lib/mosquitto/", show_default=True,
              metavar="DIR", help="A folder the broker's own user can write (printed into the "
              "mosquitto.conf lines).")
def access(config: Path, out_dir: Path, persistence_location: str) -> None:
    """Write DIR/passwords and DIR/acl for CONFIG's broker and print the mosquitto.conf lines.

    Each gateway's `mqtt_login` may publish only under daq/{enterprise}/{gateway}/# and read
    daq-ack/{enterprise}/{gateway}/#; the ingest's reads daq/{enterprise}/# and writes
    daq-ack/{enterprise}/#; the dashboard's only reads; anonymous clients are refused.
    Passwords are stored only as PBKDF2-SHA512 hashes. On a config error, print
    FILE:LINE: field: message for every problem and exit 2.
    """
    from daq.config import load_config_located
    from daq.config.broker_access import broker_access, mosquitto_conf

    loaded, loc = or_exit(load_config_located, str(config))
    site = or_exit(broker_access, loaded, loc)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        passwords, acl = out_dir.resolve() / PASSWORDS, out_dir.resolve() / ACL
        _write(passwords, site.password_text())
        _write(acl, site.acl_text())
    except OSError as exc:
        click.echo(f"{out_dir}: cannot write: {exc.strerror}", err=True)
        sys.exit(EXIT_CONFIG)
    for acc in site.accounts:
        click.echo(f"{acc.username}: {acc.role}", err=True)
    login = loaded.config.mqtt.username
    if login and login not in {acc.username for acc in site.accounts}:
        click.echo(f"note: mqtt.username {login!r} (the login of clients without their own "
                   "mqtt_login) has no account in these files", err=True)
    click.echo(f"wrote {passwords} and {acl} (mode 0640): the broker's user must read them "
               f"(e.g. chgrp mosquitto); reload the broker after a change (SIGHUP)", err=True)
    click.echo(f"# mosquitto.conf lines for site {site.enterprise} (daq broker access)")
    click.echo(mosquitto_conf(str(passwords), str(acl), persistence_location), nl=False)


def _write(path: Path, text: str) -> None:
    """Replace ``path`` whole (a broker reloading it never reads half a file), mode 0640,
    keeping an older file's group (a ``chgrp mosquitto`` holds across regenerations)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if path.exists():
            os.chown(tmp, -1, path.stat().st_gid)
        os.chmod(tmp, 0o640)  # whatever the umask or an older file's mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
