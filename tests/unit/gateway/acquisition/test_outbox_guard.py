"""The outbox's cap policy, its shrinking after an outage, and holding what it refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daq.alarms import AlarmKind
from daq.model import Reading
from gateway.acquisition.outbox_guard import Chunk, OutboxGuard
from gateway.outbox import Outbox, OutboxOpenError, OutboxWriteError


def reading(device: str = "m", *, cert: str | None = None) -> Reading:
    return Reading(ts_ns=1, enterprise="e", gateway="g", device=device, channel="c",
                   quantity="voltage", unit="V", value=1.0, cert=cert)


def writer(outbox: Outbox, size: int = 2000) -> object:
    def write(chunk: Chunk) -> None:
        outbox.put(lambda _i: ("t", os.urandom(size)), legal=chunk.legal,
                   readings=chunk.readings)
    return write


def test_the_cap_drops_the_oldest_rows_without_legal_readings_and_never_legal_ones(
        tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    guard = OutboxGuard(ob, writer(ob), max_bytes=200_000, check_s=0)  # type: ignore[arg-type]
    legal_ids = []
    for i in range(300):
        legal = i % 10 == 0
        guard.commit([Chunk([[reading(cert="C1" if legal else None)]], [], legal)])
        if legal:
            legal_ids.append(i)
    assert guard.dropped_rows > 0
    assert ob.used_bytes() <= 200_000
    rows = ob._db.execute("SELECT id, legal FROM outbox ORDER BY id").fetchall()
    assert sum(legal for _, legal in rows) == len(legal_ids)  # every legal row kept
    kinds = [a.kind for a in guard.alarms()]
    assert kinds == [AlarmKind.OUTBOX_FULL]
    # legal rows only, over the cap: kept, said in the alarm
    ob.drop_oldest(rows=10_000)
    for _ in range(150):
        guard.commit([Chunk([[reading(cert="C1")]], [], True)])
    assert ob.used_bytes() > 200_000
    assert guard.over_cap_legal
    assert "legal readings only" in guard.alarms()[0].reason
    # the backlog confirmed: under half the cap, the alarm clears
    ob.ack_ranges([(1, 10**9)])
    guard.commit([])
    assert guard.alarms() == []


def test_the_age_cap_drops_old_rows_without_legal_readings(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    guard = OutboxGuard(ob, writer(ob, 10), max_age_s=3600, check_s=0)  # type: ignore[arg-type]
    guard.commit([Chunk([[reading()]], [], False), Chunk([[reading(cert="C")]], [], True)])
    ob._db.execute("UPDATE outbox SET created_ns = 0")  # two hours… and more, ago
    guard.commit([Chunk([[reading()]], [], False)])
    assert (guard.dropped_rows, guard.dropped_readings) == (1, 1)
    assert ob.count() == 2  # the legal row and the new one


def test_the_file_gives_its_space_back_once_the_backlog_is_confirmed(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    guard = OutboxGuard(ob, writer(ob), check_s=0)  # type: ignore[arg-type]
    for _ in range(5000):
        guard.commit([Chunk([[reading()]], [], False)])
    ob.checkpoint()
    before = ob.file_bytes()
    assert before > 10_000_000
    ob.ack_ranges([(1, 10**9)])
    guard.commit([])  # upkeep: incremental vacuum and WAL truncation
    after = ob.file_bytes()
    print(f"outbox file: {before} bytes with the backlog, {after} after it was confirmed")
    assert after < 200_000


def test_a_refused_write_is_held_in_order_bounded_and_counted(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    refuse = [True]
    written: list[int] = []

    def write(chunk: Chunk) -> None:
        if refuse[0]:
            raise OutboxWriteError("outbox write: database or disk is full")
        written.append(chunk.readings)

    guard = OutboxGuard(ob, write, hold_readings=5, retry_s=0,
                        legal_devices=frozenset({"meter"}))
    for n in (1, 2, 3):
        guard.commit([Chunk([[reading()] * n], [], False)])
    assert guard.unwritable is not None
    assert [a.kind for a in guard.alarms()] == [AlarmKind.OUTBOX_UNWRITABLE]
    assert (guard.held_readings, guard.lost_readings) == (5, 1)  # the oldest went
    guard.commit([Chunk([[reading("meter")]], [], True)])
    assert (guard.lost_readings, guard.lost_legal) == (3, 0)
    refuse[0] = False
    guard.commit([])
    assert written == [3, 1]
    assert guard.unwritable is None
    assert guard.alarms() == []


def test_an_outbox_that_cannot_be_opened_is_one_typed_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(OutboxOpenError, match=r"not-a-dir.*cannot be opened for writing"):
        Outbox(tmp_path / "not-a-dir" / "o.sqlite")


def test_legal_readings_are_those_under_a_certificate_a_verification_or_a_registry_device(
        tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    guard = OutboxGuard(ob, writer(ob), legal_devices=frozenset({"meter"}))  # type: ignore[arg-type]
    assert guard.is_legal(reading(cert="C1"))
    assert guard.is_legal(reading("meter"))
    verified = Reading(ts_ns=1, enterprise="e", gateway="g", device="x", channel="c",
                       quantity="energy", unit="kWh", value=1.0, verification="due_soon")
    assert guard.is_legal(verified)
    assert not guard.is_legal(reading("x"))


def test_an_old_outbox_file_gains_the_new_columns_and_incremental_vacuum(
        tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
               " payload BLOB NOT NULL, retain INTEGER NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO outbox(topic, payload) VALUES ('t', x'00')")
    db.commit()
    db.close()
    ob = Outbox(path)
    assert ob.count() == 1
    assert ob._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert ob.drop_oldest(rows=5) == (1, 0)
