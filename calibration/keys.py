"""Gateway keys pinned in the registry: who may sign readings, since when, and until when.

A gateway signs what it sends with its own Ed25519 key (:mod:`daq.signing`); the ingest
verifies each message against the public keys pinned here, never against a key found in the
message. Pinning and revoking are registry changes, so each one is in the hash-chained audit
log with who did it and why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from calibration.errors import CalibrationError
from calibration.records import KeyRecord
from calibration.registry import Registry
from daq.config import LoadedConfig
from daq.signing import ensure_private_key, key_id, public_key_b64, public_key_from_b64

__all__ = ["KeyPinError", "PinnedKey", "gateway_subject", "pin_gateway_key", "pin_site_keys",
           "pinned_keys", "revoke_key"]


class KeyPinError(CalibrationError):
    """A key that cannot be pinned or revoked as asked."""


def gateway_subject(enterprise: str, gateway: str) -> str:
    return f"gateway:{enterprise}/{gateway}"


@dataclass(frozen=True, slots=True)
class PinnedKey:
    key_id: str
    enterprise: str
    gateway: str
    public: Ed25519PublicKey
    revoked: dt.date | None


def pin_gateway_key(registry: Registry, enterprise: str, gateway: str,
                    public: Ed25519PublicKey, who: str, why: str,
                    today: dt.date | None = None) -> KeyRecord:
    """Pin ``public`` as a signing key of the gateway (idempotent for the same key)."""
    kid = key_id(public)
    subject = gateway_subject(enterprise, gateway)
    old = registry.get("key", kid)
    if isinstance(old, KeyRecord):
        if old.subject != subject:
            raise KeyPinError(f"key {kid} is already pinned for {old.subject}")
        if old.revoked is not None:
            raise KeyPinError(f"key {kid} was revoked on {old.revoked}; make a new key")
        return old
    rec = KeyRecord(id=kid, subject=subject, public_key=public_key_b64(public),
                    pinned=today or dt.date.today())
    registry.put(rec, who, why)
    return rec


def revoke_key(registry: Registry, kid: str, who: str, why: str,
               today: dt.date | None = None) -> KeyRecord:
    old = registry.get("key", kid)
    if not isinstance(old, KeyRecord):
        raise KeyPinError(f"no key {kid} in the registry")
    if old.revoked is not None:
        return old
    rec = old.model_copy(update={"revoked": today or dt.date.today()})
    registry.put(rec, who, why)
    return rec


def pinned_keys(registry: Registry) -> dict[str, PinnedKey]:
    """Every pinned gateway key by key id, revoked ones included (with their date)."""
    out: dict[str, PinnedKey] = {}
    for rec in registry.list("key"):
        assert isinstance(rec, KeyRecord)
        ent, _, gw = rec.subject.removeprefix("gateway:").partition("/")
        out[rec.id] = PinnedKey(rec.id, ent, gw, public_key_from_b64(rec.public_key),
                                rec.revoked)
    return out


def pin_site_keys(registry: Registry, loaded: LoadedConfig, who: str, why: str,
                  gateway_id: str | None = None) -> list[tuple[str, str, bool]]:
    """Pin the signing key of each gateway of a site (or of one), making a key file where it
    is missing. Returns (gateway, key id, whether the key file was made now) per gateway."""
    out = []
    for gw in loaded.config.gateways:
        if gateway_id is not None and gw.id != gateway_id:
            continue
        key, made = ensure_private_key(loaded.signing_key_path(gw))
        rec = pin_gateway_key(registry, loaded.config.enterprise.id, gw.id, key.public_key(),
                              who, why)
        out.append((gw.id, rec.id, made))
    return out
