"""Processes for the end-to-end benchmark: start, watch (CPU from ``/proc``), stop.

Every process is started in its own session (process group) with its output in a log file
or a pipe, and stopped by its own pid / process group: SIGTERM (or SIGINT), then SIGKILL.
Also the private ``influxd`` (Debian's InfluxDB 1.x) the benchmark writes into.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import orjson
import urllib3

from simulators.broker import free_port
from simulators.influxd import find_influxd, influxd_command

CLK_TCK = os.sysconf("SC_CLK_TCK")

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=60.0))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0.0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from ``/proc/stat``."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in first[:8]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    total = sum(ticks)
    return (total - idle) / CLK_TCK, total / CLK_TCK


def free_port_range(n: int, lo: int = 20_000, hi: int = 60_000) -> int:
    """A first port ``p`` with ``p … p + n - 1`` all free on 127.0.0.1 a moment ago."""
    base = lo + (os.getpid() * 7919) % (hi - lo - n)
    for _ in range(50):
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
        base = lo + (base - lo + n + 101) % (hi - lo - n)
    raise RuntimeError(f"no {n} consecutive free ports found")


@dataclass
class Proc:
    """A process we started: its role, Popen, and (for JSON-speaking ones) its stdout lines."""

    role: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n_bytes: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n_bytes:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def next_line(self, timeout_s: float) -> str:
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            state = "running" if self.alive() else f"exited {self.popen.returncode}"
            raise RuntimeError(f"{self.role}: no output within {timeout_s:.0f} s ({state})\n"
                               f"--- {self.log_path} ---\n{self.log_tail()}") from None

    def request(self, sig: int = signal.SIGUSR1, timeout_s: float = 30.0) -> dict[str, Any]:
        """Send ``sig`` and return the next JSON object the process prints."""
        os.kill(self.pid, sig)
        return self.next_json(timeout_s)

    def next_json(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            line = self.next_line(max(0.1, deadline - time.monotonic()))
            if line.startswith("{"):
                doc: dict[str, Any] = json.loads(line)
                return doc

    def dump_stacks(self) -> str:
        """The Python stacks of every thread (py-spy, when installed), for a hang report."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.access(spy, os.X_OK) or not self.alive():
            return "(no py-spy, or the process is gone)"
        out = subprocess.run([spy, "dump", "--pid", str(self.pid)], capture_output=True,
                             timeout=60, check=False)
        return (out.stdout + out.stderr).decode("utf-8", "replace")

    def send(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        """Signal the process, SIGKILL its group if it has not exited in time; reap."""
        if self.alive():
            self.send(sig)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # anything left in its group


def _pump(stream: IO[bytes], lines: queue.Queue[str]) -> None:
    for raw in stream:
        lines.put(raw.decode("utf-8", "replace").rstrip("\n"))


def start(role: str, args: Sequence[str], log_path: Path, *, cwd: Path,
          capture_stdout: bool = False, env: dict[str, str] | None = None) -> Proc:
    """Start ``args`` in a new session; stderr (and stdout unless captured) to ``log_path``."""
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed below
    try:
        popen = subprocess.Popen(
            list(args), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else log, stderr=log,
            start_new_session=True, env=env,
        )
    finally:
        log.close()
    proc = Proc(role, popen, log_path)
    if capture_stdout:
        assert popen.stdout is not None
        threading.Thread(target=_pump, args=(popen.stdout, proc.lines), daemon=True,
                         name=f"stdout-{role}").start()
    return proc


# -- InfluxDB 1.x ---------------------------------------------------------------------------



@dataclass
class Influx:
    url: str
    proc: Proc

    def query(self, q: str, db: str | None = None) -> dict[str, Any]:
        """InfluxQL via POST /query (epoch=ns); raise RuntimeError on any error."""
        params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
        resp = _http.request("POST", f"{self.url}/query", body=urlencode(params),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        doc = orjson.loads(resp.data)
        if resp.status != 200 or "error" in doc or any("error" in r for r in doc["results"]):
            raise RuntimeError(f"{q!r}: HTTP {resp.status}: {resp.data[:300]!r}")
        assert isinstance(doc, dict)
        return doc

    def count(self, db: str, lo_ns: int, hi_ns: int) -> int:
        """Points stored with ``lo_ns <= time < hi_ns`` in every measurement of ``db``,
        counted by the server (``count(quality)``: the field every reading carries)."""
        doc = self.query(f'SELECT count("quality") FROM /.*/ WHERE time >= {lo_ns} '
                         f"AND time < {hi_ns}", db)
        total = 0
        for result in doc["results"]:
            for series in result.get("series", []):
                total += sum(int(row[1]) for row in series["values"])
        return total


@contextlib.contextmanager
def private_influxd(tmp: Path) -> Iterator[Influx]:
    """A private influxd on a free loopback port, its files under ``tmp``."""
    binary = find_influxd()
    if binary is None:
        raise RuntimeError("influxd not found (Debian package influxdb)")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start("influxd", influxd_command(binary, tmp, port), tmp / "influxd.log", cwd=tmp)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if not proc.alive():
                raise RuntimeError(f"influxd exited while starting:\n{proc.log_tail()}")
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                if _http.request("GET", f"{url}/ping").status == 204:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"influxd did not answer /ping:\n{proc.log_tail()}")
            time.sleep(0.05)
        yield Influx(url, proc)
    finally:
        proc.stop()
