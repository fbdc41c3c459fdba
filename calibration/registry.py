"""The calibration registry: instruments, certificates and verification records in one SQLite
file, with an append-only, hash-chained audit log (OIML D31 / WELMEC 7.2 event log).

Every change goes through :class:`Registry` and appends exactly one audit entry in the same
transaction. Records are stored as canonical JSON; each audit entry holds the SHA-256 of the
record's canonical JSON (null for a delete), the previous entry's hash and its own hash over
all its other fields, so :meth:`Registry.verify` detects an edited or deleted audit entry and a
record changed or inserted behind the registry's back.

Every failure leaves the registry as :class:`RegistryError`: a change it refuses, and a file it
cannot read or write (corrupt, locked beyond ``busy_timeout_s``, read-only, a stored record that
no longer parses); the sqlite3 error is its ``__cause__``.

What the chain does not prove: someone with write access to the file can rebuild the whole
chain. Record the head hash printed by ``daq audit verify`` somewhere else (a signed report,
the certificate file) to detect that. See ``docs/calibration-records.md``.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from calibration.errors import CalibrationError
from calibration.records import (
    KINDS,
    Kind,
    Record,
    RecordSet,
    canonical_json,
    cross_check,
    dependency_order,
    parse_record,
    record_json,
)

Action = Literal["create", "update", "delete"]
GENESIS = "0" * 64

_TABLES: dict[Kind, str] = {
    "instrument": "instruments", "certificate": "certificates", "verification": "verifications",
    "key": "keys",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instruments (id TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (id TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verifications (id TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    why TEXT NOT NULL,
    record_sha256 TEXT,
    prev_sha256 TEXT NOT NULL,
    entry_sha256 TEXT NOT NULL
);
-- append-only against mistakes; verify() catches whoever drops these triggers
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class RegistryError(CalibrationError):
    """A change the registry refuses (unknown reference, record in use, missing record), or a
    file it cannot read or write."""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    who: str
    action: Action
    kind: Kind
    record_id: str
    why: str
    record_sha256: str | None
    prev_sha256: str
    entry_sha256: str

    def computed_sha256(self) -> str:
        fields = asdict(self)
        del fields["entry_sha256"]
        return sha256_text(canonical_json(fields))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class Registry:
    """A registry in one SQLite file. ``create=False`` refuses a file that does not exist;
    ``read_only=True`` opens an existing file for reading only (what a gateway needs: it may
    then run as a user that cannot write the registry, and cannot change it by mistake).
    ``busy_timeout_s``: how long a statement waits for another connection's lock."""

    def __init__(self, path: str | Path, *, create: bool = True,
                 read_only: bool = False, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create or read_only:
                raise RegistryError(f"no registry at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if read_only:
            try:
                self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro",
                                             uri=True, isolation_level=None,
                                             timeout=busy_timeout_s)
                self._conn.execute("SELECT 1 FROM audit LIMIT 1")
            except sqlite3.Error as exc:
                raise RegistryError(f"{self.path}: not a readable registry ({exc})") from exc
        else:
            try:
                self._conn = sqlite3.connect(self.path, isolation_level=None,
                                             timeout=busy_timeout_s)
                self._conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise RegistryError(f"{self.path}: not a usable registry ({exc})") from exc
        with self._sqlite():
            # a registry made before a kind existed, opened read-only, has no table for it
            self._tables = {str(r[0]) for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _sqlite(self) -> Iterator[None]:
        """sqlite3's errors (corrupt, locked, read-only file) leave as RegistryError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise RegistryError(f"{self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._sqlite():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:  # roll back whatever stopped the change, and re-raise it
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _parse(self, kind: Kind, text: str) -> Record:
        try:
            return parse_record(kind, json.loads(text))
        except ValueError as exc:  # not JSON, or JSON that is not a valid record
            raise RegistryError(f"{self.path}: a stored {kind} does not parse ({exc})") from exc

    # -- reading ----------------------------------------------------------------------------
    def get(self, kind: Kind, record_id: str) -> Record | None:
        text = self.raw_json(kind, record_id)
        return None if text is None else self._parse(kind, text)

    def list(self, kind: Kind) -> builtins.list[Record]:
        if _TABLES[kind] not in self._tables:
            return []
        with self._sqlite():
            rows = self._conn.execute(
                f"SELECT json FROM {_TABLES[kind]} ORDER BY id").fetchall()
        return [self._parse(kind, r[0]) for r in rows]

    def raw_json(self, kind: Kind, record_id: str) -> str | None:
        """The stored canonical JSON of a record (what the audit hashes cover)."""
        if _TABLES[kind] not in self._tables:
            return None
        with self._sqlite():
            row = self._conn.execute(
                f"SELECT json FROM {_TABLES[kind]} WHERE id = ?", (record_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def audit(self) -> builtins.list[AuditEntry]:
        with self._sqlite():
            rows = self._conn.execute(
                "SELECT seq, at, who, action, kind, record_id, why, record_sha256, "
                "prev_sha256, entry_sha256 FROM audit ORDER BY seq"
            ).fetchall()
        return [AuditEntry(*r) for r in rows]

    # -- changing ---------------------------------------------------------------------------
    def put(self, record: Record, who: str, why: str) -> Action | None:
        """Create or update ``record``; None (and no audit entry) if it is stored unchanged."""
        with self._transaction():
            self._check_references(RecordSet.model_validate(
                {_plural(record.kind): [record]}))
            return self._put(record, who, why)

    def delete(self, kind: Kind, record_id: str, who: str, why: str) -> None:
        with self._transaction():
            if self.raw_json(kind, record_id) is None:
                raise RegistryError(f"no {kind} {record_id!r}")
            users = self._users_of(kind, record_id)
            if users:
                raise RegistryError(f"{kind} {record_id!r} is still referenced by "
                                    + ", ".join(users))
            self._conn.execute(f"DELETE FROM {_TABLES[kind]} WHERE id = ?", (record_id,))
            self._append(who, "delete", kind, record_id, why, None)

    def import_records(self, records: RecordSet, who: str, why: str) -> builtins.list[AuditEntry]:
        """Put every record (instruments, then certificates in reference order, then
        verifications) in one transaction; returns the new audit entries."""
        with self._transaction():
            self._check_references(records)
            before = self._last_seq()
            ordered: builtins.list[Record] = [
                *records.instruments, *dependency_order(records.certificates),
                *records.verifications, *records.keys]
            for rec in ordered:
                self._put(rec, who, why)
        return [e for e in self.audit() if e.seq > before]

    def export_json(self, path: str | Path) -> None:
        data = {_plural(k): [r.model_dump(mode="json", by_alias=True) for r in self.list(k)]
                for k in KINDS}
        Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")

    def import_json(self, path: str | Path, who: str, why: str) -> builtins.list[AuditEntry]:
        from calibration.records import load_records

        return self.import_records(load_records(path, self.get), who, why)

    # -- checking ---------------------------------------------------------------------------
    def verify(self) -> builtins.list[str]:
        """Empty if the audit chain and the records agree; otherwise messages, the first naming
        the first broken audit entry (or the first record that does not match the log)."""
        problems: builtins.list[str] = []
        prev = GENESIS
        expected = 1
        latest: dict[tuple[str, str], AuditEntry] = {}
        for e in self.audit():
            if e.seq != expected:
                problems.append(f"audit entry {expected} is missing (next entry is {e.seq})")
                break
            if e.prev_sha256 != prev:
                problems.append(f"audit entry {e.seq} does not chain to entry {e.seq - 1}")
                break
            if e.computed_sha256() != e.entry_sha256:
                problems.append(f"audit entry {e.seq} was altered "
                                f"({e.action} {e.kind} {e.record_id!r} at {e.at})")
                break
            latest[(e.kind, e.record_id)] = e
            prev = e.entry_sha256
            expected += 1
        if problems:
            return problems
        for kind in KINDS:
            if _TABLES[kind] not in self._tables:
                continue
            with self._sqlite():
                rows = self._conn.execute(
                    f"SELECT id, json FROM {_TABLES[kind]} ORDER BY id").fetchall()
            for rid, text in rows:
                entry = latest.pop((kind, rid), None)
                if entry is None or entry.action == "delete":
                    problems.append(f"{kind} {rid!r} has no audit entry")
                elif entry.record_sha256 != sha256_text(text):
                    problems.append(f"{kind} {rid!r} does not match its audit entry "
                                    f"{entry.seq}: changed behind the registry's back")
        for (gone_kind, gone_id), entry in latest.items():
            if entry.action != "delete":
                problems.append(f"{gone_kind} {gone_id!r} of audit entry {entry.seq} is missing: "
                                "deleted behind the registry's back")
        return problems

    def head(self) -> str:
        """The hash of the last audit entry (GENESIS for an empty log)."""
        with self._sqlite():
            row = self._conn.execute(
                "SELECT entry_sha256 FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return GENESIS if row is None else str(row[0])

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` of this connection: it changes when another
        connection commits any change to the file — an audited change or one behind the
        registry's back that leaves the audit head as it was."""
        with self._sqlite():
            row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    # -- internals --------------------------------------------------------------------------
    def _put(self, record: Record, who: str, why: str) -> Action | None:
        text = record_json(record)
        old = self.raw_json(record.kind, record.record_id)
        if old == text:
            return None
        action: Action = "create" if old is None else "update"
        self._conn.execute(
            f"INSERT OR REPLACE INTO {_TABLES[record.kind]} (id, json) VALUES (?, ?)",
            (record.record_id, text),
        )
        self._append(who, action, record.kind, record.record_id, why, sha256_text(text))
        return action

    def _append(self, who: str, action: Action, kind: Kind, record_id: str, why: str,
                record_sha256: str | None) -> None:
        if not who.strip():
            raise RegistryError("who must name a person")
        if not why.strip():
            raise RegistryError("why must give a reason")
        fields: dict[str, Any] = {
            "seq": self._last_seq() + 1, "at": _now(), "who": who, "action": action,
            "kind": kind, "record_id": record_id, "why": why, "record_sha256": record_sha256,
            "prev_sha256": self.head(),
        }
        entry = AuditEntry(**fields, entry_sha256="")
        self._conn.execute(
            "INSERT INTO audit (seq, at, who, action, kind, record_id, why, record_sha256, "
            "prev_sha256, entry_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*fields.values(), entry.computed_sha256()),
        )

    def _last_seq(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) FROM audit").fetchone()
        return int(row[0] or 0)

    def _check_references(self, records: RecordSet) -> None:
        problems = cross_check(records, self.get)
        if problems:
            raise RegistryError("; ".join(m for _, m in problems))

    def _users_of(self, kind: Kind, record_id: str) -> builtins.list[str]:
        users: builtins.list[str] = []
        if kind == "instrument":
            for rec in [*self.list("certificate"), *self.list("verification")]:
                if getattr(rec, "instrument", None) == record_id:
                    users.append(f"{rec.kind} {rec.record_id!r}")
        elif kind == "certificate":
            for rec in self.list("certificate"):
                if record_id in getattr(rec, "reference_certificates", ()):
                    users.append(f"certificate {rec.record_id!r}")
        return users


def _plural(kind: Kind) -> str:
    return _TABLES[kind]
