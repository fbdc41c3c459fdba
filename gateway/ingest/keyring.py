"""The ingest's view of the gateways' pinned public keys (calibration/keys.py), read from the
registry read-only, and read again when the registry's files changed (looked at most once
every ``reload_s``), so a key pinned or revoked while the ingest runs counts without a
restart. The audit log is checked at each read: a registry changed behind its back pins
nothing."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from calibration.keys import PinnedKey, pinned_keys
from calibration.registry import Registry, RegistryError

log = logging.getLogger(__name__)


class KeyRing:
    def __init__(self, registry: Path, *, reload_s: float = 1.0) -> None:
        self.registry = registry
        self.reload_s = reload_s
        self.loads = 0  # how many times the registry was read
        self._keys: dict[str, PinnedKey] = {}
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._looked_at = -1e9
        self._problem = ""
        self._refresh()

    def _say(self, problem: str) -> None:
        """Log a problem once (not at every look while it lasts)."""
        if problem != self._problem:
            self._problem = problem
            log.error("ingest: %s", problem)

    def _files(self) -> tuple[tuple[int, int], ...]:
        """(mtime, size) of the registry and its WAL: what changes when anything is written."""
        stamp = []
        for suffix in ("", "-wal"):
            try:
                st = os.stat(f"{self.registry}{suffix}")
                stamp.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                stamp.append((0, 0))
        return tuple(stamp)

    def _refresh(self) -> None:
        self._looked_at = time.monotonic()
        stamp = self._files()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self.loads += 1
        try:
            with Registry(self.registry, read_only=True) as reg:
                problems = reg.verify()
                if problems:
                    self._say(f"the registry {self.registry} fails its audit check "
                              f"({problems[0]}); no key of it is trusted")
                    self._keys = {}
                    return
                self._keys = pinned_keys(reg)
                self._problem = ""
        except RegistryError as exc:
            self._keys = {}
            self._say(f"cannot read the gateways' keys: {exc}")

    def lookup(self, kid: str, enterprise: str, gateway: str) -> Ed25519PublicKey | None:
        """The public key ``kid`` if it is pinned for this gateway and not revoked."""
        if time.monotonic() - self._looked_at >= self.reload_s:
            self._refresh()
        key = self._keys.get(kid)
        if key is None or key.revoked is not None:
            return None
        if (key.enterprise, key.gateway) != (enterprise, gateway):
            return None
        return key.public
