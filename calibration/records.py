"""Calibration records as data: instruments, calibration certificates and verification records.

Each record is a frozen pydantic model that forbids unknown fields; a records file (YAML or
JSON) holds three lists, ``instruments:``, ``certificates:`` and ``verifications:``. Field by
field documentation: ``docs/calibration-records.md``.

Checks that need more than one record (a certificate names a known instrument, its reference
certificates exist, only a national standard's certificate may have no references) live in
:func:`cross_check`, which the file loader and the registry share.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from calibration.errors import CalibrationError, located
from calibration.models import ModelError, model_from_dict
from daq.config.yamlsrc import (
    Located,
    Path_,
    SourceError,
    SourceErrors,
    load_yaml,
    validated,
)

Kind = Literal["instrument", "certificate", "verification", "key"]
EnergyType = Literal["electricity", "water", "natural_gas", "steam", "heat", "coal", "oil",
                     "coke", "lpg", "compressed_air", "other"]
# GB 17167 levels of energy metering: the enterprise boundary (进出用能单位), a secondary
# energy-using unit (进出主要次级用能单位), a main energy-using equipment (主要用能设备)
MeasurementLevel = Literal["enterprise_boundary", "secondary_unit", "main_equipment"]
KINDS: tuple[Kind, ...] = ("instrument", "certificate", "verification", "key")
Role = Literal["working", "reference", "national_standard"]


class RecordsError(CalibrationError, ValueError):
    """Records that do not fit together (certificates that reference each other in a cycle)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Range(_Record):
    """Measuring range of an instrument, in its unit."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.min < self.max:
            raise ValueError(f"range min {self.min} must be below max {self.max}")
        return self


class Accuracy(_Record):
    """Either an accuracy class name (``class: "0.5S"``) or a maximum permissible error
    ``MPE = ±(a_pct_reading % of reading + b_pct_range % of range)``."""

    class_: str | None = Field(default=None, alias="class", min_length=1)
    a_pct_reading: float | None = Field(default=None, ge=0)
    b_pct_range: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_form(self) -> Accuracy:
        mpe = (self.a_pct_reading, self.b_pct_range)
        if self.class_ is not None:
            if mpe != (None, None):
                raise ValueError("give either class or a_pct_reading/b_pct_range, not both")
        elif None in mpe:
            raise ValueError("give class, or both a_pct_reading and b_pct_range")
        return self


class VerificationPlan(_Record):
    """How an instrument under mandatory verification (强制检定) is verified.

    ``periodic``: verified every ``period_months`` or ``period_days`` (at most one; when
    neither is given the default for the instrument's ``instrument_type`` in
    ``config/verification-periods.yaml`` applies). ``first_only``: verified once before use
    and replaced at the end of a service life of ``service_life_years`` (default from the
    same file, e.g. by DN for water meters) counted from ``installed`` (default: the date of
    its first passing verification).
    """

    mode: Literal["periodic", "first_only"]
    period_months: int | None = Field(default=None, gt=0)
    period_days: int | None = Field(default=None, gt=0)
    service_life_years: float | None = Field(default=None, gt=0)
    installed: dt.date | None = None

    @model_validator(mode="after")
    def _fits_mode(self) -> VerificationPlan:
        if self.period_months is not None and self.period_days is not None:
            raise ValueError("give at most one of period_months and period_days")
        if self.mode == "periodic" and self.service_life_years is not None:
            raise ValueError("service_life_years is for mode first_only")
        if self.mode == "first_only" and (self.period_months or self.period_days):
            raise ValueError("a first_only instrument has no period; give service_life_years")
        return self


class Instrument(_Record):
    """One measuring instrument or standard."""

    kind: ClassVar[Kind] = "instrument"

    id: str = Field(min_length=1)
    maker: str = Field(min_length=1)
    model: str = Field(min_length=1)
    serial: str = Field(min_length=1)
    quantity: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    range: Range
    resolution: float = Field(gt=0)
    accuracy: Accuracy
    owner: str = Field(min_length=1, description="enterprise id of the owner")
    location: str = Field(min_length=1)
    role: Role
    mandatory_verification: bool
    # per-reading uncertainty allowances (optional; see calibration/apply.py)
    repeatability: float | None = Field(
        default=None, ge=0, description="standard deviation of one reading, in unit")
    repeatability_dof: float | None = Field(default=None, gt=0)
    drift_per_year: float | None = Field(
        default=None, ge=0, description="drift allowance, in unit per year (rectangular)")
    # the recall interval is the owner's decision (ISO/IEC 17025 §7.8.4.3: a certificate
    # recommends one only when agreed); when unset, the certificate's recommendation holds
    recall_interval_days: int | None = Field(
        default=None, gt=0,
        description="days from each calibration to the next; overrides the certificate's "
                    "valid_until / interval_days")
    # register of mandatory verification and energy metering (all optional; see
    # docs/calibration-records.md and docs/verification.md)
    instrument_type: str | None = Field(
        default=None, min_length=1,
        description="key into config/verification-periods.yaml, e.g. water_meter")
    verification: VerificationPlan | None = None
    energy_type: EnergyType | None = None
    measurement_level: MeasurementLevel | None = None
    dn: int | None = Field(default=None, gt=0, description="nominal diameter, mm")
    metering_category: str | None = Field(
        default=None, min_length=1,
        description="category of the metering point where a GB 17167 class depends on it "
                    "(electricity user class I..V, dc, refined_oil, heavy_oil, static, dynamic)")
    energy_flow_weight: float | None = Field(
        default=None, ge=0,
        description="the meter's share of its enterprise's energy flow (any common unit, "
                    "e.g. tce/year); default 1 in the per-enterprise summary")

    @model_validator(mode="after")
    def _plan_needs_mandatory(self) -> Instrument:
        if self.verification is not None and not self.mandatory_verification:
            raise ValueError("verification is given but mandatory_verification is false")
        return self

    @property
    def record_id(self) -> str:
        return self.id


class Point(_Record):
    """One calibration point: error = indicated − reference, expanded uncertainty U = k·u."""

    nominal: float
    reference: float
    indicated: float
    error: float
    U: float = Field(gt=0)
    k: float = Field(gt=0)


class Certificate(_Record):
    """A calibration certificate of one instrument."""

    kind: ClassVar[Kind] = "certificate"

    id: str = Field(min_length=1)
    instrument: str = Field(min_length=1)
    laboratory: str = Field(min_length=1)
    accreditation: str = Field(min_length=1)
    calibration_date: dt.date
    valid_until: dt.date | None = None
    interval_days: int | None = Field(default=None, gt=0)
    reference_certificates: list[str] = Field(default_factory=list)
    points: list[Point] = Field(min_length=1)
    model: dict[str, Any]
    conformity: str
    environment: dict[str, str | int | float] = Field(default_factory=dict)
    # the scatter of the instrument's single indications seen during the calibration
    # (pooled standard deviation over the points, and its degrees of freedom): what the
    # gateway uses for a single reading's repeatability when the instrument record has none
    repeatability: float | None = Field(default=None, ge=0)
    repeatability_dof: float | None = Field(default=None, gt=0)

    @field_validator("model")
    @classmethod
    def _model_builds(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            model_from_dict(v)
        except (ModelError, ValueError) as exc:
            raise ValueError(f"not a correction model: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _validity(self) -> Certificate:
        if (self.valid_until is None) == (self.interval_days is None):
            raise ValueError("give exactly one of valid_until and interval_days")
        if self.valid_until is not None and self.valid_until <= self.calibration_date:
            raise ValueError(f"valid_until {self.valid_until} must be after "
                             f"calibration_date {self.calibration_date}")
        if len(set(self.reference_certificates)) != len(self.reference_certificates):
            raise ValueError("reference_certificates lists a certificate twice")
        if self.id in self.reference_certificates:
            raise ValueError("a certificate cannot reference itself")
        return self

    @property
    def record_id(self) -> str:
        return self.id

    @property
    def expires(self) -> dt.date:
        """The last day of validity the certificate recommends (``valid_until`` or date +
        interval); the one that applies is :func:`expires_on`'s, which the instrument's
        recall interval overrides."""
        if self.valid_until is not None:
            return self.valid_until
        assert self.interval_days is not None
        return self.calibration_date + dt.timedelta(days=self.interval_days)


def expires_on(cert: Certificate, instrument: Instrument | None) -> dt.date:
    """The last day of validity of ``cert``: its calibration date plus the instrument's
    ``recall_interval_days`` when the owner set one, else the certificate's recommendation
    (:attr:`Certificate.expires`)."""
    if instrument is not None and instrument.recall_interval_days is not None:
        return cert.calibration_date + dt.timedelta(days=instrument.recall_interval_days)
    return cert.expires


def expiry_source(cert: Certificate, instrument: Instrument | None) -> str:
    """Where :func:`expires_on`'s date comes from, for messages."""
    if instrument is not None and instrument.recall_interval_days is not None:
        return f"recall interval of {instrument.id}: {instrument.recall_interval_days} days"
    return f"certificate {cert.id}"


class VerificationRecord(_Record):
    """A (legal) verification of one instrument; ``record_number`` is its id."""

    kind: ClassVar[Kind] = "verification"

    instrument: str = Field(min_length=1)
    date: dt.date
    result: Literal["pass", "fail"]
    authority: str = Field(min_length=1)
    record_number: str = Field(min_length=1)
    next_due: dt.date

    @model_validator(mode="after")
    def _due_later(self) -> VerificationRecord:
        if self.next_due <= self.date:
            raise ValueError(f"next_due {self.next_due} must be after date {self.date}")
        return self

    @property
    def record_id(self) -> str:
        return self.record_number


class KeyRecord(_Record):
    """A public key pinned in the registry: a gateway's Ed25519 key that signs its readings
    (``subject`` = ``gateway:{enterprise}/{gateway}``). Its id is the key id (the first 16 hex
    digits of the SHA-256 of the raw public key, :func:`daq.signing.key_id`). A key is
    revoked, never deleted, so the readings it signed can still be checked."""

    kind: ClassVar[Kind] = "key"

    id: str = Field(pattern=r"^[0-9a-f]{16}$")
    subject: str = Field(pattern=r"^gateway:[A-Za-z0-9_-]{1,64}/[A-Za-z0-9_-]{1,64}$")
    algorithm: Literal["ed25519"] = "ed25519"
    public_key: str = Field(min_length=44, max_length=44, description="base64, 32 bytes")
    pinned: dt.date
    revoked: dt.date | None = None

    @property
    def record_id(self) -> str:
        return self.id


Record = Instrument | Certificate | VerificationRecord | KeyRecord
MODELS: dict[Kind, type[Record]] = {
    "instrument": Instrument,
    "certificate": Certificate,
    "verification": VerificationRecord,
    "key": KeyRecord,
}


class RecordSet(_Record):
    """The content of a records file or of a registry export."""

    instruments: list[Instrument] = Field(default_factory=list)
    certificates: list[Certificate] = Field(default_factory=list)
    verifications: list[VerificationRecord] = Field(default_factory=list)
    keys: list[KeyRecord] = Field(default_factory=list)

    def records(self) -> list[Record]:
        return [*self.instruments, *self.certificates, *self.verifications, *self.keys]


def canonical_json(data: Any) -> str:
    """The one byte-exact JSON form that hashes are computed over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def record_json(record: Record) -> str:
    """The canonical JSON of a record; optional fields left unset (``None``) are omitted, so
    adding an optional field to a record type does not change the JSON (and the hashes) of
    the records that do not use it."""
    return canonical_json(record.model_dump(mode="json", by_alias=True, exclude_none=True))


def parse_record(kind: Kind, data: Any) -> Record:
    record: Record = MODELS[kind].model_validate(data)
    return record


Lookup = Callable[[Kind, str], Record | None]

_LIST_OF: dict[Kind, str] = {
    "instrument": "instruments", "certificate": "certificates", "verification": "verifications",
    "key": "keys",
}


def cross_check(records: RecordSet, known: Lookup | None = None) -> list[tuple[Path_, str]]:
    """Problems between records, as (path in the records file, message).

    A name is resolved in ``records`` first, then through ``known`` (e.g. a registry): a
    reference must exist there, and no certificate may close a cycle of references with
    the certificates ``known`` holds (the registry's promise of no cycles).
    """
    problems: list[tuple[Path_, str]] = []
    local: dict[tuple[Kind, str], Record] = {}
    seen: dict[Kind, int] = dict.fromkeys(KINDS, 0)
    for rec in records.records():
        i = seen[rec.kind]
        seen[rec.kind] += 1
        key = (rec.kind, rec.record_id)
        if key in local:
            problems.append(((_LIST_OF[rec.kind], i),
                             f"duplicate {rec.kind} id {rec.record_id!r}"))
        local[key] = rec

    def find(kind: Kind, rid: str) -> Record | None:
        rec = local.get((kind, rid))
        if rec is None and known is not None:
            rec = known(kind, rid)
        return rec

    for i, cert in enumerate(records.certificates):
        inst = find("instrument", cert.instrument)
        if inst is None:
            problems.append((("certificates", i, "instrument"),
                             f"unknown instrument {cert.instrument!r}"))
        for j, ref in enumerate(cert.reference_certificates):
            if find("certificate", ref) is None:
                problems.append((("certificates", i, "reference_certificates", j),
                                 f"unknown certificate {ref!r}"))
        if not cert.reference_certificates and isinstance(inst, Instrument) \
                and inst.role != "national_standard":
            problems.append((("certificates", i, "reference_certificates"),
                             f"empty, but instrument {inst.id!r} is a {inst.role} instrument; "
                             "only a national standard's certificate has no references"))
    for i, ver in enumerate(records.verifications):
        if find("instrument", ver.instrument) is None:
            problems.append((("verifications", i, "instrument"),
                             f"unknown instrument {ver.instrument!r}"))
    problems += _cycles(records.certificates, find)
    return problems


def _cycles(certificates: list[Certificate],
            find: Callable[[Kind, str], Record | None]) -> list[tuple[Path_, str]]:
    """Cycles that ``certificates`` would close, with each other or with the certificates
    ``find`` knows (a registry's): a certificate of the list replaces the known one of its
    id. Each is reported at the reference of a listed certificate that closes it. A cycle
    among known certificates alone is not this list's doing (``daq trace`` reports it)."""
    local = {c.id: (i, c) for i, c in enumerate(certificates)}

    def refs(cid: str) -> list[str]:
        if cid in local:
            return local[cid][1].reference_certificates
        rec = find("certificate", cid)
        return rec.reference_certificates if isinstance(rec, Certificate) else []

    problems: list[tuple[Path_, str]] = []
    state: dict[str, bool] = {}  # False while on the path, True when done
    for start in local:  # depth first, without recursion: chains from a file may be long
        if start in state:
            continue
        path = [start]
        state[start] = False
        stack = [iter(refs(start))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                state[path.pop()] = True
            elif nxt not in state:
                path.append(nxt)
                state[nxt] = False
                stack.append(iter(refs(nxt)))
            elif not state[nxt]:
                cycle = path[path.index(nxt):]
                closing = [k for k, cid in enumerate(cycle) if cid in local]
                if not closing:
                    continue
                k = closing[0]
                ring = [*cycle[k:], *cycle[:k]]
                i, cert = local[ring[0]]
                j = cert.reference_certificates.index(ring[1 % len(ring)])
                stored = [cid for cid in ring if cid not in local]
                problems.append((
                    ("certificates", i, "reference_certificates", j),
                    f"closes a cycle: {' → '.join([*ring, ring[0]])}"
                    + (f" ({', '.join(stored)} in the registry)" if stored else "")))
    return problems


@located
def load_records(file: str | Path, known: Lookup | None = None) -> RecordSet:
    """Load and check a records file (YAML, or JSON if its name ends in ``.json``).

    Raises :class:`calibration.errors.CalibrationSourceErrors` (a
    :class:`daq.config.yamlsrc.SourceErrors`) with ``FILE:LINE: field: message`` errors.
    """
    loc = load_yaml(file, env={})
    if Path(file).suffix.lower() == ".json":
        # same structure, so the line map stays valid; but JSON's own number rules
        # (YAML 1.1 reads 1e-05 as a string)
        try:
            loc.data = json.loads(Path(file).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SourceErrors([SourceError(str(file), exc.lineno, "",
                                            f"JSON error: {exc.msg}")]) from exc
    return records_from_located(loc, known)


@located
def records_from_located(loc: Located, known: Lookup | None = None) -> RecordSet:
    if not isinstance(loc.data, dict):
        raise SourceErrors([loc.error((), "expected a mapping with instruments, certificates "
                                          "and verifications lists")])
    records = validated(RecordSet, loc)
    problems = cross_check(records, known)
    if problems:
        errors: list[SourceError] = [loc.error(p, m) for p, m in problems]
        raise SourceErrors(sorted(errors, key=lambda e: e.line))
    return records


def dependency_order(certificates: list[Certificate]) -> list[Certificate]:
    """Certificates ordered so that each comes after the certificates it references (those
    outside the list are taken as already known). Raises :class:`RecordsError` on a cycle."""
    by_id = {c.id: c for c in certificates}
    done: set[str] = set()
    out: list[Certificate] = []
    visiting: set[str] = set()

    def visit(c: Certificate) -> None:
        if c.id in done:
            return
        if c.id in visiting:
            raise RecordsError(f"certificate {c.id!r} references itself through a cycle")
        visiting.add(c.id)
        for ref in c.reference_certificates:
            if ref in by_id:
                visit(by_id[ref])
        visiting.discard(c.id)
        done.add(c.id)
        out.append(c)

    for c in certificates:
        visit(c)
    return out
