"""The root of every error daq raises on purpose (after h11: one type a caller must handle).

Each layer has one root below :class:`DaqError`, so a caller catches exactly what the layer it
calls can raise:

* the core (``daq``): :class:`daq.config.yamlsrc.SourceErrors` (a config, profile or data file
  with ``FILE:LINE: field: message`` errors), :class:`daq.payload.PayloadError` and
  :class:`daq.alarms.AlarmPayloadError` (a message that is not a daq payload);
* ``drivers``: :class:`drivers.errors.DriverError`, with a ``reason``;
* ``calibration``: :class:`calibration.errors.CalibrationError`;
* ``gateway``: :class:`gateway.errors.GatewayError`.

``ValueError`` or ``TypeError`` for an argument no caller should pass (a bug) is not part of the
contract; see "Errors" in ``docs/architecture.md``.
"""

from __future__ import annotations

__all__ = ["DaqError"]


class DaqError(Exception):
    """Base of every error daq, drivers, calibration and gateway raise on purpose."""
