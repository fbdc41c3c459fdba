"""The gateway's calibration stage: channels that name an instrument get its correction.

For every reading of such a channel the stage applies the correction of the instrument's
current certificate (``calibration.apply``) and attaches ``u``, ``k`` (so U = k·u) and the
certificate id. Nothing is ever dropped; a reading is kept and flagged ``uncertain`` with a
reason when

* its raw value lies outside the calibrated range (``outside_calibrated_range``: the value
  stays uncorrected, without u/k/cert — a correction is never extrapolated);
* the certificate has expired (``calibration_expired``: still corrected, with its cert);
* the traceability chain is broken (``chain_broken``: missing or expired reference
  certificates, a reference calibrated after its use, a reference used outside its range, a
  cycle, a chain that does not end at a national standard; the alarm's details list the
  chain's reasons, ``calibration.chain.ChainReason``);
* the instrument is unknown or has no certificate, or the registry's audit log fails its
  check (``not_calibrated``: no correction from an untrusted registry);
* neither the instrument record nor the certificate states the repeatability of one reading
  (``repeatability_unknown``: still corrected, with u/k/cert, but u leaves out the scatter
  of single readings — a certificate from a calibration session records it).

The registry (one SQLite file, written by ``daq cert import``) is read at start and looked at
every ``reload_s`` seconds: when its audit head changes, or the date changes (a certificate
may have expired overnight), the calibrations are rebuilt — a new certificate is picked up
without restarting the gateway; so is any other write to the file (SQLite's data version),
such as a record changed behind the registry's back. The registry's audit log is verified at
each rebuild; if it fails, no correction from it is trusted, not even the last good one. A
registry that cannot be read for a while (locked by a writer for more than
``busy_timeout_s``, or corrupt: any :class:`RegistryError`) leaves the last good records in
use — rebuilt on a new date, so a certificate still expires — with a warning, until it can
be read again; with no good records yet, the channels are flagged ``not_calibrated``. The
short busy timeout keeps a locked file from stalling the polls.

Mandatory verification (强制检定, ``calibration.verification``): a device may name the
instrument it is (``instrument:``, e.g. an energy meter) and channels name theirs. When that
instrument's status taints readings — verification overdue, never verified, failed, or a
first-verification-only meter past its service life — every reading it makes is still
acquired, stored and published, but carries ``verification`` = the state (``overdue`` …;
a tag in InfluxDB) and quality ``uncertain`` with the reason. A new verification record in
the registry clears it at the next reload.

The stage also tells, per device, which calibration and verification alarms are active
(:meth:`CalibrationStage.alarms`), for the gateway's retained ``…/alarms`` message.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.apply import ChannelCalibration, calibration_of
from calibration.chain import Records
from calibration.errors import CalibrationError
from calibration.legal import VerificationPeriods
from calibration.records import Certificate, Instrument, VerificationRecord
from calibration.registry import Registry, RegistryError
from calibration.verification import Register, VerificationError, VerificationStatus, status
from daq.alarms import Alarm, AlarmKind, Severity
from daq.model import Quality, Reading, Reason

log = logging.getLogger(__name__)

__all__ = ["CalibrationStage", "ChannelState"]


@dataclass(frozen=True)
class ChannelState:
    """What the stage knows of one (device, channel)'s instrument today."""

    instrument: str
    calibration: ChannelCalibration | None  # None: instrument unknown or registry unusable
    problem: str | None  # why no calibration applies (when ``calibration`` is None)

    @property
    def flag(self) -> Reason | None:
        """The reason every reading of the channel carries (besides range checks)."""
        cal = self.calibration
        if cal is None or not cal.usable:
            return Reason.NOT_CALIBRATED
        if cal.expired:
            return Reason.CALIBRATION_EXPIRED
        if cal.problems:
            return Reason.CHAIN_BROKEN
        return None


@dataclass(frozen=True)
class _Snapshot:
    """Records read from the registry whose audit log checked."""

    records: Records
    register: Register


def _utc_date(ts_ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).date()


_TAINT_REASON = {"overdue": Reason.VERIFICATION_OVERDUE,
                 "never_verified": Reason.VERIFICATION_OVERDUE,
                 "failed": Reason.VERIFICATION_FAILED,
                 "service_life_ended": Reason.SERVICE_LIFE_ENDED}


def _day_ns(day: dt.date | None, default: int) -> int:
    if day is None:
        return default
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) \
        * 1_000_000_000


class CalibrationStage:
    """Applies calibrations to readings and flags those of instruments whose mandatory
    verification is not in order; rebuilt when the registry or the date changes."""

    kinds: tuple[str, ...] = (AlarmKind.CALIBRATION_EXPIRED, AlarmKind.CHAIN_BROKEN,
                              AlarmKind.VERIFICATION_OVERDUE, AlarmKind.VERIFICATION_DUE_SOON,
                              AlarmKind.SERVICE_LIFE_ENDED)

    def __init__(self, registry_path: Path, channels: Mapping[str, Mapping[str, str]],
                 devices: Mapping[str, str | None] | None = None, *, reload_s: float = 5.0,
                 window_days: int = 30, periods: VerificationPeriods | None = None,
                 clock: Callable[[], float] = time.time, busy_timeout_s: float = 0.1) -> None:
        self.registry_path = registry_path
        self.busy_timeout_s = busy_timeout_s
        self.channels = {dev: dict(chs) for dev, chs in channels.items() if chs}
        self.devices = {dev: inst for dev, inst in (devices or {}).items() if inst}
        self.window_days = window_days
        self.periods = periods
        self.reload_s = reload_s
        self.clock = clock
        self._verification: dict[str, VerificationStatus | None] = {}
        self._states: dict[tuple[str, str], ChannelState] = {}
        self._head: tuple[str, int] | None = None
        self._on: dt.date | None = None
        self._checked = -float("inf")
        self._registry: Registry | None = None
        self._unusable: str | None = None
        self._good: _Snapshot | None = None  # the last records read and verified
        self._unreadable: str | None = None
        self.rebuilds = 0
        self.refresh(force=True)

    @property
    def active(self) -> bool:
        return bool(self.channels or self.devices)

    # -- registry ---------------------------------------------------------------------------
    def _open(self) -> Registry | None:
        if self._registry is None:
            try:
                self._registry = Registry(self.registry_path, create=False, read_only=True,
                                          busy_timeout_s=self.busy_timeout_s)
            except RegistryError as exc:
                self._set_unusable(str(exc))
        return self._registry

    def _set_unusable(self, why: str) -> None:
        if self._unusable != why:
            log.error("calibration registry %s: %s; readings of the channels that name an "
                      "instrument are flagged not_calibrated", self.registry_path, why)
        self._unusable = why

    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild if ``reload_s`` has passed and the registry or the date changed; True
        if rebuilt."""
        if not self.active:
            return False
        now = self.clock()
        if not force and now - self._checked < self.reload_s:
            return False
        self._checked = now
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        reg = self._open()
        try:
            # the audit head, and SQLite's data version: a record changed behind the
            # registry's back leaves the head as it was, but not the data version
            head = None if reg is None else (reg.head(), reg.data_version())
            if not force and head == self._head and today == self._on:
                self._readable()
                return False
            self._rebuild(reg, today)
        except RegistryError as exc:  # corrupt, or locked: keep the last good records
            self._set_unreadable(str(exc))
            if today == self._on:
                return False
            self._rebuild(None, today)  # a new date: the last good records, re-dated
            self._on = today
            return True
        self._readable()
        self._head, self._on = head, today
        return True

    def _set_unreadable(self, why: str) -> None:
        if self._unreadable != why:
            log.warning("calibration registry %s unreadable: %s; %s", self.registry_path, why,
                        "the last good records stay in use" if self._good is not None
                        else "no records to use")
        self._unreadable = why

    def _readable(self) -> None:
        if self._unreadable is not None:
            log.info("calibration registry %s readable again", self.registry_path)
            self._unreadable = None

    def _read(self, reg: Registry) -> _Snapshot | str:
        """The registry's records, or why none of them is trusted; RegistryError if it
        cannot be read now."""
        tampered = reg.verify()
        if tampered:
            return f"the registry's audit log fails its check: {tampered[0]}"
        instruments = [r for r in reg.list("instrument") if isinstance(r, Instrument)]
        certificates = [r for r in reg.list("certificate") if isinstance(r, Certificate)]
        verifications = [r for r in reg.list("verification")
                         if isinstance(r, VerificationRecord)]
        return _Snapshot(Records.of(instruments, certificates),
                         Register.of(instruments, certificates, verifications))

    def _rebuild(self, reg: Registry | None, today: dt.date) -> None:
        """Rebuild for ``today`` from ``reg``, or from the last good records if ``reg`` is
        None because the registry cannot be read now. Raises RegistryError (and changes
        nothing) if ``reg`` cannot be read."""
        good: _Snapshot | None = None
        problem = self._unusable or "no registry"
        if reg is not None:
            got = self._read(reg)
            if isinstance(got, str):
                problem = got
                self._good = None  # distrusted: never fall back to what came before
                self._set_unusable(problem)
            else:
                good = self._good = got
                self._unusable = None
        elif self._good is not None:
            good = self._good
        elif self._unreadable is not None:
            problem = f"cannot read the registry: {self._unreadable}"
        records = None if good is None else good.records
        register = None if good is None else good.register
        of_channels = {i for chs in self.channels.values() for i in chs.values()}
        verification: dict[str, VerificationStatus | None] = {}
        for inst in of_channels | set(self.devices.values()):
            try:
                verification[inst] = None if register is None else status(
                    register, inst, today, self.window_days, self.periods)
            except VerificationError:
                verification[inst] = None  # unknown instrument: reported by its channel state
        for inst, st in verification.items():
            before = self._verification.get(inst)
            if st is not None and (before is None or before.state != st.state):
                log.info("instrument %s: verification %s (%s)", inst, st.state, st.reason)
        self._verification = verification
        # one calibration (chain resolved, model built) per instrument, shared by its channels
        per_instrument = {inst: self._state(records, inst, today, problem)
                          for inst in of_channels}
        states = {(dev, ch): per_instrument[inst]
                  for dev, chs in self.channels.items() for ch, inst in chs.items()}
        changed = [k for k, s in states.items()
                   if (old := self._states.get(k)) is None or old.calibration is None
                   or s.calibration is None or old.calibration.cert_id != s.calibration.cert_id]
        self._states = states
        self.rebuilds += 1
        for key in changed:
            s = states[key]
            log.info("%s/%s: instrument %s, certificate %s%s", key[0], key[1], s.instrument,
                     s.calibration.cert_id if s.calibration else None,
                     f" ({s.flag})" if s.flag else "")
            if s.calibration is not None and s.calibration.usable \
                    and not s.calibration.repeatability_known:
                log.warning("%s/%s: neither instrument %s nor certificate %s states a "
                            "repeatability; its readings are flagged %s", key[0], key[1],
                            s.instrument, s.calibration.cert_id,
                            Reason.REPEATABILITY_UNKNOWN.value)

    @staticmethod
    def _state(records: Records | None, inst: str, today: dt.date,
               problem: str) -> ChannelState:
        if records is None:
            return ChannelState(inst, None, problem)
        if inst not in records.instruments:
            return ChannelState(inst, None, f"instrument {inst!r} is not in the registry")
        try:
            return ChannelState(inst, calibration_of(records, inst, today), None)
        except CalibrationError as exc:
            return ChannelState(inst, None, f"certificate model unusable: {exc}")

    def state(self, device: str, channel: str) -> ChannelState | None:
        return self._states.get((device, channel))

    # -- readings ---------------------------------------------------------------------------
    def apply(self, readings: list[Reading]) -> None:
        """Correct and flag, in place, the readings of channels that name an instrument."""
        if not self.active or not readings:
            return
        self.refresh()
        device = readings[0].device
        chs = self.channels.get(device, {})
        device_inst = self.devices.get(device)
        if not chs and device_inst is None:
            return
        for r in readings:
            inst = chs.get(r.channel, device_inst)
            ver = self._verification.get(inst) if inst is not None else None
            if ver is not None and ver.taints_readings:
                r.verification = "overdue" if ver.state == "never_verified" else ver.state
                if r.quality is not Quality.BAD:
                    r.flag(_TAINT_REASON[ver.state])
            if r.channel not in chs or r.quality is Quality.BAD:
                continue
            st = self._states.get((r.device, r.channel))
            if st is None:
                continue
            flag = st.flag
            cal = st.calibration
            if cal is not None and cal.usable and isinstance(r.value, int | float) \
                    and not isinstance(r.value, bool):
                assert cal.certificate is not None
                days = (_utc_date(r.ts_ns) - cal.certificate.calibration_date).days
                out = cal.correct(np.float64(r.value), float(days))
                if bool(out.in_range):
                    r.value = float(out.value)
                    r.u = float(out.u)
                    r.k = float(out.k)
                    r.cert = cal.cert_id
                    if not cal.repeatability_known:
                        r.flag(Reason.REPEATABILITY_UNKNOWN)
                else:
                    r.flag(Reason.OUTSIDE_CALIBRATED_RANGE)
            if flag is not None:
                r.flag(flag)

    # -- alarms -----------------------------------------------------------------------------
    def alarms(self, device: str, now_ns: int) -> list[Alarm]:
        """The calibration and verification alarms active for ``device`` now (one per
        affected channel; device-wide for the device's own instrument)."""
        out = self._verification_alarms(device, now_ns)
        for ch in self.channels.get(device, {}):
            st = self._states.get((device, ch))
            if st is None or st.flag is None:
                continue
            cal = st.calibration
            if st.flag is Reason.CALIBRATION_EXPIRED:
                assert cal is not None
                assert cal.expires is not None
                out.append(Alarm(AlarmKind.CALIBRATION_EXPIRED, now_ns,
                                 f"certificate {cal.cert_id} of {st.instrument} expired on "
                                 f"{cal.expires}", Severity.WARNING, ch,
                                 {"instrument": st.instrument, "certificate": cal.cert_id,
                                  "expired": cal.expires.isoformat()}))
            else:
                why = st.problem if cal is None else "; ".join(cal.problems)
                details: dict[str, object] = {"instrument": st.instrument}
                if cal is not None and cal.chain_reasons:  # which links broke, and how
                    details["reasons"] = list(cal.chain_reasons)
                out.append(Alarm(AlarmKind.CHAIN_BROKEN, now_ns,
                                 f"{st.instrument}: {why}", Severity.WARNING, ch, details))
        return out

    def verification(self, instrument: str) -> VerificationStatus | None:
        return self._verification.get(instrument)

    def _verification_alarms(self, device: str, now_ns: int) -> list[Alarm]:
        out: list[Alarm] = []
        targets: list[tuple[str | None, str]] = []
        if (inst := self.devices.get(device)) is not None:
            targets.append((None, inst))
        targets += [(ch, i) for ch, i in self.channels.get(device, {}).items()
                    if i != self.devices.get(device)]
        for channel, inst in targets:
            st = self._verification.get(inst)
            if st is None:
                continue
            if st.state in ("overdue", "never_verified", "failed"):
                kind, severity = AlarmKind.VERIFICATION_OVERDUE, Severity.CRITICAL
            elif st.state == "service_life_ended":
                kind, severity = AlarmKind.SERVICE_LIFE_ENDED, Severity.CRITICAL
            elif st.state == "due_soon":
                kind, severity = AlarmKind.VERIFICATION_DUE_SOON, Severity.INFO
            elif st.state == "calibration_expired" and channel is None:
                # the device's own instrument (channels' certificates: see alarms())
                kind, severity = AlarmKind.CALIBRATION_EXPIRED, Severity.WARNING
            else:
                continue
            details = {k: v for k, v in st.as_dict().items()
                       if k in ("instrument", "state", "due", "days_left", "last_record",
                                "mode", "source")}
            since = st.since
            if st.state == "due_soon" and st.due is not None:  # since the window opened
                since = st.due - dt.timedelta(days=self.window_days)
            out.append(Alarm(kind, _day_ns(since, now_ns), f"{inst}: {st.reason}",
                             severity, channel, details))
        return out

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None
