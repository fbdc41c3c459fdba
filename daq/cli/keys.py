"""``daq keys pin|list|revoke``: the gateways' signing keys in the registry.

A gateway signs everything it sends with its own Ed25519 key; the ingest stores only what a
key pinned here for that gateway signed. Pinning and revoking are audit-logged registry
changes (who, why, when)."""

from __future__ import annotations

import sys

import click

from daq.cli.common import EXIT_CONFIG, load_site, open_registry, registry_option, who


@click.group()
def keys() -> None:
    """The gateways' signing keys pinned in the registry."""


@keys.command("pin")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--gateway", "gateway_id", default=None, help="Only this gateway (default: all).")
@click.option("--registry", "registry_path", default=None, type=click.Path(dir_okay=False),
              help="Registry (default: the site's ingest.registry, else calibration.registry, "
                   "else var/registry.sqlite beside the site file).")
@click.option("--why", default="gateway commissioned", show_default=True,
              help="Reason recorded in the audit log.")
def keys_pin(config_file: str, gateway_id: str | None, registry_path: str | None,
             why: str) -> None:
    """Pin the signing key of each gateway of CONFIG (made first where its file is missing).

    Run it where the gateway's key file is (the key never leaves that machine; only its public
    half goes into the registry)."""
    from calibration.keys import KeyPinError, pin_site_keys

    loaded = load_site(config_file)
    path = registry_path or loaded.keys_registry()
    with open_registry(str(path), create=True) as reg:
        try:
            pinned = pin_site_keys(reg, loaded, who(), why, gateway_id)
        except KeyPinError as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
    if not pinned:
        click.echo(f"no gateway {gateway_id!r} in {config_file}", err=True)
        sys.exit(EXIT_CONFIG)
    for gw, kid, made in pinned:
        click.echo(f"{gw}: key {kid} pinned{' (key file made now)' if made else ''}")


@keys.command("list")
@registry_option()
def keys_list(registry_path: str | None) -> None:
    """The pinned keys: id, gateway, pinned on, revoked on."""
    from calibration.keys import pinned_keys

    with open_registry(registry_path) as reg:
        for kid, k in sorted(pinned_keys(reg).items()):
            state = f"revoked {k.revoked}" if k.revoked else "valid"
            click.echo(f"{kid}  {k.enterprise}/{k.gateway}  {state}")


@keys.command("revoke")
@click.argument("key_id")
@registry_option()
@click.option("--why", required=True, help="Reason recorded in the audit log.")
def keys_revoke(key_id: str, registry_path: str | None, why: str) -> None:
    """Revoke KEY_ID: the ingest stores nothing more it signed (the key stays, so what it
    signed before can still be checked)."""
    from calibration.keys import KeyPinError, revoke_key

    with open_registry(registry_path) as reg:
        try:
            rec = revoke_key(reg, key_id, who(), why)
        except KeyPinError as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
    click.echo(f"key {rec.id} revoked on {rec.revoked}")
