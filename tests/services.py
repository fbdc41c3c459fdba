"""The one module that starts and stops real services for the test suite.

Session-scoped fixtures start a private server on 127.0.0.1 with a free port and all its
files in a temporary directory, wait until it answers, and stop it (the whole process group,
SIGTERM then SIGKILL) at the end of the session — also on Ctrl-C, through the fixture's
``finally``, an ``atexit`` hook and, on Linux, ``PR_SET_PDEATHSIG`` should pytest itself die.

* ``influxdb_v1``: Debian's ``influxd`` (InfluxDB 1.6.7); only the HTTP API and the RPC
  port (backup/restore, bound to 127.0.0.1) listen; reporting, monitoring, graphite, collectd,
  opentsdb and UDP are off.
* ``victoria_metrics``: ``victoria-metrics`` (1.79) with ``-retentionPeriod=100y``.
* ``chromium``: Debian's ``/usr/bin/chromium``, headless, driven by Playwright for Python
  (one browser per module; Playwright never downloads a browser here).
* :func:`restartable_influxdb` and :func:`restartable_mosquitto` (context managers, not
  fixtures): a private server of one test that the test stops, kills and starts again on the
  same port and the same files (the chaos suite, ``tests/integration/chaos/``).

``DAQ_TEST_INFLUXDB_URL`` / ``DAQ_TEST_VM_URL`` point the fixtures at servers already running
instead. When a binary is missing the fixture skips, or fails under ``CI=true``
(``.ci/install-deps`` installs them).

Add fixtures for further services (Mosquitto, simulators) here with :func:`start_process`
and :func:`wait_http`, and import them into ``tests/conftest.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import pytest
import urllib3

from simulators.broker import (
    MOSQUITTO_CONF,
    Broker,
    _broker_writable_dir,
    answers,
    find_mosquitto,
    free_port,
    private_mosquitto,
)
from simulators.influxd import influxd_command

INSTALL_HINT = ("run .ci/install-deps (Debian packages: influxdb victoria-metrics mosquitto "
                "chromium)")
START_TIMEOUT_S = 20.0

__all__ = [
    "InfluxDatabase",
    "Restartable",
    "Server",
    "chromium",
    "free_port",
    "influx_db",
    "influxdb_v1",
    "restartable_influxdb",
    "restartable_mosquitto",
    "start_process",
    "victoria_metrics",
    "wait_http",
]


@dataclass(frozen=True)
class Server:
    """A running server: its base URL (no trailing slash) and TCP port."""

    name: str
    url: str
    port: int
    log_path: Path | None = None  # None for an external server

    def log_tail(self, n_bytes: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_bytes()[-n_bytes:].decode("utf-8", "replace")


@dataclass(frozen=True)
class InfluxDatabase:
    """A fresh InfluxDB 1.x database for one test."""

    server: Server
    name: str

    @property
    def url(self) -> str:
        return self.server.url


# -- helpers --------------------------------------------------------------------------


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing(what: str) -> None:
    """Skip (or, under CI, fail) because a service binary is not installed."""
    msg = f"{what} not installed: {INSTALL_HINT}"
    if is_ci():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def find_binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None)


@contextlib.contextmanager
def mosquitto_readable_dir(prefix: str, *tools: str) -> Iterator[Path]:
    """A temporary folder for a private Mosquitto's config, certificates and password files,
    after checking that ``tools`` are installed (a failure, not a skip). Mosquitto started as
    root drops to its own user, which cannot enter pytest's 0700 temporary folders: this one
    is readable by all, and removed at the end."""
    for tool in tools:
        if find_binary(tool) is None:
            pytest.fail(f"{tool} not installed (Debian packages openssl, mosquitto)")
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1.0, read=5.0))


def http(method: str, url: str, *, body: bytes | str | None = None,
         headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    """One HTTP request (urllib3 ignores proxy variables: traffic stays on 127.0.0.1)."""
    return _http.request(method, url, body=body, headers=headers)


def wait_http(url: str, ok: Callable[[urllib3.BaseHTTPResponse], bool], *,
              proc: subprocess.Popen[bytes] | None = None,
              timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``url`` until ``ok(response)``; raise RuntimeError on timeout or process exit."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} while starting")
        try:
            if ok(resp := http("GET", url)):
                return
            last = f"HTTP {resp.status}"
        except urllib3.exceptions.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s ({last})")


_running: dict[int, subprocess.Popen[bytes]] = {}


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_process(args: Sequence[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, output to ``log_path``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(args), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_set_pdeathsig if sys.platform == "linux" else None,
        )
    _running[proc.pid] = proc
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it if still there after ``timeout_s``; reap."""
    _running.pop(proc.pid, None)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    else:  # the leader is gone: make sure nothing of its group survives
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group at once (no shutdown, no flush: a crash) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stop_process(proc)  # forgets it, and kills anything of its group that survived


@atexit.register
def _stop_all() -> None:
    for proc in list(_running.values()):
        stop_process(proc, timeout_s=3.0)


@contextlib.contextmanager
def run_server(name: str, args_for: Callable[[Path, int], list[str]],
               ready_path: str, ok: Callable[[urllib3.BaseHTTPResponse], bool],
               port: int | None = None) -> Iterator[Server]:
    """Start a server with a fresh temp dir and port, wait until ready, stop and clean up."""
    tmp = Path(tempfile.mkdtemp(prefix=f"daq-test-{name}-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = port or free_port()
        log_path = tmp / f"{name}.log"
        proc = start_process(args_for(tmp, port), log_path, tmp)
        server = Server(name, f"http://127.0.0.1:{port}", port, log_path)
        try:
            wait_http(server.url + ready_path, ok, proc=proc)
        except RuntimeError as exc:
            pytest.fail(f"{name} did not start: {exc}\n--- {log_path} ---\n{server.log_tail()}",
                        pytrace=False)
        yield server
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def external(env_var: str, name: str) -> Server | None:
    url = os.environ.get(env_var)
    if not url:
        return None
    url = url.rstrip("/")
    parts = urlsplit(url)
    return Server(name, url, parts.port or (443 if parts.scheme == "https" else 80))


# -- InfluxDB 1.x ---------------------------------------------------------------------



def _influxd_args(binary: str) -> Callable[[Path, int], list[str]]:
    def args(tmp: Path, port: int) -> list[str]:
        return influxd_command(binary, tmp, port)

    return args


@contextlib.contextmanager
def private_influxdb(port: int | None = None) -> Iterator[Server]:
    """A private influxd of the test's own (for outage tests that start it late)."""
    binary = find_binary("influxd")
    if binary is None:
        missing("influxd (Debian package influxdb)")
        return
    with run_server("influxdb", _influxd_args(binary), "/ping", lambda r: r.status == 204,
                    port=port) as server:
        yield server


@pytest.fixture(scope="session")
def influxdb_v1() -> Iterator[Server]:
    """A private InfluxDB 1.x (or the one at ``DAQ_TEST_INFLUXDB_URL``)."""
    ext = external("DAQ_TEST_INFLUXDB_URL", "influxdb")
    if ext is not None:
        yield ext
        return
    with private_influxdb() as server:
        yield server


def influx_query(server: Server, q: str, db: str | None = None) -> dict[str, object]:
    """Run InfluxQL against a test server (POST /query, epoch=ns); raise on any error."""
    params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
    resp = http("POST", f"{server.url}/query", body=urlencode(params),
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    doc = orjson.loads(resp.data)
    if resp.status != 200 or "error" in doc or any("error" in r for r in doc.get("results", [])):
        raise RuntimeError(f"{q!r}: HTTP {resp.status}: {resp.data[:300]!r}")
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def influx_db(influxdb_v1: Server) -> Iterator[InfluxDatabase]:
    """A fresh, uniquely named database on ``influxdb_v1``, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    influx_query(influxdb_v1, f'CREATE DATABASE "{name}"')
    try:
        yield InfluxDatabase(influxdb_v1, name)
    finally:
        with contextlib.suppress(Exception):
            influx_query(influxdb_v1, f'DROP DATABASE "{name}"')


# -- VictoriaMetrics ------------------------------------------------------------------


def _vm_args(binary: str) -> Callable[[Path, int], list[str]]:
    def args(tmp: Path, port: int) -> list[str]:
        return [binary, f"-storageDataPath={tmp}/data", f"-httpListenAddr=127.0.0.1:{port}",
                "-retentionPeriod=100y", "-loggerLevel=WARN",
                # tests read back what they just wrote: no 30 s visibility delay, no cache
                "-search.latencyOffset=0s", "-search.disableCache"]

    return args


@pytest.fixture(scope="session")
def victoria_metrics() -> Iterator[Server]:
    """A private VictoriaMetrics (or the one at ``DAQ_TEST_VM_URL``)."""
    ext = external("DAQ_TEST_VM_URL", "victoria-metrics")
    if ext is not None:
        yield ext
        return
    binary = find_binary("victoria-metrics")
    if binary is None:
        missing("victoria-metrics (Debian package victoria-metrics)")
        return
    with run_server("victoria-metrics", _vm_args(binary), "/health",
                    lambda r: r.status == 200) as server:
        yield server


# -- MQTT broker ------------------------------------------------------------------------


TEST_ENTERPRISE = re.compile(r"^daq/t[0-9a-f]{10}/")  # tests use enterprise ids t + 10 hex


def clear_test_retained(host: str, port: int, listen_s: float = 1.0) -> None:
    """Delete the retained status/meta messages tests left on a shared broker."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topics: set[str] = set()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"daq-test-cleanup-{os.getpid()}")
    client.on_connect = lambda c, *_: c.subscribe("daq/#", qos=0)

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain and msg.payload and TEST_ENTERPRISE.match(msg.topic):
            topics.add(msg.topic)

    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError:
        return
    client.loop_start()
    time.sleep(listen_s)
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[Broker]:
    """The Mosquitto on 127.0.0.1:1883 when it answers, else a private one on a free port.

    ``DAQ_TEST_MQTT_PORT`` names another loopback port to try first. Tests keep out of each
    other's way by using a unique enterprise id (and so topic prefix) each.
    """
    port = int(os.environ.get("DAQ_TEST_MQTT_PORT", "1883"))
    if answers("127.0.0.1", port):
        yield Broker("127.0.0.1", port, private=False)
        clear_test_retained("127.0.0.1", port)
        return
    binary = find_mosquitto()
    if binary is None:
        missing("mosquitto (Debian package mosquitto)")
        return
    with private_mosquitto(binary) as broker:
        yield broker


@pytest.fixture(scope="session")
def private_broker() -> Iterator[Broker]:
    """Always a private Mosquitto: for tests that stop and restart the broker."""
    binary = find_mosquitto()
    if binary is None:
        missing("mosquitto (Debian package mosquitto)")
        return
    with private_mosquitto(binary) as broker:
        yield broker


# -- servers a test stops, kills and starts again -----------------------------------------


class Restartable:
    """A private server of one test, on a fixed port with its files kept in one temporary
    directory across restarts: :meth:`stop` (SIGTERM, a clean stop), :meth:`kill` (SIGKILL)
    and :meth:`start` again. Each start logs to a file of its own in :attr:`tmp`."""

    def __init__(self, name: str, tmp: Path, port: int, args: Callable[[], list[str]],
                 ready: Callable[[], bool]) -> None:
        self.name, self.tmp, self.port = name, tmp, port
        self._args, self._ready = args, ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is running already")
        self.starts += 1
        log_path = self.tmp / f"{self.name}-{self.starts}.log"
        self.proc = start_process(self._args(), log_path, self.tmp)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_bytes()[-4000:].decode("utf-8", "replace")
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL after 10 s): the server shuts down cleanly."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown at all."""
        if self.proc is not None:
            kill_process(self.proc)
            self.proc = None


@contextlib.contextmanager
def _restartable(name: str, args: Callable[[Path, int], list[str]],
                 ready: Callable[[int], bool]) -> Iterator[Restartable]:
    tmp = Path(tempfile.mkdtemp(prefix=f"daq-test-{name}-"))
    server: Restartable | None = None
    try:
        port = free_port()
        server = Restartable(name, tmp, port, lambda: args(tmp, port), lambda: ready(port))
        try:
            server.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _pings(port: int) -> bool:
    try:
        return http("GET", f"http://127.0.0.1:{port}/ping").status == 204
    except urllib3.exceptions.HTTPError:
        return False


@contextlib.contextmanager
def restartable_influxdb() -> Iterator[Restartable]:
    """A private influxd (started) that the test may stop or kill and start again on the same
    data: what it acknowledged (HTTP 204) must still be there."""
    binary = find_binary("influxd")
    if binary is None:
        missing("influxd (Debian package influxdb)")
        return
    with _restartable("influxdb", _influxd_args(binary), _pings) as server:
        yield server


@contextlib.contextmanager
def restartable_mosquitto(*, persistence: bool = True) -> Iterator[Restartable]:
    """A private Mosquitto (started) with the settings daq needs (``simulators/broker.py``),
    that the test may stop or kill and start again on the same port. ``persistence=False``:
    a restart loses every session and every queued message."""
    binary = find_mosquitto()
    if binary is None:
        missing("mosquitto (Debian package mosquitto)")
        return
    mosquitto = binary
    conf_text = MOSQUITTO_CONF if persistence else MOSQUITTO_CONF.replace(
        "persistence true", "persistence false")
    assert conf_text.count("persistence false") == (0 if persistence else 1)

    def args(tmp: Path, port: int) -> list[str]:
        conf = tmp / "mosquitto.conf"
        if not conf.exists():
            conf.write_text(conf_text.format(port=port, dir=_broker_writable_dir(tmp)))
        return [mosquitto, "-c", str(conf)]

    with _restartable("mosquitto", args, lambda port: answers("127.0.0.1", port)) as server:
        yield server


# -- headless Chromium ------------------------------------------------------------------


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, as a Playwright ``Browser`` (sync API).

    Never a browser Playwright downloads: ``executable_path`` is Debian's binary, and
    ``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD`` is set. Missing chromium or playwright: skip, or
    fail under ``CI=true``. Tests using it are plain (not async) functions: the sync API
    runs its own event loop, which counts as *running* in this thread for as long as
    Playwright is started — so the browser lives for one module (keep the browser tests in
    one module: one browser per session), never across the suite's async tests.
    """
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    if not os.access(CHROMIUM, os.X_OK):
        missing("chromium (Debian package chromium)")
        return
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (pip install -e '.[test]')")
        return
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()
