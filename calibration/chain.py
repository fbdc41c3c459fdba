"""Traceability: from an instrument at an instant up to a national standard.

The chain of a working instrument at instant *t* is: its certificate valid at *t* → each
reference certificate that was valid *when that calibration was performed* (the child
certificate's calibration date) → … → a certificate of a national standard, which ends it.
Every link is checked and every problem is reported precisely: no certificate at the
instant, a certificate expired at the relevant instant, a referenced certificate that does
not exist or belongs to no instrument, a reference used outside its calibrated range, a
cycle, or a chain that stops at something that is not a national standard.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from calibration.records import Certificate, Instrument


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


def _link(records: Records, instrument: str, cert: Certificate | None, at: dt.date,
          seen: tuple[str, ...], used_over: tuple[float, float] | None) -> Link:
    problems: list[str] = []
    inst = records.instruments.get(instrument)
    if inst is None:
        problems.append(f"instrument {instrument!r} is not in the registry")
    if cert is None:
        problems.append(f"no certificate of {instrument!r} issued on or before {at}")
        return Link(instrument, None, at, None, None, tuple(problems))
    if cert.id in seen:
        return Link(instrument, cert.id, at, cert.expires, _u_max(cert),
                    (f"cycle: {' → '.join((*seen, cert.id))}",))
    if cert.expires < at:
        problems.append(f"certificate {cert.id} expired on {cert.expires}, before {at}")
    if used_over is not None:
        lo, hi = _span(cert)
        if used_over[0] < lo or used_over[1] > hi:
            nominal = sorted(p.nominal for p in cert.points)
            problems.append(f"used over {used_over[0]:g}…{used_over[1]:g}, calibrated over "
                            f"{nominal[0]:g}…{nominal[-1]:g} only (ends widened by their "
                            f"error and U: {lo:g}…{hi:g})")
    refs: list[Link] = []
    if not cert.reference_certificates and inst is not None and inst.role != "national_standard":
        problems.append(f"the chain ends at {instrument!r} (role {inst.role}), not at a "
                        "national standard")
    # the values the references were used at; an exact zero (a short, an empty pan) is not
    # a use of a reference's range
    used = [p.reference for p in cert.points if p.reference != 0] or [0.0]
    over = (min(used), max(used))
    for ref_id in cert.reference_certificates:
        ref = records.certificates.get(ref_id)
        if ref is None:
            refs.append(Link("?", ref_id, cert.calibration_date, None, None,
                             (f"certificate {ref_id} is not in the registry",)))
            continue
        refs.append(_link(records, ref.instrument, ref, cert.calibration_date,
                          (*seen, cert.id), over))
    return Link(instrument, cert.id, at, cert.expires, _u_max(cert), tuple(problems),
                tuple(refs))
