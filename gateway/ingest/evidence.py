"""Evidence: the signed messages themselves, kept as they arrived, keyed by (enterprise,
gateway, epoch, sequence), so a stored reading's origin can be proven later with the
gateway's pinned key (``daq evidence verify``), even through a shared or compromised broker
(OIML D 31 / WELMEC 7.2). Which messages are kept: ``ingest.evidence`` (``legal``: those
carrying a reading with a certificate applied or a verification state; ``all``; ``none``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from daq.model import Quality, Reading
from daq.payload import PayloadError, decode_batch
from daq.signing import SignatureError, verify_signed

__all__ = ["EvidenceReport", "EvidenceStore", "verify_evidence"]


class EvidenceStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS evidence ("
            " enterprise TEXT NOT NULL, gateway TEXT NOT NULL, epoch TEXT NOT NULL,"
            " seq INTEGER NOT NULL, received_ns INTEGER NOT NULL, payload BLOB NOT NULL,"
            " PRIMARY KEY (enterprise, gateway, epoch, seq)) WITHOUT ROWID")

    def put_many(self, rows: Sequence[tuple[str, str, str, int, bytes]]) -> None:
        """Keep signed messages: (enterprise, gateway, epoch, seq, payload); a message kept
        already is kept once."""
        if not rows:
            return
        now = time.time_ns()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO evidence VALUES (?, ?, ?, ?, ?, ?)",
                [(e, g, ep, s, now, p) for e, g, ep, s, p in rows])

    def rows(self) -> Iterator[tuple[str, str, str, int, bytes]]:
        cur = self._db.execute("SELECT enterprise, gateway, epoch, seq, payload FROM evidence "
                               "ORDER BY enterprise, gateway, epoch, seq")
        for e, g, ep, s, p in cur:
            yield str(e), str(g), str(ep), int(s), bytes(p)

    def count(self) -> int:
        n: int = self._db.execute("SELECT COUNT(*) FROM evidence").fetchone()[0]
        return n

    def close(self) -> None:
        self._db.close()


@dataclass
class EvidenceReport:
    """What ``daq evidence verify`` found: every kept message checked against the gateway's
    pinned key, every reading in it against storage."""

    messages: int = 0
    signatures_valid: int = 0
    readings: int = 0
    readings_match: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


StoredValues = Callable[[Reading, int, int], dict[int, float]]
"""(a reading of the channel, start_ns, end_ns) → {ts_ns: value} of that channel in storage."""


def verify_evidence(store: EvidenceStore,
                    lookup: Callable[[str, str, str], Ed25519PublicKey | None],
                    stored: StoredValues, *, since_ns: int = 0,
                    max_problems: int = 50) -> EvidenceReport:
    """Check every kept message: its signature with ``lookup(key id, enterprise, gateway)``
    (the pinned key), then each numeric reading of quality good or uncertain against what
    storage holds at its instant (a value missing or different is a problem)."""
    report = EvidenceReport()
    wanted: dict[tuple[str, str, str, str], list[Reading]] = {}

    def problem(text: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(text)
        elif len(report.problems) == max_problems:
            report.problems.append("… more problems not listed")

    for ent, gw, epoch, seq, payload in store.rows():
        report.messages += 1
        where = f"{ent}/{gw} epoch {epoch} seq {seq}"
        def pinned(kid: str, e: str = ent, g: str = gw) -> Ed25519PublicKey | None:
            return lookup(kid, e, g)

        try:
            body, _ = verify_signed(payload, pinned)
            batch = decode_batch(body, now_ns=1 << 62)
        except (SignatureError, PayloadError) as exc:
            problem(f"{where}: {exc}")
            continue
        if (batch.enterprise, batch.gateway, batch.epoch, batch.seq) != (ent, gw, epoch, seq):
            problem(f"{where}: kept under another name than it carries")
            continue
        report.signatures_valid += 1
        for r in batch.readings:
            if r.ts_ns < since_ns or r.quality is Quality.BAD or isinstance(r.value, str) \
                    or r.value is None:
                continue
            wanted.setdefault((r.enterprise, r.gateway, r.device, r.channel), []).append(r)
    for rs in wanted.values():
        got = stored(rs[0], min(r.ts_ns for r in rs), max(r.ts_ns for r in rs))
        for r in rs:
            report.readings += 1
            value = got.get(r.ts_ns)
            if value is None:
                problem(f"{r.device}/{r.channel} at {r.ts_ns}: signed {r.value!r}, not in "
                        "storage")
            elif value != float(r.value):  # type: ignore[arg-type]
                problem(f"{r.device}/{r.channel} at {r.ts_ns}: signed {r.value!r}, storage "
                        f"holds {value!r}")
            else:
                report.readings_match += 1
    return report
