"""``python -m benchmarks`` (``make bench``): the end-to-end row and the micro-benchmarks.

    python -m benchmarks                       # everything, 60 s end to end
    python -m benchmarks --duration 20 --meters 1000 --interval-ms 500
    python -m benchmarks --only micro --json bench.json
    python -m benchmarks --only dashboard --duration 20   # 500 live channels in Chromium
    python -m benchmarks --only coverage --sessions 2000  # does the stated U cover the truth?

See benchmarks/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.bus import CoalescingRow, UtilisationRow, run_bus
from benchmarks.e2e import CHANNELS_PER_METER, E2EOptions, run_e2e
from benchmarks.micro import MicroResult, run_micro

TARGET_READINGS_PER_S = 20_000
ROLES = ("simulators", "gateway", "ingest", "mosquitto", "influxd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = E2EOptions()
    p.add_argument("--only", choices=("all", "e2e", "micro", "bus", "dashboard", "coverage"),
                   default="all", help="dashboard: not part of all (needs Debian's chromium); "
                   "coverage: not part of all (about a minute of Monte Carlo)")
    p.add_argument("--sessions", type=int, default=2000,
                   help="coverage: simulated calibrations per row (default %(default)s)")
    p.add_argument("--readings-per-session", type=int, default=5,
                   help="coverage: corrected readings per calibration (default %(default)s)")
    p.add_argument("--duration", type=float, default=d.duration_s,
                   help="measured seconds of the end-to-end run (default %(default)s)")
    p.add_argument("--warmup", type=float, default=d.warmup_s,
                   help="seconds before the measurement starts (default %(default)s)")
    p.add_argument("--meters", type=int, default=d.meters,
                   help="simulated meters, half SDM630, half DTSU666 (default %(default)s)")
    p.add_argument("--interval-ms", type=int, default=d.interval_ms,
                   help="poll interval of every meter (default %(default)s)")
    p.add_argument("--sim-procs", type=int, default=d.sim_procs,
                   help="simulator processes per profile (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="ingest batch size (default %(default)s)")
    p.add_argument("--batch-interval-ms", type=int, default=d.batch_interval_ms,
                   help="ingest batch interval (default %(default)s)")
    p.add_argument("--confirm", choices=("stored", "broker"), default=d.confirm,
                   help="gateways[].delivery.confirm: stored (default: the outbox row goes "
                   "when the ingest confirms it stored) or broker (at the PUBACK); broker "
                   "only to isolate the acknowledgement's cost")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="ingest.require_signatures: false (the gateway still signs); only "
                   "to isolate the verification's cost")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (configs, process logs)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the results as JSON to FILE")
    p.add_argument("--plain", action="store_true", help="plain text instead of rich tables")
    args = p.parse_args(argv)
    if args.meters < 2 or args.duration <= 0 or args.interval_ms < 10 or args.sim_procs < 1:
        p.error("need --meters >= 2, --duration > 0, --interval-ms >= 10, --sim-procs >= 1")
    return args


def fmt(x: float, digits: int = 0) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def e2e_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, value, note) rows of the end-to-end result."""
    rows = [
        ("readings/s (acquired by the gateway)", fmt(r["readings_per_s"]),
         f"{r['meters']} meters × {CHANNELS_PER_METER} channels every {r['interval_ms']} ms, "
         f"{r['window_s']:.1f} s; target ≥ {TARGET_READINGS_PER_S:,}: "
         + ("MET" if r["readings_per_s"] >= TARGET_READINGS_PER_S else "NOT MET")
         + f"; signed, verified: {'yes' if r['verify'] else 'NO'}, confirm: {r['confirm']}"),
        ("readings/s (written by the ingest)", fmt(r["written_per_s"]), "same window"),
        ("stored = acquired (whole run)",
         f"{r['stored_total']:,} / {r['acquired_total']:,}",
         "MATCH" if r["match"] else "MISMATCH" + " (InfluxQL count(quality), upper time bound)"),
        ("stored in window (by timestamp)", f"{r['stored_window_by_ts']:,}",
         f"acquired in window: {r['acquired_window']:,}"),
        ("messages/s (signed batches published)", fmt(r["messages_per_s"]),
         f"{r['readings_per_message']:,.0f} readings per message; sent again (whole run): "
         f"{r['gateway_resent_total']:,}; stored twice: {r['ingest_duplicates']:,}"),
        ("ingest: not authentic / rejected", f"{r['ingest_unsigned']:,} / "
         f"{r['ingest_rejected']:,}", "messages dead-lettered (0 / 0 expected: the key is "
         f"pinned); {r['ingest_acks_sent']:,} daq.ack/1 confirmations sent"),
        ("missed ticks / failed polls", f"{r['missed_ticks']:,} / {r['failed_polls']:,}",
         f"{r['polls']:,} polls of {r['ticks_due']:,} ticks due"),
    ]
    lat = r.get("latency_ms")
    if lat:
        rows.append(("latency acquired → stored, ms", f"p50 {lat['p50']:.0f}",
                     f"p90 {lat['p90']:.0f}, p99 {lat['p99']:.0f}, max {lat['max']:.0f} "
                     f"({lat['samples']:,} samples)"))
    per_k, cpu = r["cpu_s_per_1000"], r["cpu_s"]
    for role in (*ROLES, *(k for k in cpu if k not in ROLES)):
        if role in cpu:
            rows.append((f"CPU s per 1 000 readings: {role}", fmt(per_k[role], 4),
                         f"{cpu[role]:.2f} CPU s = {cpu[role] / r['window_s']:.2f} cores"))
    total = r["cpu_total_s"]
    rows.append(("CPU s per 1 000 readings: all", fmt(total / (r["acquired_window"] / 1000), 4),
                 f"{total / r['window_s']:.2f} cores of {r['machine_cores']:.1f}; machine busy "
                 f"{r['machine_busy_cores']:.2f} cores (other work included)"))
    rows.append(("gateway outbox backlog at end / left at stop",
                 f"{r['outbox_at_end']:,} / {r['left_in_outbox_at_stop']:,}",
                 f"messages ({r['unconfirmed_at_end']:,} sent, awaiting storage's "
                 f"confirmation, at end); gateway stop took {r['gateway_stop_s']:.1f} s"))
    return rows


def micro_rows(results: list[MicroResult]) -> list[tuple[str, str, str, str]]:
    return [(m.name, fmt(m.us_per_reading, 3), fmt(m.readings_per_s), m.what) for m in results]


def print_tables(console: Console, plain: bool, e2e: dict[str, Any] | None,
                 micro: list[MicroResult] | None) -> None:
    if e2e is not None:
        rows = e2e_rows(e2e)
        if plain:
            print("End to end: simulators → gateway → Mosquitto → ingest → InfluxDB 1.x")
            for a, b, c in rows:
                print(f"  {a:<46} {b:>22}  {c}")
        else:
            t = Table(title="End to end: simulators → gateway → Mosquitto → ingest → InfluxDB 1.x")
            t.add_column("measure")
            t.add_column("value", justify="right")
            t.add_column("note")
            for row in rows:
                t.add_row(*row)
            console.print(t)
    if micro is not None:
        mrows = micro_rows(micro)
        if plain:
            print("Hot path, in process (fastest of 5 repeats)")
            print(f"  {'case':<22} {'µs/reading':>11} {'readings/s':>12}  what")
            for a, b, c, d in mrows:
                print(f"  {a:<22} {b:>11} {c:>12}  {d}")
        else:
            t = Table(title="Hot path, in process (fastest of 5 repeats)")
            t.add_column("case")
            t.add_column("µs/reading", justify="right")
            t.add_column("readings/s", justify="right")
            t.add_column("what one iteration does")
            for mrow in mrows:
                t.add_row(*mrow)
            console.print(t)


def print_bus(console: Console, plain: bool, coal: list[CoalescingRow],
              util: list[UtilisationRow]) -> None:
    title = "Serial bus: read coalescing, and RS-485 utilisation at 9600 8E1 (target ≥ 0.90)"
    rows = [(f"coalescing {c.profile}", f"{c.requests} requests/poll",
             f"minimum possible {c.minimum}; {c.registers_read} registers read for "
             f"{c.registers_used} used (max_gap 16)") for c in coal]
    rows += [(f"utilisation, {u.registers}-register reads", f"{u.utilisation:.3f}",
              f"{u.transactions_per_s:.1f} of {u.limit_per_s:.1f} transactions/s "
              "(wire time of request + reply, plus 3.5 characters)") for u in util]
    if plain:
        print(title)
        for a, b, c in rows:
            print(f"  {a:<34} {b:>18}  {c}")
        return
    t = Table(title=title)
    for col in ("measure", "value", "note"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for row in rows:
        t.add_row(*row)
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)

    def log(msg: str) -> None:
        if args.plain:
            print(msg, file=sys.stderr, flush=True)
        else:
            console.log(msg)

    if args.only == "coverage":
        from benchmarks.coverage import format_rows, run_coverage

        log(f"coverage of U: {args.sessions} calibrations per row, "
            f"{args.readings_per_session} readings each …")
        cov = run_coverage(args.sessions, args.readings_per_session, log=log)
        print(format_rows(cov))
        if args.json is not None:
            args.json.write_text(json.dumps({"coverage": [vars(r) for r in cov]}, indent=2)
                                 + "\n")
        return 0
    e2e: dict[str, Any] | None = None
    micro: list[MicroResult] | None = None
    if args.only in ("all", "micro"):
        log("micro-benchmarks …")
        micro = run_micro()
    if args.only in ("all", "e2e"):
        opts = E2EOptions(meters=args.meters, duration_s=args.duration,
                          interval_ms=args.interval_ms, warmup_s=args.warmup,
                          sim_procs=args.sim_procs, batch_size=args.batch_size,
                          batch_interval_ms=args.batch_interval_ms, keep=args.keep,
                          confirm=args.confirm, verify=args.verify)
        log(f"end to end: {opts.meters} meters every {opts.interval_ms} ms for "
            f"{opts.duration_s:.0f} s (+{opts.warmup_s:.0f} s warm-up); confirm: "
            f"{opts.confirm}, signatures {'verified' if opts.verify else 'NOT verified'}")
        e2e = run_e2e(opts, log)
    bus: tuple[list[CoalescingRow], list[UtilisationRow]] | None = None
    if args.only in ("all", "bus"):
        log("serial bus: coalescing and 9600-baud utilisation …")
        bus = run_bus()
    if args.only == "dashboard":
        from benchmarks.dashboard import DashOptions, rows, run_dashboard

        dash = run_dashboard(DashOptions(duration_s=args.duration), log)
        t = Table(title="dashboard: 500 live channels at 1 Hz in headless Chromium")
        t.add_column("measure")
        t.add_column("value")
        for name, value in rows(dash):
            t.add_row(name, value)
        Console().print(t)
        if args.json is not None:
            args.json.write_text(json.dumps({"dashboard": dash}, indent=2) + "\n")
        return 0
    print_tables(Console(), args.plain, e2e, micro)
    if bus is not None:
        print_bus(Console(), args.plain, *bus)
    if args.json is not None:
        doc = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "e2e": e2e,
            "bus": None if bus is None else {
                "coalescing": [vars(c) for c in bus[0]],
                "utilisation": [{**vars(u), "utilisation": u.utilisation} for u in bus[1]]},
            "micro": None if micro is None else [
                {"name": m.name, "what": m.what, "readings_per_iter": m.readings_per_iter,
                 "us_per_iter": m.us_per_iter, "us_per_reading": m.us_per_reading,
                 "readings_per_s": m.readings_per_s} for m in micro],
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    if e2e is not None and not e2e["match"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
