"""The calibration records in the registry: ``daq cert import|list|show|verify``, the audit
log (``daq audit verify|head``) and traceability chains (``daq trace``). Documentation:
``docs/calibration-records.md``; ``cert verify`` checks the reports of calibration sessions
(``docs/calibration-sessions.md``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from daq.cli.common import (
    EXIT_CONFIG,
    open_registry,
    or_exit,
    registry_option,
    trusted_registry,
    who,
)

EXIT_FAILED = 1


@click.group()
def cert() -> None:
    """Calibration records: instruments, certificates, verifications."""


@cert.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@registry_option()
@click.option("--why", default=None, help="Reason recorded in the audit log.")
def cert_import(file: str, registry_path: str, why: str | None) -> None:
    """Check FILE (YAML or JSON with instruments, certificates, verifications) and put its
    records into the registry, all or nothing. Errors: FILE:LINE: field: message, exit 2."""
    from calibration.records import load_records
    from calibration.registry import RegistryError

    with open_registry(registry_path, create=True) as reg:
        records = or_exit(load_records, file, reg.get)
        try:
            entries = reg.import_records(records, who(), why or f"import {file}")
        except RegistryError as exc:
            click.echo(f"{file}: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        click.echo(f"{file}: {len(records.records())} records, {len(entries)} changed "
                   f"({reg.path})")


@cert.command("list")
@registry_option()
def cert_list(registry_path: str) -> None:
    """List the certificates in the registry."""
    from rich.console import Console
    from rich.table import Table

    from calibration.records import Certificate, Instrument, expires_on

    with open_registry(registry_path) as reg:
        instruments = {i.id: i for i in reg.list("instrument") if isinstance(i, Instrument)}
        table = Table()
        for name in ("certificate", "instrument", "calibrated", "expires", "references"):
            table.add_column(name, no_wrap=True)
        table.add_column("points", justify="right")
        table.add_column("laboratory")
        for c in reg.list("certificate"):
            assert isinstance(c, Certificate)
            table.add_row(c.id, c.instrument, str(c.calibration_date),
                          str(expires_on(c, instruments.get(c.instrument))),
                          ", ".join(c.reference_certificates) or "—", str(len(c.points)),
                          c.laboratory)
        console = Console()
        if not console.is_terminal:  # piped: do not squeeze ids into 80 columns
            console = Console(width=200)
        console.print(table)


@cert.command("show")
@click.argument("cert_id", metavar="ID")
@registry_option()
def cert_show(cert_id: str, registry_path: str) -> None:
    """Print certificate ID as JSON, with the SHA-256 of its canonical JSON."""
    import json

    from calibration.registry import sha256_text

    with open_registry(registry_path) as reg:
        text = reg.raw_json("certificate", cert_id)
        if text is None:
            click.echo(f"no certificate {cert_id!r} in {reg.path}", err=True)
            sys.exit(1)
        click.echo(json.dumps(json.loads(text), indent=2, ensure_ascii=False))
        click.echo(f"sha256: {sha256_text(text)}")


@cert.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@registry_option()
def cert_verify(file: str, registry_path: str) -> None:
    """Check the certificate a report FILE carries against the registry: exit 0 when its
    SHA-256 matches the registry's record and audit log, 1 naming the mismatch."""
    from gateway.bench.report import verify_report

    text = Path(file).read_text(encoding="utf-8")
    with open_registry(registry_path) as reg:
        res = verify_report(text, reg)
    if not res.ok:
        for p in res.problems:
            click.echo(f"{file}: {p}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"{file}: certificate {res.certificate} matches the registry "
               f"(sha256 {res.sha256})")



@click.group()
def audit() -> None:
    """The registry's audit log."""


@audit.command("verify")
@registry_option()
@click.option("--anchor", "anchors", multiple=True, metavar="SEQ:SHA256",
              help="A head recorded earlier outside the registry (daq audit head): the entry "
                   "SEQ must still have this hash. Repeatable.")
def audit_verify(registry_path: str, anchors: tuple[str, ...]) -> None:
    """Check the audit chain and the records against it; exit 1 on the first broken entry.

    The hash chain shows any edit that was not followed by recomputing every later hash;
    anchors (heads written down, printed on reports or kept on another machine) also catch
    a log rewritten from the start."""
    with open_registry(registry_path) as reg:
        problems = reg.verify()
        entries = {e.seq: e.entry_sha256 for e in reg.audit()}
        for anchor in anchors:
            seq, _, digest = anchor.partition(":")
            if not seq.isdigit() or len(digest) != 64:
                click.echo(f"--anchor {anchor!r}: expected SEQ:SHA256", err=True)
                sys.exit(EXIT_CONFIG)
            if entries.get(int(seq)) != digest.lower():
                problems.append(f"anchor {anchor}: audit entry {seq} "
                                + ("is missing" if int(seq) not in entries else
                                   f"has hash {entries[int(seq)]}") + ": the log was rewritten")
        if problems:
            for p in problems:
                click.echo(p, err=True)
            sys.exit(1)
        click.echo(f"audit log intact: {len(entries)} entries (head {reg.head()})"
                   + (f", {len(anchors)} anchors hold" if anchors else ""))


@audit.command("head")
@registry_option()
def audit_head(registry_path: str) -> None:
    """Print the audit log's head as SEQ:SHA256, to record outside the registry (a lab
    notebook, another machine) and check later with ``daq audit verify --anchor``."""
    with open_registry(registry_path) as reg:
        entries = reg.audit()
        last = entries[-1] if entries else None
        click.echo(f"{last.seq}:{last.entry_sha256}" if last else f"0:{reg.head()}")


@click.command()
@click.argument("instrument")
@click.option("--at", "at_date", default=None, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="The instant (date) of interest; default today.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a tree.")
@registry_option()
def trace(instrument: str, at_date: Any, as_json: bool, registry_path: str) -> None:
    """Print INSTRUMENT's traceability chain up to a national standard; exit 1 if broken,
    or if the registry's audit log fails its check (``daq audit verify``): records changed
    behind the registry's back prove nothing, so no chain is printed from them."""
    import datetime as dt

    import orjson
    from rich.console import Console
    from rich.tree import Tree

    from calibration.chain import Link, Records, resolve

    at = at_date.date() if at_date is not None else dt.datetime.now(dt.UTC).date()
    with trusted_registry(registry_path,
                          "no traceability chain from a registry that is not trusted") as reg:
        records = Records.of(reg.list("instrument"), reg.list("certificate"))
    chain = resolve(records, instrument, at)
    if as_json:
        click.echo(orjson.dumps(chain.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        def label(link: Link) -> str:
            mark = "[green]✔[/]" if not link.problems else "[red]✘[/]"
            u = f", u ≤ {link.u:.3g}" if link.u is not None else ""
            text = (f"{mark} {link.instrument} — {link.certificate or 'no certificate'} "
                    f"(valid at {link.at}{', expires ' + str(link.expires) if link.expires else ''}"
                    f"{u})")
            return text + "".join(f"\n   [red]{p}[/]" for p in link.problems)

        def grow(tree: Tree, link: Link) -> None:
            for ref in link.references:
                grow(tree.add(label(ref)), ref)

        root = Tree(label(chain))
        grow(root, chain)
        Console().print(root)
        Console().print("chain intact" if chain.ok else "[red]chain broken[/]")
    sys.exit(0 if chain.ok else 1)
