"""Find an MQTT broker on loopback, or start a private Mosquitto for the demo and tests.

daq needs two broker settings beyond Mosquitto's defaults for a private instance (see
docs/broker.md): ``max_queued_messages`` raised from 1000 (the default silently drops QoS 1
messages for a subscriber that falls behind) and ``max_inflight_messages`` raised from 20.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
# persistence shortens a replay after a restart; the end-to-end acknowledgement is what
# guarantees delivery (docs/mqtt.md)
persistence true
persistence_location {dir}/
autosave_interval 60
max_queued_messages 1000000
max_inflight_messages 65535
max_packet_size 10000000
log_dest stderr
log_type error
log_type warning
"""


class BrokerUnavailable(RuntimeError):
    """No broker answers and none could be started."""


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    private: bool


def answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_mosquitto() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def try_install_mosquitto() -> str | None:
    """Install Debian's mosquitto when we can (root, apt present); return its path or None."""
    if find_mosquitto() is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "mosquitto"]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
    return find_mosquitto()


@contextlib.contextmanager
def private_mosquitto(binary: str | None = None, port: int | None = None,
                      conf_template: str = MOSQUITTO_CONF) -> Iterator[Broker]:
    """Start a private Mosquitto on loopback (a free port unless given); stop it on exit.

    ``conf_template`` is the mosquitto.conf text with ``{port}`` where the port goes and
    ``{dir}`` where a directory the broker may write (its persistence) goes."""
    binary = binary or find_mosquitto()
    if binary is None:
        raise BrokerUnavailable("mosquitto is not installed (Debian package 'mosquitto')")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="daq-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        data = _broker_writable_dir(Path(tmp))
        conf.write_text(conf_template.format(port=port, dir=data))
        log = open(Path(tmp) / "mosquitto.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while not answers("127.0.0.1", port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    text = (Path(tmp) / "mosquitto.log").read_text(errors="replace")
                    raise BrokerUnavailable(f"private mosquitto did not start:\n{text}")
                time.sleep(0.05)
            yield Broker("127.0.0.1", port, private=True)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def _broker_writable_dir(tmp: Path) -> Path:
    """A folder in ``tmp`` the broker can write: Mosquitto started as root drops to the user
    ``mosquitto``, which may neither enter a private temporary folder nor write in it."""
    data = tmp / "data"
    data.mkdir()
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("mosquitto")
        except KeyError:
            return data
        tmp.chmod(0o711)  # others may pass through, not list
        os.chown(data, user.pw_uid, user.pw_gid)
    return data


@contextlib.contextmanager
def ensure_broker(host: str = "127.0.0.1", port: int = 1883,
                  install: bool = False) -> Iterator[Broker]:
    """Use the broker on host:port when it answers; otherwise start a private Mosquitto."""
    if answers(host, port):
        yield Broker(host, port, private=False)
        return
    binary = try_install_mosquitto() if install else find_mosquitto()
    with private_mosquitto(binary) as broker:
        yield broker
