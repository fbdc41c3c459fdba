"""The session journal keeps every raw reading: append-only, resumable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.bench.journal import JournalError, SessionJournal


def test_journal_records_resumes_and_refuses_edits(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionJournal.create(path, {"session_id": "s1", "procedure": "p"}) as j:
        a = j.start_attempt(0)
        for k in range(3):
            j.add_reading(a, 0, "dut", k, 1.0 + k)
            j.add_reading(a, 0, "ref", k, 1.0)
        j.finish_point(0, a, {"error": 1.0})
        b = j.start_attempt(1)
        j.add_reading(b, 1, "dut", 0, 5.0)  # interrupted here
    with pytest.raises(JournalError):
        SessionJournal.create(path, {"session_id": "again"})
    with SessionJournal.open(path) as j:
        assert j["session_id"] == "s1"
        assert j.next_setpoint(3) == 1
        assert j.point_readings(0) == ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
        assert [r.value for r in j.readings()] == [1.0, 1.0, 2.0, 1.0, 3.0, 1.0, 5.0]
        c = j.start_attempt(1)  # the retry keeps the interrupted attempt's reading
        assert c != b
        assert len(j.readings()) == 7
    con = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE readings SET value = 0")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM readings")
    con.close()


def test_open_refuses_what_is_not_a_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no such session journal"):
        SessionJournal.open(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(JournalError, match="not a session journal"):
        SessionJournal.open(junk)
