"""Signed messages: each gateway signs what it sends with its own Ed25519 key.

Why Ed25519 and not an HMAC: with a shared secret every verifier could also forge; with a
signature only the gateway holding the private key can, and its public key can be pinned in
the audit-logged registry. (OIML D 31 / WELMEC 7.2: protection of legally relevant data in
transmission.) The library is ``cryptography`` (OpenSSL), not hand-written.

A signed message is the body (one line of JSON) followed by one trailer line::

    <body>\\n#ed25519 <key id> <signature, base64>

``key id`` is the first 16 hex digits of the SHA-256 of the raw 32-byte public key, so a
verifier finds the pinned key without trusting anything in the message. The signature covers
the body's bytes exactly. Measured here (``python -m benchmarks micro``): see docs/mqtt.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from daq.errors import DaqError

__all__ = [
    "SignatureError",
    "Signer",
    "ensure_private_key",
    "key_id",
    "load_private_key",
    "new_private_key",
    "public_key_b64",
    "public_key_from_b64",
    "split_signed",
    "unsigned_body",
    "verify_signed",
    "write_private_key",
]

TRAILER = b"\n#ed25519 "
KEY_ID_HEX = 16


class SignatureError(DaqError):
    """A message that is not signed, signed by a key nobody pinned, or whose signature does
    not match its body."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX]


def public_key_b64(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"not an Ed25519 public key: {exc}") from exc


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a private key as PKCS#8 PEM, readable by its owner only (created 0600)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: cannot load an Ed25519 private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key")
    return key


def ensure_private_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The private key in ``path``, made there first if the file does not exist; and whether
    it was made now."""
    if path.exists():
        return load_private_key(path), False
    write_private_key(new_private_key(), path)
    return load_private_key(path), True


class Signer:
    """Signs message bodies with one private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = key_id(key.public_key())
        self._prefix = TRAILER + self.key_id.encode() + b" "

    def sign(self, body: bytes) -> bytes:
        """``body`` with its signature trailer (the body must not contain a newline)."""
        return body + self._prefix + base64.b64encode(self._key.sign(body))


def unsigned_body(payload: bytes) -> bytes:
    """The body of a message with its signature trailer (if any) cut off, unchecked."""
    cut = payload.rfind(TRAILER)
    return payload if cut < 0 else payload[:cut]


def split_signed(payload: bytes) -> tuple[bytes, str, bytes]:
    """(body, key id, signature) of a signed message; SignatureError if it has no trailer."""
    cut = payload.rfind(TRAILER)
    if cut < 0:
        raise SignatureError("the message is not signed")
    body, trailer = payload[:cut], payload[cut + len(TRAILER):]
    kid, _, sig64 = trailer.partition(b" ")
    try:
        sig = base64.b64decode(sig64, validate=True)
        kid_text = kid.decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"malformed signature trailer: {exc}") from exc
    if len(kid_text) != KEY_ID_HEX or len(sig) != 64:
        raise SignatureError("malformed signature trailer")
    return body, kid_text, sig


def verify_signed(payload: bytes,
                  lookup: Callable[[str], Ed25519PublicKey | None]) -> tuple[bytes, str]:
    """The body and key id of a message whose signature verifies with the key ``lookup``
    returns for its key id (None: unknown or revoked). Raises SignatureError otherwise."""
    body, kid, sig = split_signed(payload)
    public = lookup(kid)
    if public is None:
        raise SignatureError(f"signed by key {kid}, which is not pinned (unknown or revoked)")
    try:
        public.verify(sig, body)
    except InvalidSignature as exc:
        raise SignatureError(f"the signature by key {kid} does not match the message") from exc
    return body, kid
