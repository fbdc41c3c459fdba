"""The ingest's view of the gateways' pinned public keys (calibration/keys.py), read from the
registry read-only and read again when a message names a key it does not know (at most once
a second), so a key pinned while the ingest runs is honoured without a restart."""

from __future__ import annotations

import logging
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
        self._keys: dict[str, PinnedKey] = {}
        self._loaded_at = -1e9
        self._problem = ""
        self._reload()

    def _say(self, problem: str) -> None:
        """Log a problem once (the ring is read again every second while keys are missing)."""
        if problem != self._problem:
            self._problem = problem
            log.error("ingest: %s", problem)

    def _reload(self) -> None:
        self._loaded_at = time.monotonic()
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
            self._say(f"cannot read the gateways' keys: {exc}")

    def lookup(self, kid: str, enterprise: str, gateway: str) -> Ed25519PublicKey | None:
        """The public key ``kid`` if it is pinned for this gateway and not revoked."""
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at >= self.reload_s:
            self._reload()
            key = self._keys.get(kid)
        if key is None or key.revoked is not None:
            return None
        if (key.enterprise, key.gateway) != (enterprise, gateway):
            return None
        return key.public
