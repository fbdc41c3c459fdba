"""A full or read-only disk under the outbox: the gateway keeps polling, says so with a
retained alarm, holds what it cannot commit, and resumes by itself when space returns.
A real small file system (tmpfs, mounted here), real simulators, real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from daq.alarms import AlarmKind
from daq.config import LoadedConfig, load_config
from gateway.acquisition.service import GatewayService
from gateway.ingest.service import Ingest
from gateway.storage import open_storage
from gateway.storage.historian import HistorianStorage
from simulators.broker import free_port, private_mosquitto
from simulators.fleet import MeterFleet, MeterSpec
from tests.integration.pathrun import alarm_states, pin_keys, wait_for
from tests.services import is_ci

# a small tmpfs needs root; under CI=true these run (and fail without root), never skip
pytestmark = [pytest.mark.services,
              pytest.mark.skipif(os.geteuid() != 0 and not is_ci(),
                                 reason="mounts a small tmpfs: needs root")]

REPO = Path(__file__).resolve().parents[4]


@contextlib.contextmanager
def small_volume(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A real small file system (tmpfs) at ``where``; unmounted on exit whatever happens."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(volume: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about ``leave_bytes`` free on ``volume``."""
    st = os.statvfs(volume)
    free = st.f_bavail * st.f_frsize
    filler = volume / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def site(tmp: Path, fleet: MeterFleet, ent: str, port: int, outbox: Path,
         extra: str = "") -> LoadedConfig:
    (tmp / "site.yaml").write_text(f"""
enterprise: {{id: {ent}}}
gateways:
  - id: gw-1
    outbox: {outbox}
{extra}    buses:
      - id: bus-m
        protocol: modbus-tcp
        host: 127.0.0.1
        port: {fleet["m"].port}
        timeout_ms: 300
        devices:
          - id: m
            profile: {fleet["m"].profile.id}
            interval_ms: 50
mqtt: {{host: 127.0.0.1, port: {port}}}
ingest:
  subscription: daq/{ent}/#
  batch_interval_ms: 50
  spool: spool.sqlite
  dead_letter: rejected.sqlite
storage:
  kind: historian
  path: h.sqlite
""")
    return load_config(tmp / "site.yaml")


def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_a_full_volume_with_the_broker_down_alarms_keeps_polling_and_recovers(
        tmp_path: Path) -> None:
    async with MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
        with small_volume(tmp_path / "vol", "2m") as vol:
            port = free_port()  # the broker is down
            ent = unique()
            loaded = site(tmp_path, fleet, ent, port, vol / "outbox.sqlite")
            gw = GatewayService(loaded)
            filler = fill(vol, 150_000)
            task = asyncio.create_task(gw.run())
            try:
                await wait_for(lambda: gw.guard.unwritable is not None, 60,
                               "the outbox never filled the volume")
                assert "full" in (gw.guard.unwritable or "")
                polls = gw.coordinators[0].state.polls
                await asyncio.sleep(1.5)
                assert not task.done()  # nothing crashed
                assert gw.coordinators[0].state.polls >= polls + 10  # polling goes on
                assert gw.guard.held_readings > 0  # held in memory, not lost
                with private_mosquitto(port=port), \
                        alarm_states("127.0.0.1", port, f"daq/{ent}/gw-1/m/alarms") as states:
                    pin_keys(loaded)
                    ingest = Ingest(loaded, open_storage(loaded))
                    ingest.start()
                    try:
                        assert await asyncio.to_thread(ingest.wait_subscribed, 10)
                        await wait_for(lambda: any(
                            a.kind == AlarmKind.OUTBOX_UNWRITABLE
                            for s in states[-1:] for a in s.alarms), 20,
                            "the outbox alarm was not seen on MQTT")
                        # the backlog goes out while the disk is still full: deleting what
                        # storage confirmed may be refused; it must not kill the gateway
                        await wait_for(lambda: ingest.stats.written_readings > 0, 20,
                                       "nothing of the backlog arrived")
                        await asyncio.sleep(2.0)
                        assert not task.done()
                        filler.unlink()  # space returns
                        await wait_for(lambda: gw.guard.unwritable is None
                                       and gw.publisher.delete_error is None, 20,
                                       "the gateway did not resume writing")
                        await wait_for(lambda: bool(states) and not any(
                            a.kind == AlarmKind.OUTBOX_UNWRITABLE
                            for a in states[-1].alarms), 20, "the alarm did not clear")
                        assert gw.guard.held_readings == 0
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                        await wait_for(  # the readings and the alarm's two events
                            lambda: ingest.stats.written_readings >= gw.acquired
                            and ingest.stats.written_alarm_events >= 2, 30,
                            "not everything committed arrived")
                    finally:
                        await asyncio.to_thread(ingest.stop)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert gw.guard.lost_readings == 0  # the bound (200 000 readings) was never reached
    hist = HistorianStorage(loaded.resolve("h.sqlite"))
    try:
        # the alarm's events (raised, cleared) went to storage too, with the held polls
        assert hist.count(channel=AlarmKind.OUTBOX_UNWRITABLE) == 2
        # everything committed, once
        assert hist.count() - 2 == gw.acquired
    finally:
        hist.close()


def test_a_read_only_outbox_directory_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    async def scenario() -> subprocess.CompletedProcess[str]:
        async with MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
            with small_volume(tmp_path / "ro", "1m", read_only=True) as vol:
                site(tmp_path, fleet, unique(), free_port(), vol / "outbox.sqlite")
                return await asyncio.to_thread(
                    subprocess.run, [str(Path(sys.executable).parent / "daq"), "gateway",
                                     str(tmp_path / "site.yaml")],
                    capture_output=True, text=True, timeout=60, cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO)})

    done = asyncio.run(scenario())
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    # the service's first log line names its version; then the one error line
    lines = [ln for ln in done.stderr.splitlines()
             if ln.strip() and not ln.endswith(f"daq gateway {version('daq-metrology')} starting")]
    assert len(lines) == 1, done.stderr
    assert "cannot be opened for writing" in lines[0]
    assert "outbox.sqlite" in lines[0]


async def test_a_restart_on_a_full_volume_sends_the_backlog_and_keeps_running(
        tmp_path: Path) -> None:
    """The crash loop as found: full volume, broker down, then a restart with the broker up
    died in the DELETE of what storage confirmed. Now it sends, keeps polling, and deletes
    later."""
    async with MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
        with small_volume(tmp_path / "vol", "2m") as vol:
            port = free_port()
            ent = unique()
            loaded = site(tmp_path, fleet, ent, port, vol / "outbox.sqlite")
            first = GatewayService(loaded)
            filler = fill(vol, 150_000)
            task = asyncio.create_task(first.run())
            try:
                await wait_for(lambda: first.guard.unwritable is not None, 60,
                               "the outbox never filled the volume")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert first.acquired > 0
            with private_mosquitto(port=port):
                pin_keys(loaded)
                ingest = Ingest(loaded, open_storage(loaded))
                ingest.start()
                second = GatewayService(loaded)  # opens the outbox on the full volume
                task = asyncio.create_task(second.run())
                try:
                    assert await asyncio.to_thread(ingest.wait_subscribed, 10)
                    await wait_for(lambda: ingest.stats.written_readings >= first.acquired,
                                   30, "the backlog did not arrive")
                    polls = second.coordinators[0].state.polls
                    await asyncio.sleep(2.0)
                    assert not task.done()  # it did not die in the DELETE
                    assert second.coordinators[0].state.polls >= polls + 10
                    filler.unlink()
                    await wait_for(lambda: second.guard.unwritable is None
                                   and second.publisher.delete_error is None
                                   and second.outbox.count() == 0, 30,
                                   "the confirmed backlog was not deleted")
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    await wait_for(lambda: ingest.stats.written_readings
                                   >= first.acquired + second.acquired, 30,
                                   "not everything committed arrived")
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    await asyncio.to_thread(ingest.stop)
    hist = HistorianStorage(loaded.resolve("h.sqlite"))
    try:
        events = hist.count(channel=AlarmKind.OUTBOX_UNWRITABLE)
        assert hist.count() - events == first.acquired + second.acquired
    finally:
        hist.close()


async def test_the_cap_bounds_the_outbox_during_an_outage_and_says_so(tmp_path: Path) -> None:
    """``outbox_max_mb`` with the broker down: the oldest rows go (counted), the file stays
    near the cap, ``outbox_full`` is seen on MQTT when the broker returns, and what was kept
    arrives."""
    async with MeterFleet([MeterSpec("sdm630", name="m")]) as fleet:
        port = free_port()
        ent = unique()
        loaded = site(tmp_path, fleet, ent, port, tmp_path / "outbox.sqlite",
                      extra="    outbox_max_mb: 0.1\n    delivery: {ack_timeout_s: 1}\n")
        gw = GatewayService(loaded)
        task = asyncio.create_task(gw.run())
        try:
            await wait_for(lambda: gw.guard.dropped_rows > 0, 60, "the cap never dropped")
            await asyncio.sleep(2.0)
            # checked after every commit: over by one commit's rows at most (~5 kB each here)
            assert gw.outbox.used_bytes() <= 100_000 + 16_384
            assert gw.guard.dropped_readings > 0
            with private_mosquitto(port=port), \
                    alarm_states("127.0.0.1", port, f"daq/{ent}/gw-1/m/alarms") as states:
                pin_keys(loaded)
                ingest = Ingest(loaded, open_storage(loaded))
                ingest.start()
                try:
                    assert await asyncio.to_thread(ingest.wait_subscribed, 10)
                    await wait_for(lambda: any(a.kind == AlarmKind.OUTBOX_FULL
                                               for s in states for a in s.alarms), 20,
                                   "outbox_full was not seen on MQTT")
                    await wait_for(lambda: bool(states) and not any(
                        a.kind == AlarmKind.OUTBOX_FULL for a in states[-1].alarms), 20,
                        "outbox_full did not clear")
                    # the backlog went out when the broker came back, maybe before the ingest
                    # subscribed: what storage does not confirm is sent again (after
                    # ack_timeout_s); it must arrive while the gateway still runs
                    backlog = gw.acquired - gw.guard.dropped_readings
                    await wait_for(lambda: ingest.stats.written_readings >= backlog, 30,
                                   "the backlog kept by the cap was not sent again")
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    kept = gw.acquired - gw.guard.dropped_readings
                    await wait_for(lambda: ingest.stats.written_readings >= kept
                                   and ingest.stats.written_alarm_events >= 2, 30,
                                   "what the cap kept did not arrive")  # + the 2 events
                finally:
                    await asyncio.to_thread(ingest.stop)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    hist = HistorianStorage(loaded.resolve("h.sqlite"))
    try:
        events = hist.count(channel=AlarmKind.OUTBOX_FULL)
        assert events == 2  # raised, cleared
        # every reading acquired is either in storage or counted as dropped by the cap
        assert hist.count() - events == gw.acquired - gw.guard.dropped_readings
    finally:
        hist.close()
