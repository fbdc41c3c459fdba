"""Storage backends against real servers (tests/services.py): InfluxDB 1.6.7 through
``/write``, VictoriaMetrics through ``/api/v2/write``, and the SQLite historian."""

from __future__ import annotations

import contextlib
import math
import random
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from daq.config import Config, Enterprise, Historian, InfluxV1, InfluxV2, LoadedConfig
from daq.model import Quality, Reading, Reason, now_ns
from gateway.storage import (
    HistorianStorage,
    InfluxV1Storage,
    InfluxV2Storage,
    Storage,
    StorageError,
    open_storage,
)
from tests.services import InfluxDatabase, Server, free_port, http

pytestmark = pytest.mark.services

HOUR_NS = 3600 * 10**9


def _f32(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def make_readings(n: int, quantity: str, *, start_ns: int | None = None,
                  seed: int = 1) -> list[Reading]:
    """``n`` readings over 4 devices × 5 channels, an hour ago, sub-millisecond timestamps,
    numbers of every awkward kind (float32 widened, tiny, huge, ints, negative zero)."""
    rng = random.Random(seed)
    t0 = (now_ns() - HOUR_NS) if start_ns is None else start_ns
    out = []
    for i in range(n):
        kind = i % 5
        value: float | int = (
            _f32(rng.uniform(-500, 500)) if kind == 0 else
            rng.uniform(-1e6, 1e6) if kind == 1 else
            rng.randint(-(2**31), 2**31) if kind == 2 else
            rng.choice([1e-300, 5e-324, 1.7976931348623157e308, -0.0, 0.1]) if kind == 3 else
            rng.random()
        )
        out.append(Reading(
            ts_ns=t0 + (i // 20) * 1_000_123 + rng.randint(0, 999),  # ns digits, < 1 ms apart
            enterprise="acme", gateway="gw 1", device=f"m{i % 4}", channel=f"ch,{(i // 4) % 5}",
            quantity=quantity, unit="kW·h", value=value, raw=rng.randint(0, 65535),
            quality=Quality.GOOD if i % 7 else Quality.UNCERTAIN,
            u=rng.random() / 100 if i % 3 == 0 else None, k=2.0 if i % 3 == 0 else None,
        ))
    return out


def key(r: Reading) -> tuple[str, str, int]:
    return r.device, r.channel, r.ts_ns


def same_float(a: float, b: float) -> bool:
    """Equal, with the same sign (so -0.0 differs from 0.0). InfluxDB and VM answer JSON
    in which -0.0 becomes ``-0`` and 2.0 ``2`` (parsed as ints): callers allow that."""
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def loaded_with(storage: Historian | InfluxV1 | InfluxV2, tmp_path: Path) -> LoadedConfig:
    cfg = Config(enterprise=Enterprise(id="acme"), gateways=[], storage=storage)
    return LoadedConfig(tmp_path / "site.yaml", cfg)


# -- InfluxDB 1.x ---------------------------------------------------------------------


def select_all(st: InfluxV1Storage, measurement: str, start_ns: int,
               end_ns: int) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every point of a measurement in [start, end], keyed like :func:`key`."""
    doc = st.query(f'SELECT * FROM "{measurement}" WHERE time >= {start_ns} '
                   f"AND time <= {end_ns} GROUP BY *")
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for series in doc["results"][0].get("series", []):
        tags = series["tags"]
        cols = series["columns"]
        for row in series["values"]:
            point = dict(zip(cols, row, strict=True))
            point.update(tags)
            out[(tags["device"], tags["channel"], point["time"])] = point
    return out


def count_all(st: InfluxV1Storage, measurement: str) -> int:
    """Points of a measurement — with no time bound, so points in the future count too."""
    doc = st.query(f'SELECT count(quality) FROM "{measurement}"')
    series = doc["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


@pytest.fixture
def v1(influx_db: InfluxDatabase, tmp_path: Path) -> Iterator[InfluxV1Storage]:
    cfg = InfluxV1(kind="influxdb_v1", url=influx_db.url, database=influx_db.name)
    st = open_storage(loaded_with(cfg, tmp_path))
    assert isinstance(st, InfluxV1Storage)
    yield st
    st.close()


def test_v1_write_read_back_exactly(v1: InfluxV1Storage) -> None:
    rs = make_readings(5000, "energy")
    t0 = time.perf_counter()
    v1.write(rs)
    elapsed = time.perf_counter() - t0
    got = select_all(v1, "energy", min(r.ts_ns for r in rs), max(r.ts_ns for r in rs))
    assert len(got) == len(rs) == count_all(v1, "energy")
    for r in rs:
        p = got[key(r)]
        assert isinstance(r.value, float | int)
        assert same_float(float(p["value"]), float(r.value)) or p["value"] == r.value == 0, p
        assert p["raw"] == float(r.raw)  # type: ignore[arg-type]
        assert p["quality"] == r.quality.value
        assert p["u_std"] == r.u
        assert p["k"] == r.k
        assert "reason" not in p  # SELECT * lists only fields the measurement has
        assert "text" not in p
        assert (p["enterprise"], p["gateway"], p["unit"]) == ("acme", "gw 1", "kW·h")
    print(f"InfluxDB 1.x: {len(rs) / elapsed:,.0f} readings/s in one batch of {len(rs)}")


def test_v1_rewrite_is_idempotent(v1: InfluxV1Storage) -> None:
    rs = make_readings(1000, "power")
    v1.write(rs)
    v1.write(rs)
    v1.write(rs[::-1])
    assert count_all(v1, "power") == 1000


def test_v1_bad_string_and_odd_readings(v1: InfluxV1Storage) -> None:
    t = now_ns() - HOUR_NS
    weird = 'dev "1", =\\ x'
    rs = [
        Reading(t, "acme", "gw1", "m1", "u1", "status", "", None, quality=Quality.BAD,
                reason=Reason.TIMEOUT),
        Reading(t, "acme", "gw1", "m1", "u2", "status", "", "on \"auto\"\nline 2\\"),
        Reading(t, "acme", "gw1", "m1", "u3", "status", "", math.nan, raw="0xFFFF"),
        Reading(t, "acme", "gw1", weird, "u4", "status", "", 1, reason="note"),
    ]
    v1.write(rs)
    got = select_all(v1, "status", t, t)
    assert len(got) == 4
    assert got[("m1", "u1", t)]["quality"] == "bad"
    assert got[("m1", "u1", t)]["reason"] == "timeout"
    assert got[("m1", "u1", t)]["value"] is None
    assert got[("m1", "u2", t)]["text"] == "on \"auto\"\nline 2\\"
    assert got[("m1", "u3", t)]["text"] == "nan"
    assert got[("m1", "u3", t)].get("raw") is None
    # a backslash in a tag value cannot be written; it becomes '/', the rest survives
    assert got[('dev "1", =/ x', "u4", t)]["value"] == 1.0
    assert not got[("m1", "u1", t)].get("unit")  # empty tag: not written


def test_v1_future_points_need_an_upper_bound(v1: InfluxV1Storage) -> None:
    now = now_ns()
    rs = make_readings(10, "future", start_ns=now - HOUR_NS)
    rs += make_readings(10, "future", start_ns=now + 24 * HOUR_NS, seed=2)
    v1.write(rs)
    assert count_all(v1, "future") == 20  # no upper bound: the future is counted
    doc = v1.query('SELECT count(quality) FROM "future" WHERE time <= now()')
    assert doc["results"][0]["series"][0]["values"][0][1] == 10


def test_v1_missing_database_is_not_retryable(influxdb_v1: Server) -> None:
    with InfluxV1Storage(influxdb_v1.url, database=f"nope_{uuid.uuid4().hex[:8]}",
                         create_database=False) as st, pytest.raises(StorageError) as ei:
        st.write(make_readings(3, "x"))
    assert ei.value.status == 404
    assert not ei.value.retryable
    assert "database not found" in str(ei.value)


def test_v1_field_type_conflict_is_not_retryable(v1: InfluxV1Storage) -> None:
    t = now_ns() - HOUR_NS
    v1.write_body(f'conflict,device=m1,channel=c value="text" {t}'.encode())
    with pytest.raises(StorageError) as ei:
        v1.write(make_readings(3, "conflict"))
    assert ei.value.status == 400
    assert not ei.value.retryable
    assert "conflict" in str(ei.value)


def test_v1_unreachable_is_retryable_and_secret_stays_secret() -> None:
    port = free_port()  # nothing listens there
    st = InfluxV1Storage(f"http://127.0.0.1:{port}", database="daq", username="writer",
                         password="s3cr3t-pw", timeout_s=2.0)  # create deferred, no raise
    with pytest.raises(StorageError) as ei:
        st.write(make_readings(3, "x"))
    assert ei.value.retryable
    assert ei.value.status is None
    assert "s3cr3t" not in str(ei.value) + repr(ei.value) + repr(st)
    st.close()
    with pytest.raises(StorageError) as closed:
        st.write(make_readings(1, "x"))
    assert not closed.value.retryable


def test_v1_gzip_and_creates_database(influxdb_v1: Server) -> None:
    db = f"test_gz_{uuid.uuid4().hex[:8]}"
    with InfluxV1Storage(influxdb_v1.url, database=db, gzip=True) as st:
        try:
            rs = make_readings(200, "gz")
            st.write(rs)
            assert count_all(st, "gz") == 200
        finally:
            st.query(f'DROP DATABASE "{db}"')


def test_v1_query_error_raises(v1: InfluxV1Storage) -> None:
    with pytest.raises(StorageError) as ei:
        v1.query("SELEKT nonsense")
    assert not ei.value.retryable


# -- HTTP error mapping (a fake server on 127.0.0.1) ----------------------------------


class _Fake(BaseHTTPRequestHandler):
    status = 503
    delay_s = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.delay_s)
        body = b'{"error":"engine: cache maximum memory size exceeded"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client timed out and left
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[tuple[str, type[_Fake]]]:
    handler = type("Handler", (_Fake,), {})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), name="fake-influx",
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.mark.parametrize(("status", "retryable"),
                         [(500, True), (503, True), (429, True), (400, False), (401, False),
                          (403, False), (413, False)])
@pytest.mark.parametrize("backend", ["v1", "v2"])
def test_http_status_mapping(fake_server: tuple[str, type[_Fake]], backend: str, status: int,
                             retryable: bool) -> None:
    url, handler = fake_server
    handler.status = status
    st: Storage = (
        InfluxV1Storage(url, database="daq", create_database=False) if backend == "v1"
        else InfluxV2Storage(url, org="daq", bucket="daq", token="tok")
    )
    try:
        with pytest.raises(StorageError) as ei:
            st.write(make_readings(2, "x"))
    finally:
        st.close()
    assert ei.value.status == status
    assert ei.value.retryable is retryable
    if backend == "v1":
        assert "cache maximum memory size exceeded" in str(ei.value)


@pytest.mark.parametrize("backend", ["v1", "v2"])
def test_timeout_is_retryable(fake_server: tuple[str, type[_Fake]], backend: str) -> None:
    url, handler = fake_server
    handler.delay_s = 1.0
    st: Storage = (
        InfluxV1Storage(url, database="daq", create_database=False, timeout_s=0.2)
        if backend == "v1"
        else InfluxV2Storage(url, org="daq", bucket="daq", timeout_s=0.2)
    )
    try:
        with pytest.raises(StorageError) as ei:
            st.write(make_readings(2, "x"))
    finally:
        st.close()
    assert ei.value.retryable


def test_v2_unreachable_is_retryable() -> None:
    with socket.socket() as s:  # a port that refuses connections
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with InfluxV2Storage(f"http://127.0.0.1:{port}", org="daq", bucket="daq",
                             timeout_s=2.0) as st, pytest.raises(StorageError) as ei:
            st.write(make_readings(2, "x"))
    assert ei.value.retryable


# -- VictoriaMetrics through /api/v2/write --------------------------------------------


def vm_export(vm: Server, match: str) -> list[dict[str, Any]]:
    """Every series matching ``match`` as exported by VM (after a forced flush)."""
    assert http("GET", f"{vm.url}/internal/force_flush").status == 200
    resp = http("GET", f"{vm.url}/api/v1/export?{urlencode({'match[]': match})}")
    assert resp.status == 200, resp.data
    return [orjson.loads(line) for line in resp.data.splitlines() if line.strip()]


def vm_readings(n: int, quantity: str, seed: int = 3) -> list[Reading]:
    """Realistic values, one magnitude per series: VM scales the values of a block to one
    decimal exponent, so a series mixing 1e-5 and 1e12 loses the small ones."""
    rng = random.Random(seed)
    t0 = (now_ns() - HOUR_NS) // 1_000_000 * 1_000_000
    makers = [lambda: _f32(rng.gauss(230, 2)), lambda: round(rng.uniform(0, 1e6), 3),
              lambda: rng.randint(0, 65535), lambda: rng.uniform(-50, 50),
              lambda: round(rng.uniform(49.9, 50.1), 2)]
    out = []
    for i in range(n):
        s = i % 20
        out.append(Reading(
            ts_ns=t0 + (i // 20) * 1_000_000 + rng.randint(0, 999_999),  # one per ms
            enterprise="acme", gateway="gw 1", device=f"m{s % 4}", channel=f"ch,{s // 4}",
            quantity=quantity, unit="kW·h", value=makers[s % 5](), raw=i,
        ))
    return out


def test_vm_v2_write_read_back(victoria_metrics: Server, tmp_path: Path) -> None:
    """What VM keeps of a reading written through /api/v2/write (measured with 1.79):

    * timestamps: milliseconds, the ns timestamp floored (x.999999 ms stays x ms);
    * values: about 12 significant digits (a decimal mantissa with an exponent shared by
      a block), so a float64 is not always exact: 230.1 is, float32 230.1 widened to
      230.10000610351562 comes back as 230.1000061035;
    * a rewrite of the same points adds duplicate samples (no dedup without
      ``-dedup.minScrapeInterval``); string fields are stored as 0.
    """
    quantity = f"vmq{uuid.uuid4().hex[:8]}"
    cfg = InfluxV2(kind="influxdb_v2", url=victoria_metrics.url, org="daq", bucket="daq")
    st = open_storage(loaded_with(cfg, tmp_path))
    assert isinstance(st, InfluxV2Storage)
    rs = vm_readings(5000, quantity)
    t = rs[0].ts_ns // 1_000_000 * 1_000_000 - 10_000_000
    rs += [Reading(t + 999_999, "acme", "gw 1", "edge", "floor", quantity, "V", 230.1),
           Reading(t + 1_000_000 + 1, "acme", "gw 1", "edge", "f32", quantity, "V",
                   _f32(230.1))]
    t0 = time.perf_counter()
    st.write(rs)
    elapsed = time.perf_counter() - t0
    st.write(rs[:100])  # a rewrite adds duplicates
    st.close()
    got: dict[tuple[str, str, int], list[float]] = {}
    for s in vm_export(victoria_metrics, f'{{__name__="{quantity}_value"}}'):
        m = s["metric"]
        assert m["enterprise"] == "acme"
        assert m["gateway"] == "gw 1"
        assert "db" not in m
        assert "bucket" not in m
        for v, ts in zip(s["values"], s["timestamps"], strict=True):
            got.setdefault((m["device"], m["channel"], ts), []).append(float(v))
    assert sum(len(v) for v in got.values()) == len(rs) + 100
    exact = 0
    for r in rs:
        assert isinstance(r.value, float | int)
        values = got[(r.device, r.channel, r.ts_ns // 1_000_000)]  # floored to the ms
        assert len(values) in (1, 2)
        for v in values:
            assert v == pytest.approx(r.value, rel=1e-12, abs=1e-12)
            exact += v == r.value
    assert exact >= len(rs) * 0.6  # ints and short decimals (3 of 5 series kinds): exact
    assert got[("edge", "floor", t // 1_000_000)] == [230.1]
    assert got[("edge", "f32", t // 1_000_000 + 1)] == [230.1000061035]
    # string fields arrive as the number 0: quality does not survive in VM
    quality = vm_export(victoria_metrics, f'{{__name__="{quantity}_quality"}}')
    assert {v for s in quality for v in s["values"]} == {0}
    print(f"VM /api/v2/write: {len(rs) / elapsed:,.0f} readings/s in one batch of {len(rs)}")


def test_vm_silently_drops_future_points(victoria_metrics: Server) -> None:
    quantity = f"vmf{uuid.uuid4().hex[:8]}"
    future = make_readings(5, quantity, start_ns=now_ns() + 365 * 24 * HOUR_NS)
    with InfluxV2Storage(victoria_metrics.url, org="daq", bucket="daq") as st:
        st.write(future)  # 204, no error
    assert vm_export(victoria_metrics, f'{{__name__="{quantity}_value"}}') == []


# -- the embedded historian -----------------------------------------------------------


def test_historian_round_trip_and_idempotency(tmp_path: Path) -> None:
    st = open_storage(loaded_with(Historian(kind="historian", path="var/h.sqlite"), tmp_path))
    assert isinstance(st, HistorianStorage)
    assert st.path == tmp_path / "var" / "h.sqlite"
    rs = make_readings(2000, "energy")
    t = rs[-1].ts_ns + 1
    odd = [
        Reading(t, "acme", "gw1", "m1", "s", "status", "", None, quality=Quality.BAD,
                reason=Reason.TIMEOUT),
        Reading(t, "acme", "gw1", "m1", "t", "status", "", "on \"auto\"", raw="ON"),
        Reading(t, "acme", "gw1", "m1", "n", "status", "", math.nan),
        Reading(t, "acme", "gw1", "m1", "i", "status", "", -math.inf, u=math.nan),
    ]
    t0 = time.perf_counter()
    st.write(rs + odd)
    elapsed = time.perf_counter() - t0
    st.write(rs)
    st.write(rs[:100])
    assert st.count() == len(rs) + len(odd)
    for dev in ("m0", "m1"):
        for ch in ("ch,0", "ch,4"):
            expected = sorted((r for r in rs if r.device == dev and r.channel == ch),
                              key=lambda r: r.ts_ns)
            got = st.series(dev, ch)
            assert len(got) == len(expected)
            for a, b in zip(got, expected, strict=True):
                assert isinstance(b.value, float | int)
                assert a.ts_ns == b.ts_ns
                assert isinstance(a.value, float)
                assert same_float(a.value, float(b.value))
                assert a.raw == b.raw
                assert (a.quality, a.u, a.k, a.unit, a.quantity) == (
                    b.quality, b.u, b.k, b.unit, b.quantity)
    by_channel = {r.channel: r for r in st.series("m1", "s") + st.series("m1", "t")
                  + st.series("m1", "n") + st.series("m1", "i")}
    assert by_channel["s"].value is None
    assert by_channel["s"].reason == "timeout"
    assert by_channel["t"].value == 'on "auto"'
    assert by_channel["t"].raw is None  # a string raw is not kept (as in line protocol)
    assert math.isnan(by_channel["n"].value)  # type: ignore[arg-type]
    assert by_channel["i"].value == -math.inf
    assert by_channel["i"].u is None
    latest = st.latest("m1")
    assert {r.channel for r in latest} == {f"ch,{i}" for i in range(5)} | set("stni")
    assert all(r.ts_ns == t for r in latest if r.quantity == "status")
    assert len(st.latest()) == 4 * 5 + 4
    mid = rs[len(rs) // 2].ts_ns
    assert st.count("m0", "ch,0", start_ns=mid) + st.count("m0", "ch,0", end_ns=mid) == \
        st.count("m0", "ch,0")
    st.close()
    st.close()
    with pytest.raises(StorageError):
        st.write(rs[:1])
    print(f"historian: {len(rs) / elapsed:,.0f} readings/s in one transaction of {len(rs)}")


def test_historian_writer_thread_and_concurrent_reader(tmp_path: Path) -> None:
    st = HistorianStorage(tmp_path / "h.sqlite")  # opened here, written from another thread
    batches = [make_readings(500, "p", start_ns=10**18 + i * 10**12, seed=i) for i in range(10)]
    counts: list[int] = []

    def writer() -> None:
        for b in batches:
            st.write(b)

    thread = threading.Thread(target=writer, name="writer")
    thread.start()
    while thread.is_alive():
        counts.append(st.count())  # WAL: readers never block the writer
    thread.join()
    assert st.count() == 5000
    assert counts == sorted(counts)
    assert all(c % 500 == 0 for c in counts)  # one transaction per write call
    st.close()
    reopened = HistorianStorage(tmp_path / "h.sqlite")
    assert reopened.count() == 5000
    reopened.close()


def test_storage_protocol() -> None:
    for cls in (HistorianStorage, InfluxV1Storage, InfluxV2Storage):
        assert callable(cls.write)
        assert callable(cls.close)
