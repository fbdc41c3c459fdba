"""calibration: pure, synchronous metrology maths — correction models (offset, gain/offset,
polynomial, piecewise-linear table, Callendar–Van Dusen) and GUM uncertainty evaluation.

No I/O, no asyncio: functions from numbers and certificates to numbers with uncertainty,
vectorised with numpy.
"""

from calibration.models import (
    CorrectionModel,
    GainOffset,
    ModelError,
    Offset,
    PiecewiseLinear,
    Polynomial,
    cvd_resistance,
    cvd_temperature,
    fit_polynomial,
    model_from_dict,
)
from calibration.uncertainty import (
    Budget,
    Contribution,
    Distribution,
    UncertaintyError,
    combine,
    coverage_factor,
    drift_u,
    reading_uncertainty,
    rectangular_u,
    resolution_u,
    triangular_u,
    u_shaped_u,
    welch_satterthwaite,
)

__all__ = [
    "Budget",
    "Contribution",
    "CorrectionModel",
    "Distribution",
    "GainOffset",
    "ModelError",
    "Offset",
    "PiecewiseLinear",
    "Polynomial",
    "UncertaintyError",
    "combine",
    "coverage_factor",
    "cvd_resistance",
    "cvd_temperature",
    "drift_u",
    "fit_polynomial",
    "model_from_dict",
    "reading_uncertainty",
    "rectangular_u",
    "resolution_u",
    "triangular_u",
    "u_shaped_u",
    "welch_satterthwaite",
]
