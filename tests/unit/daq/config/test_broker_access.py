"""The broker's accounts from the site file (``daq/config/broker_access.py``): topic rights
per role, located errors, and passwords that leave only as hashes. The files on a real
Mosquitto: tests/integration/daq/test_broker_access.py."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from daq.config import load_config_located
from daq.config.broker_access import BrokerAccess, broker_access, hash_password, mosquitto_conf
from daq.config.yamlsrc import SourceErrors

SITE = """\
enterprise: {id: acme}
gateways:
  - id: gw-1
    mqtt_login: {username: gw-1, password: "${T_PW1}"}
    buses: []
  - id: gw-2
    mqtt_login: {username: gw-2, password_file: secrets/gw-2}
    buses: []
ingest:
  mqtt_login: {username: ingest, password: "${T_PW3}"}
"""


def access(tmp_path: Path, text: str = SITE) -> BrokerAccess:
    p = tmp_path / "site.yaml"
    p.write_text(text)
    return broker_access(*load_config_located(p))


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SourceErrors) as info:
        access(tmp_path, text)
    return [str(e).removeprefix(f"{tmp_path / 'site.yaml'}:") for e in info.value.errors]


@pytest.fixture(autouse=True)
def _secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_PW1", "pw-one-7f3a9c")
    monkeypatch.setenv("T_PW3", "pw-three-c0ffee")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "gw-2").write_text("two\n")


def test_each_role_gets_its_topics(tmp_path: Path) -> None:
    acl = access(tmp_path).acl_text()
    body = [ln for ln in acl.splitlines() if ln and not ln.startswith("#")]
    assert body == [
        "user gw-1", "topic read daq-ack/acme/gw-1/#", "topic write daq/acme/gw-1/#",
        "user gw-2", "topic read daq-ack/acme/gw-2/#", "topic write daq/acme/gw-2/#",
        "user ingest", "topic read daq/acme/#", "topic write daq-ack/acme/#",
    ]  # no dashboard login, no dashboard account; nothing for anonymous clients


def test_passwords_are_hashed_with_fresh_salts(tmp_path: Path) -> None:
    site = access(tmp_path)
    text = site.password_text(iterations=1000)
    assert "pw-one-7f3a9c" not in text
    assert "pw-three-c0ffee" not in text
    lines = dict(ln.split(":", 1) for ln in text.splitlines())
    _, _, iterations, salt, digest = lines["gw-2"].split("$")
    assert iterations == "1000"
    want = hashlib.pbkdf2_hmac("sha512", b"two", base64.b64decode(salt), 1000)
    assert base64.b64decode(digest) == want  # the password file's first line, stripped
    assert site.password_text(iterations=1000) != text  # a new salt every time
    assert "pw-one-7f3a9c" not in repr(site)
    assert hash_password("x", salt=b"\0" * 12, iterations=101).startswith(
        "$7$101$AAAAAAAAAAAAAAAA$")


def test_missing_logins_duplicates_and_empty_passwords_are_located(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_PW1", "")
    text = (SITE.replace("username: gw-2", "username: gw-1")
            .replace("ingest:\n  mqtt_login:", "ingest:\n  spool: s.sqlite\n  #"))
    assert errors(tmp_path, text) == [
        "4: gateways[0].mqtt_login.password: empty password",
        "7: gateways[1].mqtt_login.username: username 'gw-1' is already the gateway gw-1's "
        "(line 4); each needs its own",
        "9: ingest: the ingest has no `mqtt_login: {username, password | password_file}` "
        "(its broker account)",
    ]


def test_a_login_needs_exactly_one_password_and_a_plain_username(tmp_path: Path) -> None:
    assert errors(tmp_path, SITE.replace('password: "${T_PW1}"', "password_file: x, "
                                         'password: "${T_PW1}"')) == [
        "4: gateways[0].mqtt_login: Value error, give password or password_file (one of them)"]
    assert errors(tmp_path, SITE.replace("username: gw-1", "username: 'gw 1'")) == [
        "4: gateways[0].mqtt_login.username: String should match pattern "
        "'^[A-Za-z0-9_.@-]+$'"]
    (tmp_path / "secrets" / "gw-2").unlink()
    assert errors(tmp_path, SITE) == [
        "7: gateways[1].mqtt_login.password_file: cannot read secrets/gw-2: "
        "No such file or directory"]


def test_the_conf_lines_name_the_files_and_the_persistence() -> None:
    lines = mosquitto_conf("/etc/m/passwords", "/etc/m/acl", "/var/lib/m").splitlines()
    for want in ("allow_anonymous false", "password_file /etc/m/passwords",
                 "acl_file /etc/m/acl", "persistence true", "persistence_location /var/lib/m/",
                 "per_listener_settings false", "max_queued_messages 1000000"):
        assert want in lines
    # Mosquitto takes the rest of a line as a path: comments only on lines of their own
    assert all(ln.startswith("#") or "#" not in ln for ln in lines)
