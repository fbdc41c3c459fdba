"""Dashboard speed: first paint, and 500 live channels updating at 1 Hz in headless Chromium.

    python -m benchmarks --only dashboard [--duration 20]
    python -m benchmarks.dashboard --duration 20 --devices 50 --channels 10

A private Mosquitto, ``daq dashboard`` as its own process (so ``/proc`` gives its CPU), a
publisher thread sending one signed ``daq.data/2`` batch a second on
``daq/{enterprise}/{gateway}/data`` holding ``devices`` polls of ``channels`` readings each
(what a gateway sends when its devices' aligned ticks fall into one commit interval), and
Debian's Chromium (Playwright, never a downloaded browser) on the gateway view, which shows
every channel live. Measured in the page with the Performance API:
first paint / first contentful paint of a fresh load, the time until all channels are on
screen, long tasks (> 50 ms) and animation frames slower than 50 ms during the window, and
the time from publish to DOM of a marker channel (its value is a sequence number; the
publisher notes when it sent each one, a MutationObserver in the page when it appeared;
one clock, one machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.procs import cpu_seconds
from daq.model import Reading
from daq.payload import data_topic, encode_batch
from daq.signing import Signer, new_private_key
from simulators.broker import find_mosquitto, private_mosquitto

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
ENT, GW = "bench", "gw-1"
EPOCH = "0123456789abcdef"


@dataclass
class DashOptions:
    devices: int = 50
    channels: int = 10
    duration_s: float = 20.0
    warmup_s: float = 3.0
    viewport_height: int = 768  # e.g. 20000: every row on screen, the worst case


class Publisher(threading.Thread):
    """One batch a second with a poll of each of ``devices`` devices (sequence number = the
    batch's ``seq``); channel ch-00 of dev-000 carries that sequence number as its value."""

    def __init__(self, port: int, opts: DashOptions) -> None:
        super().__init__(name="bench-publisher", daemon=True)
        self.opts = opts
        self.sent: dict[int, float] = {}  # marker sequence → publish time (epoch ms)
        self.messages = 0  # device polls published (a batch holds ``devices`` of them)
        self.signer = Signer(new_private_key())  # the dashboard does not verify; storage does
        self._halt = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="daq-bench-pub")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def run(self) -> None:
        seq = 0
        next_t = time.time()
        while not self._halt.is_set():
            now_ns = time.time_ns()
            seq += 1
            polls = [[Reading(ts_ns=now_ns, enterprise=ENT, gateway=GW, device=f"dev-{d:03d}",
                              channel=f"ch-{c:02d}", quantity="active_power", unit="W",
                              value=float(seq) if (d, c) == (0, 0) else
                              1000.0 + d + c / 10 + (seq % 7) * 0.01)
                      for c in range(self.opts.channels)]
                     for d in range(self.opts.devices)]
            body = encode_batch(ENT, GW, EPOCH, seq, polls)
            self.sent[seq] = time.time() * 1000
            self.client.publish(data_topic(ENT, GW), self.signer.sign(body), qos=0)
            self.messages += self.opts.devices
            next_t += 1.0
            self._halt.wait(max(0.0, next_t - time.time()))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.client.loop_stop()
        self.client.disconnect()


PAGE_PROBE = """
() => {
  window.__bench = {longtasks: [], frames: 0, slowFrames: 0, worstFrame: 0, seen: []};
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) window.__bench.longtasks.push(e.duration);
  }).observe({type: "longtask"});
  let last = performance.now();
  const frame = (t) => {
    const b = window.__bench; b.frames++; const dt = t - last; last = t;
    if (dt > 50) b.slowFrames++;
    if (dt > b.worstFrame) b.worstFrame = dt;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  const cell = document.querySelector('tr[data-key="bench/gw-1/dev-000/ch-00"] [data-f="v"]');
  new MutationObserver(() => window.__bench.seen.push([cell.textContent, Date.now()]))
    .observe(cell, {childList: true, characterData: true, subtree: true});
}
"""


def run_dashboard(opts: DashOptions, log: Callable[[str], None]) -> dict[str, Any]:
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"{CHROMIUM} missing: run .ci/install-deps (Debian package chromium)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    n_channels = opts.devices * opts.channels
    with tempfile.TemporaryDirectory(prefix="daq-bench-dash-") as tmp, \
            private_mosquitto(find_mosquitto()) as broker:
        cfg = Path(tmp) / "site.yaml"
        cfg.write_text(f"enterprise: {{id: {ENT}}}\ngateways: [{{id: {GW}, buses: []}}]\n"
                       f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
                       "storage: {kind: historian, path: historian.sqlite}\n")
        proc = subprocess.Popen(
            [sys.executable, "-c", "from daq.cli import main; main()", "dashboard", str(cfg),
             "--port", "0", "--topic", f"daq/{ENT}/#"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        pub: Publisher | None = None
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            while " INFO daq.dashboard: " in line:  # its first log line, the version
                line = proc.stdout.readline()
            m = re.search(r"(http://\S+/)", line)
            if not m:
                raise RuntimeError(f"dashboard did not start: {line}")
            url = m.group(1)
            log(f"dashboard on {url}; publishing {n_channels} channels at 1 Hz")
            pub = Publisher(broker.port, opts)
            pub.start()
            time.sleep(2.0)  # every channel has been published once
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                page = browser.new_page(
                    viewport={"width": 1366, "height": opts.viewport_height})
                t0 = time.monotonic()
                page.goto(f"{url}#/e/{ENT}/g/{GW}")
                # a function, not an expression: Playwright evaluates an expression with eval()
                # in the page, which the dashboard's Content-Security-Policy refuses
                page.wait_for_function(f"() => document.querySelectorAll('tr[data-key]')"
                                       f".length >= {n_channels}", timeout=30_000)
                all_rows_s = time.monotonic() - t0
                paint = dict(page.evaluate(
                    "performance.getEntriesByType('paint').map(e => [e.name, e.startTime])"))
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
                page.evaluate(PAGE_PROBE)
                time.sleep(opts.warmup_s)
                page.evaluate("window.__bench.longtasks = []; window.__bench.frames = 0; "
                              "window.__bench.slowFrames = 0; window.__bench.worstFrame = 0; "
                              "window.__bench.seen = []")
                cpu0, t_start = cpu_seconds(proc.pid), time.monotonic()
                msgs0 = pub.messages
                time.sleep(opts.duration_s)
                cpu1, window = cpu_seconds(proc.pid), time.monotonic() - t_start
                msgs = pub.messages - msgs0
                probe = page.evaluate("window.__bench")
                browser.close()
        finally:
            try:
                if pub is not None:
                    pub.stop()
            finally:  # the dashboard process goes whatever happened above
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    latencies = []
    for text, at_ms in probe["seen"]:
        with contextlib.suppress(ValueError):
            seq = round(float(text.replace(",", "")))
            if seq in pub.sent:
                latencies.append(at_ms - pub.sent[seq])
    lat = sorted(latencies)
    return {
        "channels": n_channels, "window_s": window, "viewport_height": opts.viewport_height,
        "readings_per_s": msgs * opts.channels / window,
        "first_paint_ms": paint.get("first-paint"),
        "first_contentful_paint_ms": paint.get("first-contentful-paint"),
        "dom_content_loaded_ms": nav.get("domContentLoadedEventEnd"),
        "all_channels_on_screen_s": all_rows_s,
        "frames": probe["frames"], "fps": probe["frames"] / window,
        "slow_frames": probe["slowFrames"], "worst_frame_ms": probe["worstFrame"],
        "long_tasks": len(probe["longtasks"]),
        "long_task_ms_total": sum(probe["longtasks"]),
        "publish_to_dom_ms": {"n": len(lat),
                              "median": statistics.median(lat) if lat else None,
                              "p95": lat[int(0.95 * (len(lat) - 1))] if lat else None,
                              "max": lat[-1] if lat else None},
        "server_cpu_pct": 100 * (cpu1 - cpu0) / window,
    }


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    lat = r["publish_to_dom_ms"]

    def f(x: float | None, d: int = 0) -> str:
        return "–" if x is None else f"{x:,.{d}f}"

    return [
        ("first paint / first contentful paint", f"{f(r['first_paint_ms'])} / "
         f"{f(r['first_contentful_paint_ms'])} ms"),
        ("all channels on screen after navigation", f"{f(r['all_channels_on_screen_s'], 2)} s"
         f" ({r['channels']} rows)"),
        ("live readings/s pushed", f(r["readings_per_s"])),
        ("animation frames", f"{f(r['fps'], 1)} fps; {r['slow_frames']} slower than 50 ms "
         f"(worst {f(r['worst_frame_ms'])} ms)"),
        ("long tasks (> 50 ms)", f"{r['long_tasks']} ({f(r['long_task_ms_total'])} ms total)"),
        ("publish → DOM (marker channel)", f"median {f(lat['median'])} ms, p95 "
         f"{f(lat['p95'])} ms, max {f(lat['max'])} ms (n = {lat['n']})"),
        ("dashboard server CPU", f"{f(r['server_cpu_pct'], 1)} % of one core"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DashOptions()
    p.add_argument("--devices", type=int, default=d.devices)
    p.add_argument("--channels", type=int, default=d.channels, help="per device")
    p.add_argument("--duration", type=float, default=d.duration_s)
    p.add_argument("--viewport-height", type=int, default=d.viewport_height,
                   help="browser window height in px (20000: every row on screen)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    r = run_dashboard(DashOptions(a.devices, a.channels, a.duration,
                                  viewport_height=a.viewport_height),
                      lambda s: print(s, file=sys.stderr, flush=True))
    for name, value in rows(r):
        print(f"{name:42s} {value}")
    if a.json is not None:
        a.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
