"""Evidence: the signed messages themselves, kept as they arrived, keyed by (enterprise,
gateway, epoch, sequence), so a stored reading's origin can be proven later with the
gateway's pinned key (``daq evidence verify``), even through a shared or compromised broker
(OIML D 31 / WELMEC 7.2). Which messages are kept: ``ingest.evidence`` (``legal``: those
carrying a reading with a certificate applied or a verification state; ``all``; ``none``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["EvidenceStore"]


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
