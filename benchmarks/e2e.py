"""End to end: simulated meters → gateway → Mosquitto → ingest → InfluxDB 1.x, as separate
processes, each one's CPU read from ``/proc/<pid>/stat``.

Processes (all on 127.0.0.1, all files in one temporary directory, all stopped at the end):

* a private ``influxd`` (Debian's InfluxDB 1.x) and a private Mosquitto
  (:func:`simulators.broker.private_mosquitto`, which raises ``max_queued_messages``);
* simulators: ``daq simulate meter --profile P --port FIRST --count N``, SDM630 and DTSU666
  meters in equal numbers, ``--sim-procs`` processes per profile;
* ``python -m benchmarks.ingest_proc`` and ``python -m benchmarks.gateway_proc``: the product's
  ``Ingest`` and ``GatewayService`` with a signal-driven JSON report (see those modules).

The wire is the product's default: ``daq.data/2`` batches signed with the gateway's Ed25519
key (made here and pinned in the site's registry before the ingest starts, as ``daq keys
pin`` does), verified by the ingest, and deleted from the gateway's outbox only when the
ingest's ``daq.ack/1`` confirms them stored (``delivery.confirm: stored``): the costs of
signing, verifying and the end-to-end acknowledgement are in every number.

Measurement: after ``warmup_s`` a snapshot of every process's CPU time and of the gateway's and
ingest's counters; ``duration_s`` later a second one. Then the gateway is stopped (what is left
in its outbox is sent), the ingest is waited for until it has written everything acquired, and
the readings stored are counted by InfluxQL on the server.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.procs import (
    Influx,
    Proc,
    cpu_seconds,
    free_port_range,
    machine_cpu,
    private_influxd,
    start,
)
from calibration.keys import pin_site_keys
from calibration.registry import Registry
from daq.config import load_config
from simulators.broker import Broker, private_mosquitto

PROFILES = ("sdm630", "dtsu666")
CHANNELS_PER_METER = 14  # both profiles
DATABASE = "bench"
ENTERPRISE = "bench"

Log = Callable[[str], None]


@dataclass(frozen=True)
class E2EOptions:
    meters: int = 1500
    duration_s: float = 60.0
    interval_ms: int = 1000
    warmup_s: float = 8.0
    sim_procs: int = 1  # simulator processes per profile
    batch_size: int = 5000
    batch_interval_ms: int = 200
    keep: bool = False  # keep the temporary directory (logs, configs)
    # the product's defaults; the others only to isolate what the acknowledgement and the
    # verification cost (the gateway always signs)
    confirm: str = "stored"  # delivery.confirm: stored (daq.ack/1) or broker (PUBACK)
    verify: bool = True  # ingest.require_signatures


def mosquitto_pid(port: int) -> int | None:
    """The pid of the Mosquitto whose config listens on ``port`` (private_mosquitto does not
    hand out its Popen)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not argv or not argv[0].endswith(b"mosquitto") or b"-c" not in argv:
                continue
            conf = Path(argv[argv.index(b"-c") + 1].decode())
            if f"listener {port} " in conf.read_text():
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


def site_yaml(tmp: Path, opts: E2EOptions, ports: list[tuple[str, int]], broker: Broker,
              influx_url: str) -> str:
    buses = []
    for n, (profile, port) in enumerate(ports, 1):
        # SDM630: one 76-register request per poll (max_gap 125); DTSU666: two requests
        # (0x101E+12 and 0x2006+64), its two register blocks being 0x1000 apart
        buses.append(f"""\
      - id: bus-{n:05d}
        protocol: modbus-tcp
        host: 127.0.0.1
        port: {port}
        timeout_ms: 2000
        devices:
          - id: {profile}-{n:05d}
            profile: {profile}
            interval_ms: {opts.interval_ms}
            max_gap: 125
""")
    return f"""\
enterprise: {{id: {ENTERPRISE}}}
gateways:
  - id: gw-1
    outbox: {tmp}/gw-outbox.sqlite
    signing_key: {tmp}/gw-1-signing.key
    delivery: {{confirm: {opts.confirm}}}
    buses:
{"".join(buses)}
mqtt: {{host: {broker.host}, port: {broker.port}, client_id_prefix: bench}}
ingest:
  subscription: daq/{ENTERPRISE}/#
  batch_size: {opts.batch_size}
  batch_interval_ms: {opts.batch_interval_ms}
  spool: {tmp}/ingest-spool.sqlite
  registry: {tmp}/registry.sqlite
  require_signatures: {str(opts.verify).lower()}
storage:
  kind: influxdb_v1
  url: {influx_url}
  database: {DATABASE}
"""


@contextlib.contextmanager
def started(procs: list[Proc]) -> Iterator[list[Proc]]:
    """Stop every process in ``procs`` (as appended) on the way out, last started first."""
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGKILL if p.role.startswith("sim") else signal.SIGTERM, 15.0)


def start_simulators(tmp: Path, opts: E2EOptions, procs: list[Proc], log: Log
                     ) -> list[tuple[str, int]]:
    """Start the simulator processes; return (profile, port) per meter, alternating profiles
    so that buses of both kinds are spread evenly over the config."""
    counts = {p: opts.meters // 2 + (1 if i < opts.meters % 2 else 0)
              for i, p in enumerate(PROFILES)}
    base = free_port_range(opts.meters)
    by_profile: dict[str, list[int]] = {}
    next_port = base
    waiting: list[tuple[Proc, int]] = []
    for seed_base, profile in enumerate(PROFILES):
        n = counts[profile]
        per = math.ceil(n / opts.sim_procs)
        by_profile[profile] = list(range(next_port, next_port + n))
        for k, first in enumerate(range(0, n, per)):
            count = min(per, n - first)
            args = [sys.executable, "-m", "daq.cli", "simulate", "meter", "--profile", profile,
                    "--port", str(next_port + first), "--count", str(count),
                    "--seed", str(seed_base * 100_000 + first)]
            p = start(f"sim-{profile}-{k}", args, tmp / f"sim-{profile}-{k}.log", cwd=tmp,
                      capture_stdout=True)
            procs.append(p)
            waiting.append((p, count))
        next_port += n
    for p, count in waiting:
        for _ in range(count):
            line = p.next_line(60.0)
            if " meter on " not in line:
                raise RuntimeError(f"{p.role}: unexpected output {line!r}\n{p.log_tail()}")
    log(f"simulators: {counts} meters on 127.0.0.1:{base}…{next_port - 1} "
        f"in {len(waiting)} processes")
    out: list[tuple[str, int]] = []
    sdm, dtsu = by_profile[PROFILES[0]], by_profile[PROFILES[1]]
    for i in range(max(len(sdm), len(dtsu))):
        if i < len(sdm):
            out.append((PROFILES[0], sdm[i]))
        if i < len(dtsu):
            out.append((PROFILES[1], dtsu[i]))
    return out


def cpu_by_role(procs: list[Proc], extra: dict[str, int]) -> dict[str, float]:
    cpu: dict[str, float] = {}
    for p in procs:
        role = "simulators" if p.role.startswith("sim") else p.role
        cpu[role] = cpu.get(role, 0.0) + p.cpu()
    for role, pid in extra.items():
        cpu[role] = cpu_seconds(pid)
    return cpu


def latency_ms(samples: Path, lo_ns: int, hi_ns: int) -> dict[str, float] | None:
    if not samples.exists():
        return None
    data = np.load(samples)
    if not len(data):
        return None
    sel = data[(data[:, 0] >= lo_ns) & (data[:, 0] < hi_ns)]
    if not len(sel):
        return None
    lat = (sel[:, 1] - sel[:, 0]) / 1e6
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(lat.max()), "samples": len(lat)}


def pin_keys(cfg: Path) -> list[str]:
    """Make each gateway's signing key and pin it in the site's registry (``daq keys pin``):
    the ingest stores only what a pinned key signed. Returns the key ids."""
    loaded = load_config(cfg)
    with Registry(loaded.keys_registry()) as reg:
        return [kid for _gw, kid, _made in
                pin_site_keys(reg, loaded, "benchmark", "benchmark site commissioned")]


def run_e2e(opts: E2EOptions, log: Log) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="daq-bench-"))
    try:
        return _run(tmp, opts, log)
    finally:
        if opts.keep:
            log(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _run(tmp: Path, opts: E2EOptions, log: Log) -> dict[str, Any]:
    run_start_ns = time.time_ns()
    with private_influxd(tmp / "influxd") as influx, private_mosquitto() as broker, \
            started([]) as procs:
        extra = {"influxd": influx.proc.pid}
        mpid = mosquitto_pid(broker.port)
        if mpid is not None:
            extra["mosquitto"] = mpid
        log(f"influxd {influx.url} (pid {influx.proc.pid}), mosquitto 127.0.0.1:{broker.port} "
            f"(pid {mpid})")
        ports = start_simulators(tmp, opts, procs, log)
        cfg = tmp / "site.yaml"
        cfg.write_text(site_yaml(tmp, opts, ports, broker, influx.url))
        pinned = pin_keys(cfg)
        log(f"signing key {', '.join(pinned)} pinned in the site's registry")
        samples = tmp / "latency.npy"
        py = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        ingest = start("ingest", [py, "-m", "benchmarks.ingest_proc", str(cfg), str(samples)],
                       tmp / "ingest.log", cwd=Path.cwd(), capture_stdout=True, env=env)
        procs.append(ingest)
        if ingest.next_json(60.0).get("kind") != "subscribed":
            raise RuntimeError(f"ingest did not subscribe:\n{ingest.log_tail()}")
        gateway = start("gateway", [py, "-m", "benchmarks.gateway_proc", str(cfg)],
                        tmp / "gateway.log", cwd=Path.cwd(), capture_stdout=True, env=env)
        procs.append(gateway)
        log(f"gateway and ingest started; warming up {opts.warmup_s:.0f} s")
        time.sleep(opts.warmup_s)
        return _measure(opts, log, procs, extra, influx, gateway, ingest, samples,
                        run_start_ns)


def _next_phase(interval_ns: int, phase: float = 0.9) -> int:
    """The next wall-clock time (ns) at ``phase`` of the poll interval (ticks are aligned to
    multiples of the interval)."""
    now = time.time_ns()
    at = now // interval_ns * interval_ns + int(phase * interval_ns)
    return at if at > now + 10_000_000 else at + interval_ns


def _measure(opts: E2EOptions, log: Log, procs: list[Proc], extra: dict[str, int],
             influx: Influx, gateway: Proc, ingest: Proc, samples: Path,
             run_start_ns: int) -> dict[str, Any]:
    for p in procs:
        if not p.alive():
            raise RuntimeError(f"{p.role} exited early:\n{p.log_tail()}")
    # both snapshots at the same phase of the poll interval (late in it, when the burst of
    # aligned polls that starts every tick has drained), the window a whole number of
    # intervals: otherwise a window edge inside a burst shifts the rate by up to one burst
    # (meters × 14 readings: 5 % of a 20 s window)
    interval_ns = opts.interval_ms * 1_000_000
    intervals = max(1, round(opts.duration_s * 1e9 / interval_ns))
    start_ns = _next_phase(interval_ns)
    time.sleep(max(0.0, (start_ns - time.time_ns()) / 1e9))
    m0 = machine_cpu()
    c0 = cpu_by_role(procs, extra)
    g0 = gateway.request()
    i0 = ingest.request()
    if i0["unsigned_messages"]:
        raise RuntimeError(f"the ingest refused {i0['unsigned_messages']} messages as not "
                           f"signed by a pinned key (is the gateway's key pinned?):\n"
                           f"{ingest.log_tail()}")
    t0 = time.monotonic()
    end = t0 + (start_ns + intervals * interval_ns - time.time_ns()) / 1e9
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(10.0, left))
        if time.monotonic() < end - 1:
            g = gateway.request()
            rate = (g["acquired"] - g0["acquired"]) / ((g["t_ns"] - g0["t_ns"]) / 1e9)
            log(f"  {time.monotonic() - t0:5.0f} s: {rate:9,.0f} readings/s acquired, "
                f"outbox {g['outbox']}, failed polls {g['failures'] - g0['failures']}")
    c1 = cpu_by_role(procs, extra)
    m1 = machine_cpu()
    g1 = gateway.request()
    i1 = ingest.request()
    window_s = (g1["t_ns"] - g0["t_ns"]) / 1e9
    acquired_window = g1["acquired"] - g0["acquired"]
    published_window = g1["published"] - g0["published"]
    written_window = i1["written_readings"] - i0["written_readings"]

    log("stopping the gateway")
    gateway.send(signal.SIGTERM)
    t_stop = time.monotonic()
    try:
        gf = gateway.next_json(180.0)
    except RuntimeError:
        (Path(samples).parent / "gateway-stacks.txt").write_text(gateway.dump_stacks())
        raise
    stop_s = time.monotonic() - t_stop
    gateway.popen.wait(30)
    log(f"gateway stopped: {gf['acquired']:,} readings acquired; "
        f"{gf['left_in_outbox']} messages left in its outbox, sent in {gf['drain_s']:.1f} s; "
        f"stopping took {stop_s:.1f} s")
    deadline = time.monotonic() + 300
    written = i1["written_readings"]
    while written < gf["acquired"] and time.monotonic() < deadline:
        time.sleep(0.5)
        written = ingest.request()["written_readings"]
    ingest.send(signal.SIGTERM)
    inf = ingest.next_json(120.0)
    ingest.popen.wait(30)

    hi_ns = time.time_ns() + 3_600_000_000_000  # an upper bound: InfluxQL defaults to none
    stored_total = influx.count(DATABASE, run_start_ns - 3_600_000_000_000, hi_ns)
    stored_window = influx.count(DATABASE, g0["t_ns"], g1["t_ns"])
    ticks_due = opts.meters * (g1["t_ns"] // interval_ns - g0["t_ns"] // interval_ns)
    polls = g1["polls"] - g0["polls"]
    cpu = {role: c1[role] - c0.get(role, 0.0) for role in c1}
    per_k = {role: s / (acquired_window / 1000) if acquired_window else math.nan
             for role, s in cpu.items()}
    return {
        "meters": opts.meters,
        "confirm": opts.confirm,
        "verify": opts.verify,
        "interval_ms": opts.interval_ms,
        "window_s": window_s,
        "readings_per_s": acquired_window / window_s,
        "written_per_s": written_window / window_s,
        "acquired_window": acquired_window,
        "stored_window_by_ts": stored_window,
        "acquired_total": gf["acquired"],
        "stored_total": stored_total,
        "ingest_written_total": inf["written_readings"],
        "match": stored_total == gf["acquired"],
        "ticks_due": ticks_due,
        "polls": polls,
        # counted by the pollers themselves (ticks skipped after an overrun)
        "missed_ticks": g1["missed_ticks"] - g0["missed_ticks"],
        "failed_polls": g1["failures"] - g0["failures"],
        "outbox_at_end": g1["outbox"],
        "unconfirmed_at_end": g1["unconfirmed"],
        "messages_per_s": published_window / window_s,
        "readings_per_message": acquired_window / published_window if published_window
        else math.nan,
        "gateway_resent_total": gf["resent"],
        "ingest_duplicates": inf["duplicates"],
        "ingest_acks_sent": inf["acks_sent"],
        "ingest_unsigned": inf["unsigned_messages"],
        "ingest_rejected": inf["rejected_messages"],
        "left_in_outbox_at_stop": gf["left_in_outbox"],
        "gateway_stop_s": stop_s,
        "gateway_stop_hung_tasks": gf.get("stop_hung_tasks", []),
        "ingest_spooled": inf["spooled_messages"],
        "ingest_write_errors": inf["write_errors"],
        "cpu_s": cpu,
        "cpu_s_per_1000": per_k,
        "cpu_total_s": sum(cpu.values()),
        "machine_busy_cores": (m1[0] - m0[0]) / window_s,
        "machine_cores": (m1[1] - m0[1]) / window_s,
        "latency_ms": latency_ms(samples, g0["t_ns"], g1["t_ns"]),
    }
