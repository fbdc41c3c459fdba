"""calibration: pure, synchronous metrology maths — correction models (offset, gain/offset,
polynomial, piecewise-linear table, Callendar–Van Dusen) and GUM uncertainty evaluation; and
calibration records (instruments, certificates, verifications) with their audited registry.

No I/O outside ``records.load_records`` and ``registry``, no asyncio: functions from numbers
and certificates to numbers with uncertainty, vectorised with numpy.

Correlated and multi-output propagation (GUM 5.2, H.2) lives in ``calibration.multivariate``,
on GTC; it is not imported here, so that ``import calibration`` does not load GTC and SciPy.

Every error it raises on purpose is a :class:`CalibrationError` (``calibration.errors``).
"""

from calibration.chain import Link, Records, resolve
from calibration.drift import DriftError, DriftReport, analyse
from calibration.errors import CalibrationError, CalibrationSourceErrors
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
    generalised_least_squares,
    model_from_dict,
)
from calibration.records import (
    Accuracy,
    Certificate,
    Instrument,
    Point,
    Range,
    RecordsError,
    RecordSet,
    VerificationRecord,
    load_records,
)
from calibration.registry import AuditEntry, Registry, RegistryError
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
from calibration.verification import (
    Register,
    VerificationError,
    VerificationStatus,
    register_status,
    status,
)

__all__ = [
    "Accuracy",
    "AuditEntry",
    "Budget",
    "CalibrationError",
    "CalibrationSourceErrors",
    "Certificate",
    "Contribution",
    "CorrectionModel",
    "Distribution",
    "DriftError",
    "DriftReport",
    "GainOffset",
    "Instrument",
    "Link",
    "ModelError",
    "Offset",
    "PiecewiseLinear",
    "Point",
    "Polynomial",
    "Range",
    "RecordSet",
    "Records",
    "RecordsError",
    "Register",
    "Registry",
    "RegistryError",
    "UncertaintyError",
    "VerificationError",
    "VerificationRecord",
    "VerificationStatus",
    "analyse",
    "combine",
    "coverage_factor",
    "cvd_resistance",
    "cvd_temperature",
    "drift_u",
    "fit_polynomial",
    "generalised_least_squares",
    "load_records",
    "model_from_dict",
    "reading_uncertainty",
    "rectangular_u",
    "register_status",
    "resolution_u",
    "resolve",
    "status",
    "triangular_u",
    "u_shaped_u",
    "welch_satterthwaite",
]
