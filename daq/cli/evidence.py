"""``daq evidence verify CONFIG``: re-check stored readings against the signed messages the
ingest kept as evidence (``ingest.evidence``): each message against its gateway's pinned key,
each reading in it against what storage holds at its instant."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from daq.cli.common import EXIT_CONFIG, load_site, trusted_registry


@click.group()
def evidence() -> None:
    """The signed messages kept as evidence of instruments under legal control."""


@evidence.command("verify")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--since", "since", default=None, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Only readings from this day (UTC) on.")
def evidence_verify(config_file: str, since: dt.datetime | None) -> None:
    """Exit 0 if every kept message is signed by its gateway's pinned key and storage holds
    each of its readings unchanged; else list the problems and exit 1."""
    from calibration.keys import pinned_keys
    from gateway.ingest.evidence import EvidenceStore, verify_evidence

    loaded = load_site(config_file)
    path = loaded.resolve(loaded.config.ingest.evidence_store)
    if not path.exists():
        click.echo(f"no evidence at {path} (ingest.evidence_store)", err=True)
        sys.exit(EXIT_CONFIG)
    with trusted_registry(str(loaded.keys_registry()),
                          "no evidence checked against keys that are not trusted") as reg:
        keys = pinned_keys(reg)
    revoked_used: set[str] = set()

    def lookup(kid: str, ent: str, gw: str) -> Any:
        key = keys.get(kid)
        if key is None or (key.enterprise, key.gateway) != (ent, gw):
            return None
        if key.revoked is not None:
            revoked_used.add(kid)  # signed before it was revoked, or after: say so
        return key.public

    history = _history(loaded)
    store = EvidenceStore(path)
    try:
        since_ns = 0 if since is None else int(since.replace(tzinfo=dt.UTC).timestamp()) * 10**9
        report = verify_evidence(store, lookup, history, since_ns=since_ns)
    finally:
        store.close()
    click.echo(f"{report.messages} messages, {report.signatures_valid} with a valid "
               f"signature of a pinned key; {report.readings} readings compared, "
               f"{report.readings_match} as signed")
    for kid in sorted(revoked_used):
        click.echo(f"note: key {kid} has been revoked since", err=True)
    for p in report.problems:
        click.echo(f"  {p}")
    sys.exit(0 if report.ok else 1)


def _history(loaded: Any) -> Any:
    """(a reading, start, end) → {ts_ns: value} from the site's storage."""
    from gateway.dashboard.history import HistorianHistory, InfluxV1History, Where
    from gateway.storage import HistorianStorage, InfluxV1Storage, open_storage

    storage = open_storage(loaded)
    if isinstance(storage, HistorianStorage):
        history: Any = HistorianHistory(str(storage.path))
        storage.close()  # the history reads the file on connections of its own
    elif isinstance(storage, InfluxV1Storage):
        history = InfluxV1History(storage)
    else:
        cfg = loaded.config.storage
        click.echo(f"evidence verify reads storage kind historian or influxdb_v1, not "
                   f"{cfg.kind}", err=True)
        sys.exit(EXIT_CONFIG)

    def stored(r: Any, start: int, end: int) -> dict[int, float]:
        w = Where(r.enterprise, r.gateway, r.device, r.channel, r.quantity)
        return {s.ts_ns: s.value for s in history.samples(w, start, end)}

    return stored
