"""The ingest's view of the pinned keys follows the registry while it runs: a key revoked
(or pinned) after the ingest started counts at once, without a restart."""

from __future__ import annotations

from pathlib import Path

from calibration.keys import pin_gateway_key, revoke_key
from calibration.registry import Registry
from daq.signing import key_id, new_private_key
from gateway.ingest.keyring import KeyRing


def test_a_key_revoked_while_the_ingest_runs_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    public = new_private_key().public_key()
    kid = key_id(public)
    with Registry(path) as reg:
        pin_gateway_key(reg, "e", "gw-1", public, "test", "commissioned")
    ring = KeyRing(path, reload_s=0.0)
    assert ring.lookup(kid, "e", "gw-1") is not None
    assert ring.lookup(kid, "e", "gw-2") is None  # pinned for another gateway
    with Registry(path) as reg:
        revoke_key(reg, kid, "test", "the gateway was stolen")
    assert ring.lookup(kid, "e", "gw-1") is None


def test_a_known_key_does_not_reread_the_registry_when_nothing_changed(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    public = new_private_key().public_key()
    with Registry(path) as reg:
        pin_gateway_key(reg, "e", "gw-1", public, "test", "commissioned")
    ring = KeyRing(path, reload_s=0.0)
    loads = ring.loads
    for _ in range(100):
        assert ring.lookup(key_id(public), "e", "gw-1") is not None
    assert ring.loads == loads
