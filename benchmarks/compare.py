"""Two benchmark runs side by side: ``python -m benchmarks.compare BEFORE.json AFTER.json``.

Each file is what ``python -m benchmarks --json FILE`` wrote (any version that writes an
``e2e`` and/or ``micro`` section; older versions lack some rows, shown as –). Prints the
end-to-end table with the change after/before, the issue's verdicts (end-to-end throughput
may fall by at most 10 %; Ed25519 signing ≤ 1 µs and verification ≤ 2 µs per reading at the
size of message the gateway sends at that load), and the micro rows both runs have.

    python -m benchmarks.compare var/bench-before.json var/bench-after.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_THROUGHPUT_DROP = 0.10
SIGN_US_PER_READING = 1.0
VERIFY_US_PER_READING = 2.0
ROLES = ("simulators", "gateway", "ingest", "mosquitto", "influxd")

Get = Callable[[dict[str, Any]], float | None]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not math.isnan(x) else None


def _path(*keys: str) -> Get:
    def get(d: dict[str, Any]) -> float | None:
        cur: Any = d
        for k in keys:
            if not isinstance(cur, dict) or k not in cur:
                return None
            cur = cur[k]
        return _num(cur)

    return get


def _cores(role: str) -> Get:
    def get(d: dict[str, Any]) -> float | None:
        cpu = d.get("cpu_s", {}).get(role) if role != "all" else d.get("cpu_total_s")
        return None if cpu is None or not d.get("window_s") else cpu / d["window_s"]

    return get


def _all_per_k(d: dict[str, Any]) -> float | None:
    n, cpu = _num(d.get("acquired_window")), _num(d.get("cpu_total_s"))
    return None if not n or cpu is None else cpu / (n / 1000)


E2E_ROWS: list[tuple[str, Get, int, bool]] = [  # label, value, digits, higher is better
    ("readings/s acquired by the gateway", _path("readings_per_s"), 0, True),
    ("readings/s written by the ingest", _path("written_per_s"), 0, True),
    ("stored (whole run)", _path("stored_total"), 0, True),
    ("acquired (whole run)", _path("acquired_total"), 0, True),
    ("missed ticks", _path("missed_ticks"), 0, False),
    ("failed polls", _path("failed_polls"), 0, False),
    ("messages/s published", _path("messages_per_s"), 1, False),
    ("readings per message", _path("readings_per_message"), 0, True),
    ("latency p50, ms", _path("latency_ms", "p50"), 0, False),
    ("latency p99, ms", _path("latency_ms", "p99"), 0, False),
    *[(f"CPU s / 1 000 readings: {r}", _path("cpu_s_per_1000", r), 4, False) for r in ROLES],
    ("CPU s / 1 000 readings: all", _all_per_k, 4, False),
    *[(f"cores: {r}", _cores(r), 2, False) for r in (*ROLES, "all")],
    ("machine busy, cores (other work too)", _path("machine_busy_cores"), 2, False),
    ("outbox backlog at end, messages", _path("outbox_at_end"), 0, False),
]


def _fmt(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == 0:
        return ""
    return f"{100 * (b - a) / abs(a):+.1f} %"


def e2e_table(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("measure", "before", "after", "change")]
    for label, get, digits, _better in E2E_ROWS:
        a, b = get(before), get(after)
        if a is None and b is None:
            continue
        rows.append((label, _fmt(a, digits), _fmt(b, digits), _change(a, b)))
    def wire(d: dict[str, Any]) -> str:  # versions before daq.data/2: unsigned, by PUBACK
        if "confirm" in d:
            return f"data/2 {'verified' if d['verify'] else 'unverified'}, {d['confirm']}"
        return "data/2 verified, stored" if "readings_per_message" in d else "data/1, PUBACK"

    rows.append(("wire: signatures, outbox row deleted on", wire(before), wire(after), ""))
    rows.append(("stored = acquired", "MATCH" if before.get("match") else "MISMATCH",
                 "MATCH" if after.get("match") else "MISMATCH", ""))
    return rows


def _micro(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in doc.get("micro") or []}


def verdicts(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = []
    e_a, e_b = before.get("e2e"), after.get("e2e")
    if e_a and e_b:
        a, b = e_a["readings_per_s"], e_b["readings_per_s"]
        drop = (a - b) / a if a else 0.0
        ok = drop <= MAX_THROUGHPUT_DROP
        same_load = all(e_a.get(k) == e_b.get(k) for k in ("meters", "interval_ms"))
        out.append(f"end-to-end throughput {a:,.0f} → {b:,.0f} readings/s ({-100 * drop:+.1f} %)"
                   f": {'OK' if ok else 'FAILS'} (may fall by at most "
                   f"{100 * MAX_THROUGHPUT_DROP:.0f} %)"
                   + ("" if same_load else "; NOTE: the runs had different loads"))
        nominal = e_b["meters"] * 14 * 1000 / e_b["interval_ms"]
        if min(a, b) >= 0.98 * nominal:
            out.append(f"  both runs kept up with the nominal {nominal:,.0f} readings/s: "
                       "throughput cannot differ here; compare CPU s per 1 000 readings, or "
                       "run both at a load the machine cannot keep up with (--meters 3000)")
    micro = _micro(after)
    rpm = _num((e_b or {}).get("readings_per_message"))
    for kind, limit in (("sign", SIGN_US_PER_READING), ("verify", VERIFY_US_PER_READING)):
        cases = sorted(((m["readings_per_iter"], m) for n, m in micro.items()
                        if n.startswith(f"Ed25519 {kind} (")), key=lambda t: t[0])
        if not cases:
            continue
        # the case nearest the message size the gateway sent in the e2e run (else the largest)
        size, m = min(cases, key=lambda t: abs(t[0] - rpm)) if rpm else cases[-1]
        us = m["us_per_reading"]
        out.append(f"Ed25519 {kind}: {us:.3f} µs per reading at {size} readings a message"
                   + (f" (e2e sent {rpm:,.0f})" if rpm else "")
                   + f": {'OK' if us <= limit else 'FAILS'} (≤ {limit:g} µs); "
                   + ", ".join(f"{c[1]['us_per_reading']:.2f} µs at {c[0]}" for c in cases))
    return out


def micro_table(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, ...]]:
    a, b = _micro(before), _micro(after)
    rows: list[tuple[str, ...]] = [("case (µs per reading)", "before", "after", "change")]
    for name in [*a, *(n for n in b if n not in a)]:
        x = _num(a[name]["us_per_reading"]) if name in a else None
        y = _num(b[name]["us_per_reading"]) if name in b else None
        rows.append((name, _fmt(x, 3), _fmt(y, 3), _change(x, y)))
    return rows


def print_table(title: str, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(title)
    for j, r in enumerate(rows):
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if j == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    args = p.parse_args(argv)
    before, after = (json.loads(f.read_text()) for f in (args.before, args.after))
    if before.get("e2e") and after.get("e2e"):
        e = after["e2e"]
        print_table(f"End to end, {args.before} → {args.after} ({e['meters']} meters every "
                    f"{e['interval_ms']} ms, {e['window_s']:.0f} s window)",
                    e2e_table(before["e2e"], after["e2e"]))
    if before.get("micro") or after.get("micro"):
        print_table("Hot path, in process (fastest of 5 repeats)", micro_table(before, after))
    for line in verdicts(before, after):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
