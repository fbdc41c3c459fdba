"""The chaos suite's books, kept against the simulators' truth.

* **acquired**: every value the simulated meters served (``served(channel)``: what a client
  decodes from each answered request), whoever asked.
* **committed**: the readings of the rows the gateway committed to its outbox. The outbox's
  ids are sequence numbers that are never reused (``AUTOINCREMENT``), so ``sqlite_sequence``
  says how many rows were ever committed, 1…max, even after they were confirmed and deleted;
  the ingest keeps every stored message as evidence (``ingest.evidence: all``), keyed by that
  sequence number, so what each of them carried can be read back. Every sequence number up
  to the outbox's highest must be there: a committed message that never reached storage
  shows as a missing number. (In a control run that loses messages, what the missing ones
  carried is counted from the truth: the values lost away from any cut.)
* **stored**: the points InfluxDB holds for the site, each equal to the value the meter
  served for it (the latest answer at or before the reading's timestamp), none twice.
* **lost**: acquired values with no stored point. A SIGKILL loses, by design, what the
  gateway had acquired but not yet committed (at most one commit interval, 20 ms, plus the
  request in flight), and any stop cuts the request in flight; so each lost value must lie
  next to a **cut** (a kill or the final stop): no value of its channel was stored between
  the cut and it. A value lost anywhere else is a bug.
* **duplicates**: messages the ingest stored again, by its sequence tracking
  (``IngestStats.duplicates``; a subprocess ingest logs each at INFO). Harmless: a reading
  overwrites itself. The tracking restarts empty with each ingest process.
* **catch-up**: seconds from the end of a disturbance until storage had confirmed every row
  committed before it (the outbox holds no row up to the highest id at that moment).
  Measured and printed, never asserted.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daq.config import LoadedConfig, load_config
from daq.model import Value
from daq.payload import data_topic, decode_unverified
from gateway.acquisition.publisher import Publisher
from gateway.ingest.evidence import EvidenceStore
from gateway.mqtt import unique_client_id
from gateway.outbox import Outbox
from simulators.fleet import MeterFleet, MeterSpec
from tests.services import influx_query, kill_process, start_process, stop_process

REPO = Path(__file__).resolve().parents[3]
METERS = (("sdm630", "incomer"), ("dtsu666", "furnace-1"), ("dtsu666", "compressor-1"))
INTERVAL_MS = 100
GATEWAY = "gw-1"
ACK_TIMEOUT_S = 2.0  # the default is 30 s: short here, so resends happen within a test
WAIT_S = 90.0  # how long anything may take before a test fails (a hang, not a measurement)


def fleet() -> MeterFleet:
    return MeterFleet([MeterSpec(p, seed=seed, name=n) for seed, (p, n) in enumerate(METERS)])


@dataclass
class Site:
    """Three simulated meters polled every 100 ms by gateway gw-1; InfluxDB 1.x storage;
    the ingest keeps every stored message as evidence."""

    tmp: Path
    enterprise: str
    meters: MeterFleet
    loaded: LoadedConfig
    influx_url: str
    database: str
    cuts: list[int] = field(default_factory=list)  # time.time_ns() of each kill or stop

    @property
    def file(self) -> Path:
        return self.tmp / "site.yaml"

    @property
    def outbox(self) -> Path:
        return self.loaded.resolve("outbox.sqlite")

    def cut(self) -> None:
        """Mark a kill or a stop of the gateway (just before it happens)."""
        self.cuts.append(time.time_ns())


def make_site(tmp: Path, meters: MeterFleet, mqtt_port: int, influx_url: str,
              *, ingest_client_id: str | None = None, confirm: str = "stored") -> Site:
    enterprise = f"t{uuid.uuid4().hex[:10]}"
    buses = "".join(f"""
      - id: bus-{name}
        protocol: modbus-tcp
        host: 127.0.0.1
        port: {meters[name].port}
        timeout_ms: 2000
        devices:
          - id: {name}
            profile: {meters[name].profile.id}
            interval_ms: {INTERVAL_MS}
""" for name in meters)
    client_id = f"\n  client_id: {ingest_client_id}" if ingest_client_id else ""
    database = f"chaos_{enterprise}"
    (tmp / "site.yaml").write_text(f"""
enterprise: {{id: {enterprise}}}
gateways:
  - id: {GATEWAY}
    outbox: outbox.sqlite
    signing_key: {GATEWAY}.key
    delivery: {{ack_timeout_s: {ACK_TIMEOUT_S}, confirm: {confirm}}}
    buses:{buses}
mqtt: {{host: 127.0.0.1, port: {mqtt_port}}}
ingest:
  subscription: daq/{enterprise}/#{client_id}
  batch_interval_ms: 50
  spool: spool.sqlite
  dead_letter: dead.sqlite
  evidence: all
  evidence_store: evidence.sqlite
  registry: registry.sqlite
storage: {{kind: influxdb_v1, url: "{influx_url}", database: {database}, timeout_s: 2}}
""")
    return Site(tmp, enterprise, meters, load_config(tmp / "site.yaml"), influx_url, database)


# -- the outbox, read from the test while a gateway writes it --------------------------------


@contextlib.contextmanager
def _read(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path, timeout=10)
    try:
        yield db
    finally:
        db.close()


def committed_seq(path: Path) -> int:
    """The highest sequence number (outbox id) ever committed; 0 before the first."""
    if not path.exists():
        return 0
    with _read(path) as db:
        try:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        except sqlite3.OperationalError:  # no table yet: the gateway is just starting
            return 0
    return 0 if row is None else int(row[0])


def unconfirmed(path: Path, upto: int | None = None) -> int:
    """Rows still in the outbox (with an id up to ``upto``): not confirmed by storage."""
    with _read(path) as db:
        n: int = db.execute("SELECT COUNT(*) FROM outbox WHERE id <= ?",
                            (upto if upto is not None else 1 << 62,)).fetchone()[0]
    return n


def epoch_of(path: Path) -> str:
    with _read(path) as db:
        return str(db.execute("SELECT value FROM outbox_meta WHERE key = 'epoch'").fetchone()[0])


async def wait_until(predicate: Callable[[], object], what: str,
                     timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def catch_up(site: Site) -> float:
    """Call at the end of a disturbance: seconds until storage has confirmed every row the
    gateway had committed by then."""
    start = time.monotonic()
    upto = committed_seq(site.outbox)
    await wait_until(lambda: unconfirmed(site.outbox, upto) == 0,
                     f"rows up to {upto} not confirmed by storage after {WAIT_S:.0f} s")
    return time.monotonic() - start


async def drain(site: Site) -> None:
    """What a restarted gateway does first, without polling: send what its outbox holds
    until storage has confirmed every row (after the gateway was stopped or killed)."""
    gw = site.loaded.gateway()
    box = Outbox(site.outbox)
    pub = Publisher(site.loaded, box, unique_client_id("daq", "chaos-drain"),
                    enterprise=site.enterprise, gateway=gw.id, delivery=gw.delivery)
    pub.start()
    task = asyncio.create_task(pub.run(), name="chaos-drain")
    try:
        flushed = await pub.flush(WAIT_S)
        assert flushed, f"{box.count()} outbox rows not confirmed after {WAIT_S:.0f} s"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.stop()
        box.close()


# -- subprocesses: `python -m daq.cli gateway|ingest` -----------------------------------------


class Daq:
    """``python -m daq.cli -v ROLE SITE [ARGS]`` as a service manager runs it, in its own
    process group; each life logs to ``ROLE-N.log`` beside the site file. Use as a context
    manager: whatever happens, nothing of it is left running."""

    def __init__(self, site: Site, role: str, *args: str) -> None:
        self.site, self.role, self.args = site, role, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives = 0

    def __enter__(self) -> Daq:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def start(self) -> None:
        assert self.proc is None, f"{self.role} is running"
        self.lives += 1
        self.proc = start_process(
            [sys.executable, "-m", "daq.cli", "-v", self.role, str(self.site.file), *self.args],
            self.site.tmp / f"{self.role}-{self.lives}.log", REPO)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, nothing."""
        if self.proc is not None:
            kill_process(self.proc)
            self.proc = None

    def stop(self) -> int:
        """SIGTERM, a clean stop; the exit status."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        stop_process(proc, timeout_s=30)
        return proc.returncode

    def log(self) -> str:
        return "".join((self.site.tmp / f"{self.role}-{n}.log").read_text(errors="replace")
                       for n in range(1, self.lives + 1))


def logged_duplicates(ingest: Daq) -> int:
    """Messages a subprocess ingest stored again, by its sequence tracking (one INFO line
    each), over all its lives."""
    return ingest.log().count("stored again (a resend)")


# -- the books ---------------------------------------------------------------------------------


Key = tuple[str, str, int]  # device, channel, ts_ns


@dataclass
class Books:
    acquired: int  # values the meters served
    messages: int  # outbox rows ever committed (the highest sequence number)
    committed: int  # readings in them (those that reached storage, when some did not)
    stored: int  # points in storage
    lost: int  # acquired values not stored
    lost_at_stop: int  # of those: next to the final stop only (the request in flight)
    foreign: int  # points in storage not from gw-1 (must be 0)
    missing_messages: int = 0  # committed rows that never reached storage (must be 0)
    unexplained: int = 0  # lost values away from any cut (must be 0)

    @property
    def note(self) -> str:
        if not self.lost:
            return ""
        kills = self.lost - self.lost_at_stop - self.unexplained
        parts = [f"{kills} at kills (acquired, not committed)" if kills else "",
                 f"{self.lost_at_stop} in flight at the final stop" if self.lost_at_stop else "",
                 f"{self.unexplained} NOT at a cut, in {self.missing_messages} committed "
                 "messages never stored" if self.unexplained else ""]
        return "lost: " + ", ".join(p for p in parts if p)


def stored_points(site: Site) -> dict[tuple[str, str, str], list[tuple[int, Value | None]]]:
    """Every point of the site's enterprise in storage: (gateway, device, channel) →
    [(ts_ns, value)] in time order."""
    res = influx_query_at(site, f"SELECT value, quality FROM /.*/ WHERE enterprise = "
                                f"'{site.enterprise}' AND time <= now() + 1h "
                                "GROUP BY gateway, device, channel")
    out: dict[tuple[str, str, str], list[tuple[int, Value | None]]] = {}
    for series in res.get("series", []):
        tags = series["tags"]
        key = (tags["gateway"], tags["device"], tags["channel"])
        out.setdefault(key, []).extend((int(t), v) for t, v, _q in series["values"])
    for points in out.values():
        points.sort(key=lambda p: p[0])
    return out


def influx_query_at(site: Site, q: str) -> dict[str, list[dict[str, object]]]:
    from tests.services import Server

    server = Server("influxdb", site.influx_url, int(site.influx_url.rsplit(":", 1)[1]))
    doc = influx_query(server, q, db=site.database)
    result = doc["results"][0]  # type: ignore[index]
    assert isinstance(result, dict)
    return result


def committed_readings(site: Site) -> tuple[int, set[Key], list[int]]:
    """(highest sequence number committed, the readings of the committed rows that storage
    holds, the committed rows it does not hold). Storage must have confirmed every row (the
    outbox is empty); what it holds is what the ingest kept as evidence."""
    top = committed_seq(site.outbox)
    assert unconfirmed(site.outbox) == 0, "rows left unconfirmed in the outbox"
    epoch = epoch_of(site.outbox)
    store = EvidenceStore(site.loaded.resolve("evidence.sqlite"))
    try:
        rows = [r for r in store.rows() if r[:3] == (site.enterprise, GATEWAY, epoch)]
    finally:
        store.close()
    seqs = [seq for *_, seq, _ in rows]
    missing = sorted(set(range(1, top + 1)) - set(seqs))
    assert max(seqs, default=0) <= top, f"stored rows beyond the outbox's {top}: {seqs[-5:]}"
    topic = data_topic(site.enterprise, GATEWAY)
    keys: set[Key] = set()
    count = 0
    for *_, payload in rows:
        batch = decode_unverified(payload, topic, now_ns=time.time_ns())
        count += len(batch.readings)
        keys |= {(r.device, r.channel, r.ts_ns) for r in batch.readings}
    assert len(keys) == count, "two committed readings of one channel at one instant"
    return top, keys, missing


def books(site: Site, *, expect_loss: bool = False) -> Books:
    """Check the site's books (see the module docstring) and return the counts.
    ``expect_loss``: a control run of a configuration known to lose readings; the losses
    must show (committed rows that never reached storage, values lost away from any cut)."""
    messages, committed, missing = committed_readings(site)
    points = stored_points(site)
    foreign = sum(len(v) for (gw, *_), v in points.items() if gw != GATEWAY)
    stored = {(dev, ch, ts) for (gw, dev, ch), v in points.items() if gw == GATEWAY
              for ts, _ in v}
    assert stored == committed, (
        f"{len(committed - stored)} committed readings not stored, "
        f"{len(stored - committed)} stored that were never committed")
    acquired = lost = at_stop = 0
    unexplained: list[str] = []
    final = site.cuts[-1] if site.cuts else None
    for device in site.meters:
        sim = site.meters[device]
        for ch in sim.profile.channels:
            served = sim.served(ch.id)
            acquired += len(served)
            times = [t for t, _ in served]
            matched = [False] * len(served)
            for ts, value in points.get((GATEWAY, device, ch.id), []):
                i = bisect.bisect_right(times, ts) - 1
                assert i >= 0, f"{device}/{ch.id} at {ts}: stored before anything was served"
                assert value == served[i][1], (
                    f"{device}/{ch.id} at {ts}: stored {value!r}, served {served[i][1]!r}")
                assert not matched[i], f"{device}/{ch.id}: one served value stored twice"
                matched[i] = True
            for i, (t, _) in enumerate(served):
                if matched[i]:
                    continue
                lost += 1
                before = max((times[j] for j in range(i) if matched[j]), default=-1)
                after = min((times[j] for j in range(i + 1, len(served)) if matched[j]),
                            default=1 << 63)
                cuts = [c for c in site.cuts if before < c < after]
                if not cuts:
                    unexplained.append(f"{device}/{ch.id} served at {t}")
                elif cuts == [final]:
                    at_stop += 1
    if expect_loss:
        assert missing, "the control lost no message"
        assert unexplained, "the control lost no reading"
    else:
        assert not missing, f"committed rows never stored: {missing[:20]} ({len(missing)})"
        assert not unexplained, (f"{len(unexplained)} values lost away from any kill or "
                                 f"stop: {unexplained[:10]}")
    assert acquired - lost == len(stored)
    # a control's missing rows carried what was lost away from any cut (by the truth)
    return Books(acquired, messages, len(committed) + len(unexplained), len(stored), lost,
                 at_stop, foreign, len(missing), len(unexplained))


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    scenario: str
    books: Books
    duplicates: int
    catch_up_s: float | None
    note: str = ""


ROWS: list[Row] = []


def record(row: Row) -> None:
    ROWS.append(row)
    for line in table([row])[2:]:
        print(line)


def table(rows: list[Row]) -> list[str]:
    head = ("scenario", "acquired", "committed", "stored", "lost", "duplicates", "catch-up s")
    cells = [head] + [(r.scenario, str(r.books.acquired), str(r.books.committed),
                       str(r.books.stored), str(r.books.lost), str(r.duplicates),
                       "—" if r.catch_up_s is None else f"{r.catch_up_s:.1f}") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]

    def line(c: tuple[str, ...]) -> str:
        return "| " + " | ".join(x.ljust(w) if i == 0 else x.rjust(w)
                                 for i, (x, w) in enumerate(zip(c, widths, strict=True))) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = [line(cells[0]), sep, *(line(c) for c in cells[1:])]
    notes = [f"  {r.scenario}: " + "; ".join(n for n in (r.note, r.books.note) if n)
             for r in rows if r.note or r.books.note]
    return out + notes
