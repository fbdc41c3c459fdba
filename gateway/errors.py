"""The one root of every error the gateway raises: :class:`GatewayError`.

Its kinds live with the job that raises them: :class:`gateway.storage.base.StorageError`
(with ``retryable``), :class:`gateway.acquisition.detectors.DetectorError`,
:class:`gateway.bench.runner.BenchError` and :class:`gateway.bench.journal.JournalError`. A
caller of the gateway catches ``GatewayError``, plus ``DriverError`` and ``CalibrationError``
where it calls drivers or calibration itself (see "Errors" in ``docs/architecture.md``).
"""

from __future__ import annotations

from daq.errors import DaqError

__all__ = ["GatewayError"]


class GatewayError(DaqError):
    """Base of every error the gateway raises on purpose."""
