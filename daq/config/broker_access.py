"""The broker's accounts from the site file: Mosquitto's password file and ACL file.

Without them any client may publish readings. With them each gateway logs in as its own user
and may publish only under ``daq/{enterprise}/{gateway}/#`` (its data, meta, status, alarms)
and read only its acknowledgement topic ``daq-ack/{enterprise}/{gateway}/#``; the ingest
reads ``daq/{enterprise}/#`` and writes ``daq-ack/{enterprise}/#``; the dashboard reads
``daq/{enterprise}/#`` and writes nothing; anonymous clients are refused at CONNECT.

The acknowledgement topics live under a root of their own, not under the gateway's prefix:
a gateway cannot forge its own acknowledgements, the ingest's ``daq/#`` subscription does not
receive its own acknowledgements, and no device id (``ack``) can collide with them.

Passwords are read from the site (``${ENV}`` or a ``*_file``) only to be hashed: the password
file holds PBKDF2-SHA512 hashes in Mosquitto's ``$7$`` format (what ``mosquitto_passwd``
writes, with more iterations), and nothing else ever holds a password.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from pydantic import SecretStr

from daq.config.site import LoadedConfig, MqttLogin
from daq.config.yamlsrc import Located, Path_, SourceError, SourceErrors

PBKDF2_ITERATIONS = 10_000
"""Iterations of PBKDF2-HMAC-SHA512 per password hash. ``mosquitto_passwd`` uses 101; 10 000
costs the broker a few milliseconds per CONNECT (Mosquitto reads the count from the hash)
and an attacker holding the file 100 times more per guess."""

SALT_BYTES = 12  # as mosquitto_passwd


def data_prefix(enterprise: str, gateway: str) -> str:
    """The topics a gateway publishes under (data, meta, status, alarms)."""
    return f"daq/{enterprise}/{gateway}/"


def ack_prefix(enterprise: str, gateway: str) -> str:
    """Reserved for the end-to-end acknowledgement: the ingest writes here what it has
    stored of ``gateway``'s readings; only that gateway may read it."""
    return f"daq-ack/{enterprise}/{gateway}/"


@dataclass(frozen=True)
class Account:
    """One broker user: who it is in the site, its password, and its topic rights."""

    username: str
    role: str  # "gateway gw-01", "ingest", "dashboard"
    password: SecretStr
    read: tuple[str, ...]
    write: tuple[str, ...]


@dataclass(frozen=True)
class BrokerAccess:
    """The accounts of a site's broker, ready to be written as Mosquitto's files."""

    enterprise: str
    accounts: tuple[Account, ...]

    def acl_text(self) -> str:
        """The ACL file. Users not named here (there are none: anonymous clients are
        refused) get nothing; ``read`` covers subscribing and receiving."""
        out = [f"# Mosquitto ACL for site {self.enterprise}, written by `daq broker access`:",
               "# regenerate it from the site file rather than edit it.", ""]
        for acc in self.accounts:
            out.append(f"# {acc.role}")
            out.append(f"user {acc.username}")
            out.extend(f"topic read {t}" for t in acc.read)
            out.extend(f"topic write {t}" for t in acc.write)
            out.append("")
        return "\n".join(out)

    def password_text(self, *, iterations: int = PBKDF2_ITERATIONS) -> str:
        """The password file: ``username:$7$…`` per account, fresh salts every time."""
        return "".join(
            f"{acc.username}:"
            f"{hash_password(acc.password.get_secret_value(), iterations=iterations)}\n"
            for acc in self.accounts)


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS,
                  salt: bytes | None = None) -> str:
    """``password`` as Mosquitto's ``$7$`` hash: ``$7$ITERATIONS$SALT$HASH`` with the salt
    and the 64-byte PBKDF2-HMAC-SHA512 digest in base64."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode('ascii')}$"
            f"{base64.b64encode(digest).decode('ascii')}")


def mosquitto_conf(password_file: str, acl_file: str, persistence_location: str) -> str:
    """The mosquitto.conf lines every broker that carries daq needs (docs/mqtt.md)."""
    location = persistence_location.rstrip("/") + "/"
    return f"""\
# the lines below hold for every listener
per_listener_settings false
allow_anonymous false
password_file {password_file}
acl_file {acl_file}
# sessions and queued QoS 1 messages survive a broker restart
persistence true
persistence_location {location}
# the default 1000 drops QoS 1 messages for a subscriber that falls behind
max_queued_messages 1000000
max_inflight_messages 65535
max_packet_size 10000000
"""


def broker_access(loaded: LoadedConfig, loc: Located) -> BrokerAccess:
    """The site's accounts; :class:`SourceErrors` (``FILE:LINE: field: message``) when a
    gateway or the ingest has no ``mqtt_login``, a username is used twice, or a password is
    missing or empty."""
    cfg = loaded.config
    ent = cfg.enterprise.id
    errors: list[SourceError] = []
    accounts: list[Account] = []
    owner: dict[str, tuple[str, int]] = {}  # username -> role, line

    def add(login: MqttLogin | None, where: Path_, role: str, read: tuple[str, ...],
            write: tuple[str, ...], required: bool) -> None:
        if login is None:
            if required:
                errors.append(loc.error(where, f"the {role} has no `mqtt_login: {{username, "
                                        "password | password_file}` (its broker account)"))
            return
        at = (*where, "mqtt_login")
        if login.username in owner:
            other, line = owner[login.username]
            errors.append(loc.error((*at, "username"), f"username {login.username!r} is "
                                    f"already the {other}'s (line {line}); each needs its own"))
            return
        owner[login.username] = (role, loc.line_of((*at, "username")))
        password = _password(loaded, loc, login, at, errors)
        if password is not None:
            accounts.append(Account(login.username, role, password, read, write))

    for gi, gw in enumerate(cfg.gateways):
        add(gw.mqtt_login, ("gateways", gi), f"gateway {gw.id}",
            read=(ack_prefix(ent, gw.id) + "#",), write=(data_prefix(ent, gw.id) + "#",),
            required=True)
    everything = f"daq/{ent}/#"
    add(cfg.ingest.mqtt_login, ("ingest",), "ingest", read=(everything,),
        write=(f"daq-ack/{ent}/#",), required=True)
    add(cfg.dashboard.mqtt_login, ("dashboard",), "dashboard", read=(everything,), write=(),
        required=False)
    if errors:
        raise SourceErrors(sorted(errors, key=lambda e: e.line))
    return BrokerAccess(ent, tuple(accounts))


def _password(loaded: LoadedConfig, loc: Located, login: MqttLogin, at: Path_,
              errors: list[SourceError]) -> SecretStr | None:
    field = "password" if login.password is not None else "password_file"
    try:
        value = loaded.secret(login.password, login.password_file)
    except OSError as exc:
        errors.append(loc.error((*at, field), f"cannot read {login.password_file}: "
                                f"{exc.strerror}"))
        return None
    except UnicodeDecodeError:
        errors.append(loc.error((*at, field), f"{login.password_file} is not UTF-8 text"))
        return None
    if not value:
        errors.append(loc.error((*at, field), "empty password"))
        return None
    return SecretStr(value)


__all__ = [
    "PBKDF2_ITERATIONS",
    "Account",
    "BrokerAccess",
    "ack_prefix",
    "broker_access",
    "data_prefix",
    "hash_password",
    "mosquitto_conf",
]
