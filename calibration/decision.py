"""Conformity decisions after ILAC-G8:09/2019: pure functions of an error, its expanded
uncertainty U and the tolerance (maximum permissible error, MPE).

* **Binary decision rule** (ILAC-G8 §4.2): accept when |error| ≤ acceptance limit
  AL = MPE − w. ``simple`` acceptance: w = 0 (AL = MPE; the risk of false acceptance can
  reach 50 % at the limit). ``guarded`` acceptance: w = U (≤ 2.5 % false acceptance for a
  normal distribution, k ≈ 2).
* **Non-binary statement** (ILAC-G8 §4.2.3, figure 4): *pass* when |e| + U ≤ MPE,
  *conditional pass* when |e| ≤ MPE < |e| + U, *conditional fail* when |e| − U < MPE < |e|,
  *fail* when |e| − U ≥ MPE.
* **Test uncertainty ratio**: TUR = tolerance span / (2·U) = (2·MPE) / (2·U) = MPE / U.

Comparisons allow a relative slack of 1e-12 of the MPE so that an exact boundary written in
decimal (|e| + U = MPE) is not lost to binary round-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from calibration.errors import CalibrationError

__all__ = ["Decision", "DecisionError", "Rule", "Zone", "accept", "decide", "tur", "zone"]

_SLACK = 1e-12


class DecisionError(CalibrationError, ValueError):
    """Inputs a conformity decision cannot be made from."""


class Rule(StrEnum):
    SIMPLE = "simple"  # w = 0
    GUARDED = "guarded"  # w = U


class Zone(StrEnum):
    PASS = "pass"
    CONDITIONAL_PASS = "conditional pass"
    CONDITIONAL_FAIL = "conditional fail"
    FAIL = "fail"


def _check(error: float, u: float, mpe: float) -> None:
    if not math.isfinite(error):
        raise DecisionError(f"error must be finite, got {error}")
    if not (u >= 0 and math.isfinite(u)):
        raise DecisionError(f"expanded uncertainty must be finite and >= 0, got {u}")
    if not (mpe > 0 and math.isfinite(mpe)):
        raise DecisionError(f"MPE must be finite and > 0, got {mpe}")


def guard_band(rule: Rule, u: float) -> float:
    """w of the rule: 0 for simple acceptance, U for guarded acceptance."""
    return 0.0 if Rule(rule) is Rule.SIMPLE else u


def accept(error: float, u: float, mpe: float, rule: Rule = Rule.SIMPLE) -> bool:
    """The binary decision: |error| ≤ MPE − w."""
    _check(error, u, mpe)
    return abs(error) <= mpe - guard_band(rule, u) + _SLACK * mpe


def zone(error: float, u: float, mpe: float) -> Zone:
    """The non-binary statement of ILAC-G8 for ``error`` ± ``u`` against ±``mpe``."""
    _check(error, u, mpe)
    e = abs(error)
    eps = _SLACK * mpe
    if e + u <= mpe + eps:
        return Zone.PASS
    if e <= mpe + eps:
        return Zone.CONDITIONAL_PASS
    if e - u < mpe - eps:
        return Zone.CONDITIONAL_FAIL
    return Zone.FAIL


def tur(u: float, mpe: float) -> float:
    """Test uncertainty ratio: (2·MPE) / (2·U); ∞ for U = 0."""
    if not (mpe > 0 and math.isfinite(mpe)):
        raise DecisionError(f"MPE must be finite and > 0, got {mpe}")
    return math.inf if u == 0 else mpe / u


@dataclass(frozen=True)
class Decision:
    """Both statements for one point."""

    rule: Rule
    mpe: float
    acceptance_limit: float  # MPE − w
    accepted: bool
    zone: Zone
    tur: float

    @property
    def verdict(self) -> str:
        return "pass" if self.accepted else "fail"


def decide(error: float, u: float, mpe: float, rule: Rule = Rule.SIMPLE) -> Decision:
    rule = Rule(rule)
    return Decision(rule, mpe, mpe - guard_band(rule, u), accept(error, u, mpe, rule),
                    zone(error, u, mpe), tur(u, mpe))
