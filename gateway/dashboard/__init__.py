"""The monitoring centre's web dashboard: live values over Server-Sent Events, drill-down
enterprise → gateway → device → channel with trends and certificates, alarms with
acknowledgement, and energy accounting in kWh and tonnes of standard coal equivalent.

``daq dashboard CONFIG`` runs :func:`serve`; ``daq demo`` starts a :class:`Dashboard` too.
See ``docs/dashboard.md``.
"""

from gateway.dashboard.options import DashboardOptions
from gateway.dashboard.server import Dashboard, serve

__all__ = ["Dashboard", "DashboardOptions", "serve"]
