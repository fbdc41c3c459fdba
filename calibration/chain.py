"""Traceability: from an instrument at an instant up to a national standard.

The chain of a working instrument at instant *t* is: its certificate valid at *t* → each
reference certificate that was valid *when that calibration was performed* (the child
certificate's calibration date) → … → a certificate of a national standard, which ends it.
Every link is checked and every problem is reported precisely: no certificate at the
instant, a certificate expired at the relevant instant, a reference certificate issued after
the calibration that cites it (it cannot have been the reference's calibration when it was
used), a referenced certificate that does not exist or belongs to no instrument, a reference
used outside its calibrated range, a cycle, or a chain that stops at something that is not a
national standard. Each problem comes with its reason (:data:`ChainReason`), a code for
programs; the message is for people.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from calibration.records import Certificate, Instrument, expires_on, expiry_source

ChainReason = Literal[
    "instrument_unknown",  # the link's instrument is not in the registry
    "no_certificate",  # no certificate issued on or before the instant
    "expired",  # the certificate expired before the instant it mattered
    "reference_missing",  # a reference certificate is not in the registry
    "reference_calibrated_after_use",  # a reference certificate issued after its use
    "outside_calibrated_range",  # a reference used outside its calibrated range
    "cycle",  # the chain comes back to a certificate already in it
    "not_national_standard",  # the chain ends at something that is not a national standard
]


@dataclass(frozen=True)
class Link:
    """One certificate in the chain, checked at the instant it mattered."""

    instrument: str
    certificate: str | None
    at: dt.date  # the instant this link must be valid (the child's calibration date)
    expires: dt.date | None
    u: float | None  # largest standard uncertainty U/k among its points
    problems: tuple[str, ...]
    references: tuple[Link, ...] = ()
    reasons: tuple[ChainReason, ...] = ()  # one per problem, in the same order

    def __post_init__(self) -> None:
        if len(self.reasons) != len(self.problems):
            raise ValueError("a Link needs one reason per problem")

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.references)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument,
            "certificate": self.certificate,
            "at": self.at.isoformat(),
            "expires": self.expires.isoformat() if self.expires else None,
            "u": self.u,
            "ok": self.ok,
            "problems": list(self.problems),
            "reasons": list(self.reasons),
            "references": [r.as_dict() for r in self.references],
        }


@dataclass
class Records:
    """The instruments and certificates a chain is resolved from (e.g. a registry's)."""

    instruments: dict[str, Instrument] = field(default_factory=dict)
    certificates: dict[str, Certificate] = field(default_factory=dict)

    @classmethod
    def of(cls, instruments: Iterable[Instrument],
           certificates: Iterable[Certificate]) -> Records:
        return cls({i.id: i for i in instruments}, {c.id: c for c in certificates})

    def certificate_at(self, instrument: str, at: dt.date) -> Certificate | None:
        """The instrument's latest certificate issued on or before ``at`` (valid or not)."""
        issued = [c for c in self.certificates.values()
                  if c.instrument == instrument and c.calibration_date <= at]
        return max(issued, key=lambda c: c.calibration_date, default=None)


def resolve(records: Records, instrument: str, at: dt.date) -> Link:
    """The chain of ``instrument`` at ``at`` as a tree of links (see :attr:`Link.ok`)."""
    return _link(records, instrument, records.certificate_at(instrument, at), at, (), None)


def _u_max(cert: Certificate) -> float:
    return max(p.U / p.k for p in cert.points)


def _span(cert: Certificate) -> tuple[float, float]:
    """The calibrated range: from the lowest to the highest point, each end widened by that
    point's |error| + U — a calibrator calibrated at 10 V whose true output is 10.00001 V
    was used *at its 10 V point*, not outside its range."""
    lo = min(cert.points, key=lambda p: p.nominal)
    hi = max(cert.points, key=lambda p: p.nominal)
    return lo.nominal - abs(lo.error) - lo.U, hi.nominal + abs(hi.error) + hi.U


class _Problems:
    """A link's problems and their reasons, kept in step."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.reasons: list[ChainReason] = []

    def add(self, reason: ChainReason, message: str) -> None:
        self.reasons.append(reason)
        self.messages.append(message)

    def link(self, instrument: str, inst: Instrument | None, cert: Certificate | None,
             at: dt.date, references: tuple[Link, ...] = ()) -> Link:
        """The link of ``cert`` of ``instrument`` (its record ``inst``, if known)."""
        return Link(instrument, None if cert is None else cert.id, at,
                    None if cert is None else expires_on(cert, inst),
                    None if cert is None else _u_max(cert), tuple(self.messages),
                    references, tuple(self.reasons))


def _link(records: Records, instrument: str, cert: Certificate | None, at: dt.date,
          seen: tuple[str, ...], used_over: tuple[float, float] | None,
          used_by: Certificate | None = None) -> Link:
    """The link of ``cert`` (``instrument``'s), which had to hold at ``at``; ``used_by`` is
    the certificate whose calibration used it as a reference (None for the chain's start),
    ``used_over`` the range of values it was used at."""
    problems = _Problems()
    inst = records.instruments.get(instrument)
    if inst is None:
        problems.add("instrument_unknown", f"instrument {instrument!r} is not in the registry")
    if cert is None:
        problems.add("no_certificate", f"no certificate of {instrument!r} issued on or before {at}")
        return problems.link(instrument, inst, None, at)
    if cert.id in seen:
        cycle = _Problems()
        cycle.add("cycle", f"cycle: {' → '.join((*seen, cert.id))}")
        return cycle.link(instrument, inst, cert, at)
    if used_by is not None and cert.calibration_date > at:
        # a reference is named by its certificate: one issued after the calibration that
        # cites it was not the reference's calibration then, however long it is valid
        problems.add("reference_calibrated_after_use",
                     f"certificate {cert.id} was calibrated on {cert.calibration_date}, after "
                     f"its use on {at} (the calibration of {used_by.id})")
    expires = expires_on(cert, inst)
    if expires < at:
        # the owner's recall interval, when set, overrides the certificate's recommendation
        why = "" if inst is None or inst.recall_interval_days is None else \
            f" ({expiry_source(cert, inst)})"
        problems.add("expired", f"certificate {cert.id} expired on {expires}, before {at}{why}")
    if used_over is not None:
        lo, hi = _span(cert)
        if used_over[0] < lo or used_over[1] > hi:
            nominal = sorted(p.nominal for p in cert.points)
            problems.add("outside_calibrated_range",
                         f"used over {used_over[0]:g}…{used_over[1]:g}, calibrated over "
                         f"{nominal[0]:g}…{nominal[-1]:g} only (ends widened by their "
                         f"error and U: {lo:g}…{hi:g})")
    refs: list[Link] = []
    if not cert.reference_certificates and inst is not None and inst.role != "national_standard":
        problems.add("not_national_standard",
                     f"the chain ends at {instrument!r} (role {inst.role}), not at a "
                     "national standard")
    # the values the references were used at; an exact zero (a short, an empty pan) is not
    # a use of a reference's range
    used = [p.reference for p in cert.points if p.reference != 0] or [0.0]
    over = (min(used), max(used))
    for ref_id in cert.reference_certificates:
        ref = records.certificates.get(ref_id)
        if ref is None:
            missing = _Problems()
            missing.add("reference_missing", f"certificate {ref_id} is not in the registry")
            refs.append(Link("?", ref_id, cert.calibration_date, None, None,
                             tuple(missing.messages), (), tuple(missing.reasons)))
            continue
        refs.append(_link(records, ref.instrument, ref, cert.calibration_date,
                          (*seen, cert.id), over, cert))
    return problems.link(instrument, inst, cert, at, tuple(refs))
