"""Mandatory verification (强制检定): the status of every instrument of a register at a date,
sorted by urgency, per-enterprise summaries and GB 17167 accuracy-class findings.

Pure: functions from records (and the data of :mod:`calibration.legal`) to statuses. Build a
:class:`Register` once (from a :class:`~calibration.records.RecordSet`, a registry or lists of
records) and call :func:`status` per instrument; rebuild it when the registry changes (a newly
imported verification record then clears an ``overdue``).

Dates are inclusive: an instrument due on D is still valid on D (``due_soon``, 0 days left) and
``overdue`` from D + 1; a service life ending on D ends at the end of D. Rules, states and
their reasons: ``docs/verification.md``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from calibration.chain import Records
from calibration.errors import CalibrationError
from calibration.legal import Gb17167Classes, VerificationPeriods, class_number
from calibration.records import (
    Certificate,
    Instrument,
    RecordSet,
    VerificationRecord,
    expires_on,
    expiry_source,
)

if TYPE_CHECKING:
    from calibration.registry import Registry

State = Literal["service_life_ended", "overdue", "failed", "never_verified",
                "calibration_expired", "due_soon", "valid", "not_required"]
# most urgent first; the order of the register listing
STATES: tuple[State, ...] = ("service_life_ended", "overdue", "failed", "never_verified",
                             "calibration_expired", "due_soon", "valid", "not_required")
URGENCY: dict[State, int] = {s: i for i, s in enumerate(STATES)}
# states in which readings are still acquired but marked ``verification: overdue`` and
# quality uncertain (the instrument may not be relied on legally)
TAINTING: frozenset[State] = frozenset({"service_life_ended", "overdue", "failed",
                                        "never_verified"})
DEFAULT_WINDOW_DAYS = 30


class VerificationError(CalibrationError):
    """A status that cannot be computed (unknown instrument, negative window)."""


@dataclass
class Register:
    """Instruments with their certificates and verification records, indexed for status."""

    instruments: dict[str, Instrument] = field(default_factory=dict)
    certificates: dict[str, list[Certificate]] = field(default_factory=dict)
    verifications: dict[str, list[VerificationRecord]] = field(default_factory=dict)

    @classmethod
    def of(cls, instruments: Iterable[Instrument], certificates: Iterable[Certificate] = (),
           verifications: Iterable[VerificationRecord] = ()) -> Register:
        reg = cls({i.id: i for i in instruments})
        for c in sorted(certificates, key=lambda c: (c.calibration_date, c.id)):
            reg.certificates.setdefault(c.instrument, []).append(c)
        for v in sorted(verifications, key=lambda v: (v.date, v.record_number)):
            reg.verifications.setdefault(v.instrument, []).append(v)
        return reg

    @classmethod
    def from_records(cls, records: RecordSet) -> Register:
        return cls.of(records.instruments, records.certificates, records.verifications)

    @classmethod
    def from_chain_records(cls, records: Records) -> Register:
        """From :class:`calibration.chain.Records` (which hold no verification records: every
        instrument under mandatory verification is then ``never_verified``)."""
        return cls.of(records.instruments.values(), records.certificates.values())

    @classmethod
    def from_registry(cls, registry: Registry) -> Register:
        out: list[Any] = [registry.list(k) for k in ("instrument", "certificate", "verification")]
        return cls.of(*out)


AnyRecords = Register | RecordSet | Records


def as_register(records: AnyRecords) -> Register:
    if isinstance(records, Register):
        return records
    if isinstance(records, RecordSet):
        return Register.from_records(records)
    return Register.from_chain_records(records)


@dataclass(frozen=True)
class VerificationStatus:
    """The status of one instrument at ``at``, with its reason and dates.

    ``due``: the last day the instrument may be relied on (next verification due, end of
    service life or certificate expiry). ``since``: the day the current state began (the day
    after ``due`` for overdue / ended / expired, the failed verification's date, the
    installation date of a never verified meter if known). ``days_left`` = due − at
    (negative: days over).
    """

    instrument: str
    enterprise: str
    state: State
    reason: str
    at: dt.date
    basis: Literal["verification", "calibration", "none"]
    mode: Literal["periodic", "first_only"] | None = None
    last_date: dt.date | None = None
    last_record: str | None = None
    due: dt.date | None = None
    since: dt.date | None = None
    days_left: int | None = None
    source: str | None = None

    @property
    def days_over(self) -> int:
        return max(0, -self.days_left) if self.days_left is not None else 0

    @property
    def taints_readings(self) -> bool:
        """True when readings must carry ``verification: overdue`` and quality uncertain."""
        return self.state in TAINTING

    def sort_key(self) -> tuple[int, int, str]:
        return URGENCY[self.state], self.days_left if self.days_left is not None else 0, \
            self.instrument

    def as_dict(self) -> dict[str, Any]:
        def d(x: dt.date | None) -> str | None:
            return x.isoformat() if x else None

        return {
            "instrument": self.instrument, "enterprise": self.enterprise, "state": self.state,
            "reason": self.reason, "at": self.at.isoformat(), "basis": self.basis,
            "mode": self.mode, "last_date": d(self.last_date), "last_record": self.last_record,
            "due": d(self.due), "since": d(self.since), "days_left": self.days_left,
            "source": self.source, "taints_readings": self.taints_readings,
        }


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` + ``months`` calendar months, clamped to the end of a shorter month."""
    m = day.month - 1 + months
    year, month = day.year + m // 12, m % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _add_years(day: dt.date, years: float) -> dt.date:
    return add_months(day, round(years * 12))


def status(records: AnyRecords, instrument_id: str, at: dt.date,
           window_days: int = DEFAULT_WINDOW_DAYS,
           periods: VerificationPeriods | None = None) -> VerificationStatus:
    """The status of ``instrument_id`` at ``at``.

    Instruments under mandatory verification get their status from their verification
    records (periodic or first-only with a service life, defaults from ``periods``); the
    others from their calibration certificates (``calibration_expired``), or
    ``not_required`` when they have none. ``due_soon`` when 0 ≤ days left ≤ ``window_days``.
    Raises :class:`VerificationError` for an unknown instrument or a negative window.
    """
    reg = as_register(records)
    if window_days < 0:
        raise VerificationError(f"window_days must be >= 0, got {window_days}")
    inst = reg.instruments.get(instrument_id)
    if inst is None:
        raise VerificationError(f"instrument {instrument_id!r} is not in the register")
    if inst.mandatory_verification:
        return _verification_status(reg, inst, at, window_days, periods)
    return _calibration_status(reg, inst, at, window_days)


def register_status(records: AnyRecords, at: dt.date,
                    window_days: int = DEFAULT_WINDOW_DAYS,
                    periods: VerificationPeriods | None = None,
                    enterprise: str | None = None) -> list[VerificationStatus]:
    """Every instrument's status (of one enterprise if given), most urgent first."""
    reg = as_register(records)
    out = [status(reg, i.id, at, window_days, periods) for i in reg.instruments.values()
           if enterprise is None or i.owner == enterprise]
    return sorted(out, key=VerificationStatus.sort_key)


def _finish(base: dict[str, Any], due: dt.date, at: dt.date, window_days: int,
            late_state: State, late_reason: str, ok_reason: str) -> VerificationStatus:
    days_left = (due - at).days
    if days_left < 0:
        return VerificationStatus(**base, state=late_state, due=due, days_left=days_left,
                                  since=due + dt.timedelta(days=1),
                                  reason=f"{late_reason} on {due}, {-days_left} days ago")
    state: State = "due_soon" if days_left <= window_days else "valid"
    when = "today" if days_left == 0 else f"in {days_left} days"
    return VerificationStatus(**base, state=state, due=due, days_left=days_left,
                              since=base["last_date"],
                              reason=f"{ok_reason} {due} ({when})")


def _verification_status(reg: Register, inst: Instrument, at: dt.date, window_days: int,
                         periods: VerificationPeriods | None) -> VerificationStatus:
    plan = inst.verification
    rule = periods.rule_for(inst) if periods is not None else None
    mode = plan.mode if plan is not None else rule.mode if rule is not None else "periodic"
    done = [v for v in reg.verifications.get(inst.id, []) if v.date <= at]
    base: dict[str, Any] = {"instrument": inst.id, "enterprise": inst.owner, "at": at,
                            "basis": "verification", "mode": mode}
    if not done:
        installed = plan.installed if plan is not None else None
        return VerificationStatus(**base, state="never_verified", since=installed,
                                  reason=f"under mandatory verification, no verification "
                                         f"record on or before {at}")
    last = done[-1]
    base |= {"last_date": last.date, "last_record": last.record_number}
    if last.result == "fail":
        return VerificationStatus(**base, state="failed", since=last.date,
                                  reason=f"verification {last.record_number} on {last.date} "
                                         f"by {last.authority} failed")
    if mode == "first_only":
        life = plan.service_life_years if plan is not None else None
        source = "instrument record" if life is not None else None
        if life is None and rule is not None and rule.service_life_years is not None:
            life, source = rule.service_life_years, rule.source
        if life is None:
            return _finish(base | {"source": "verification record next_due (service life "
                                              "unknown: give service_life_years or a known "
                                              "instrument_type)"},
                           last.next_due, at, window_days, "service_life_ended",
                           "next due date passed", "replace or re-verify by")
        passed = [v for v in done if v.result == "pass"]
        start = plan.installed if plan is not None and plan.installed else passed[0].date
        end = _add_years(start, life) - dt.timedelta(days=1)
        return _finish(base | {"source": f"service life {life:g} years from {start} "
                                          f"({source})"},
                       end, at, window_days, "service_life_ended",
                       f"first verification only; service life of {life:g} years ended",
                       "service life ends")
    due, source = last.next_due, "verification record next_due"
    months = plan.period_months if plan is not None else None
    days = plan.period_days if plan is not None else None
    src = "instrument record"
    if months is None and days is None and rule is not None:
        months, src = rule.period_months, rule.source
    if months is not None or days is not None:
        by_period = add_months(last.date, months) if months is not None else \
            last.date + dt.timedelta(days=days or 0)
        period = f"{months} months" if months is not None else f"{days} days"
        if by_period < due:
            due, source = by_period, (f"period {period} ({src}) ends before the record's "
                                      f"next_due {last.next_due}")
    return _finish(base | {"source": source}, due, at, window_days, "overdue",
                   "verification was due", "next verification due")


def _calibration_status(reg: Register, inst: Instrument, at: dt.date,
                        window_days: int) -> VerificationStatus:
    certs = [c for c in reg.certificates.get(inst.id, []) if c.calibration_date <= at]
    base: dict[str, Any] = {"instrument": inst.id, "enterprise": inst.owner, "at": at}
    if not certs:
        return VerificationStatus(**base, basis="none", state="not_required",
                                  reason="not under mandatory verification; no calibration "
                                         f"certificate on or before {at}")
    last = certs[-1]
    base |= {"basis": "calibration", "last_date": last.calibration_date,
             "last_record": last.id, "source": expiry_source(last, inst)}
    return _finish(base, expires_on(last, inst), at, window_days, "calibration_expired",
                   f"calibration certificate {last.id} expired", "certificate valid until")


# -- per-enterprise summary ---------------------------------------------------------------------
@dataclass(frozen=True)
class EnterpriseSummary:
    """Counts per state and the share of energy flow measured by legally usable meters.

    ``valid_share``: Σ weight of energy meters (instruments with an ``energy_type``) whose
    state is ``valid``, ``due_soon`` or (for calibrated ones) not tainting, over Σ weight of
    all energy meters; weight = ``energy_flow_weight`` (default 1, i.e. a share by count).
    None when the enterprise has no energy meter.
    """

    enterprise: str
    counts: dict[State, int]
    energy_meters: int
    valid_share: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"enterprise": self.enterprise, "counts": dict(self.counts),
                "energy_meters": self.energy_meters, "valid_share": self.valid_share}


_USABLE: frozenset[State] = frozenset({"valid", "due_soon"})


def summaries(records: AnyRecords,
              statuses: Iterable[VerificationStatus]) -> list[EnterpriseSummary]:
    reg = as_register(records)
    by_ent: dict[str, list[VerificationStatus]] = {}
    for s in statuses:
        by_ent.setdefault(s.enterprise, []).append(s)
    out = []
    for ent in sorted(by_ent):
        counts: dict[State, int] = dict.fromkeys(STATES, 0)
        total = usable = 0.0
        meters = 0
        for s in by_ent[ent]:
            counts[s.state] += 1
            inst = reg.instruments[s.instrument]
            if inst.energy_type is None:
                continue
            meters += 1
            w = 1.0 if inst.energy_flow_weight is None else inst.energy_flow_weight
            total += w
            if s.state in _USABLE:
                usable += w
        share = usable / total if total > 0 else None
        out.append(EnterpriseSummary(ent, counts, meters, share))
    return out


# -- GB 17167 accuracy classes --------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """A compliance finding: ``class_insufficient`` (class worse than required) or
    ``unchecked`` (no applicable requirement could be found; the message says why)."""

    instrument: str
    enterprise: str
    kind: Literal["class_insufficient", "unchecked"]
    message: str
    edition: str | None = None
    required: str | None = None
    actual: str | None = None
    confirmed: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"instrument": self.instrument, "enterprise": self.enterprise,
                "kind": self.kind, "message": self.message, "edition": self.edition,
                "required": self.required, "actual": self.actual, "confirmed": self.confirmed}


def instrument_class(inst: Instrument) -> tuple[str, tuple[float, int]]:
    """The instrument's class name and sort key; an MPE a % reading + b % range is taken as
    class a + b (its MPE at full scale, in % of range), not an S class."""
    acc = inst.accuracy
    if acc.class_ is not None:
        return acc.class_, class_number(acc.class_)
    assert acc.a_pct_reading is not None
    assert acc.b_pct_range is not None
    total = acc.a_pct_reading + acc.b_pct_range
    return f"{total:g} (a+b %)", (total, 1)


def class_findings(records: AnyRecords, classes: Gb17167Classes, at: dt.date,
                   edition: str | None = None,
                   enterprise: str | None = None) -> list[Finding]:
    """Findings for every instrument with an ``energy_type`` and a ``measurement_level``,
    against ``edition`` (by name) or the edition in force at ``at``."""
    reg = as_register(records)
    ed = classes.edition_named(edition) if edition else classes.edition_at(at)
    out: list[Finding] = []
    for inst in sorted(reg.instruments.values(), key=lambda i: (i.owner, i.id)):
        if inst.energy_type is None or inst.measurement_level is None:
            continue
        if enterprise is not None and inst.owner != enterprise:
            continue
        actual, key = instrument_class(inst)
        common: dict[str, Any] = {"instrument": inst.id, "enterprise": inst.owner,
                                  "actual": actual}
        if ed is None:
            what = f"edition {edition!r}" if edition else f"no GB 17167 edition in force at {at}"
            out.append(Finding(**common, kind="unchecked", message=f"{what} in the class data"))
            continue
        if not ed.requirements:
            out.append(Finding(**common, kind="unchecked", edition=ed.edition,
                               message=f"requirements of {ed.edition} not available "
                                       "(its tables could not be confirmed)"))
            continue
        req = ed.requirement_for(inst)
        if req is None:
            cats = ed.categories_for(inst.energy_type, inst.measurement_level)
            hint = (f"; give metering_category (one of {', '.join(cats)})"
                    if cats and inst.metering_category is None else "")
            if any(r.on_dn for r in ed.requirements if r.energy_type == inst.energy_type) \
                    and inst.dn is None:
                hint += "; give dn"
            out.append(Finding(**common, kind="unchecked", edition=ed.edition,
                               message=f"no {ed.edition} requirement for {inst.energy_type} "
                                       f"at {inst.measurement_level}{hint}"))
            continue
        if key > class_number(req.class_):
            note = "" if req.confirmed else " (requirement unconfirmed)"
            out.append(Finding(**common, kind="class_insufficient", edition=ed.edition,
                               required=req.class_, confirmed=req.confirmed,
                               message=f"class {actual} is worse than the {req.class_} "
                                       f"{ed.edition} requires for {inst.energy_type} at "
                                       f"{inst.measurement_level}{note}"))
    return out
