"""What keeps the dashboard's page and its one write action safe from what it shows and from
whoever can reach its port.

* **Headers on every response** (:func:`add_security_headers`, on aiohttp's
  ``on_response_prepare`` signal rather than a middleware: the signal also runs for static
  files, for the SSE stream, which is prepared inside its handler, and for error pages): a
  Content-Security-Policy that allows script from the dashboard's own files only (no inline
  script, no ``eval``, no plug-ins, no ``<base>``, no framing), ``nosniff`` (a text answer
  that echoes a value is never run as script or read as HTML) and no referrer.
* **No open write action off loopback** (:func:`check_exposure`): acknowledging alarms
  needs the token whenever the dashboard is bound to anything but loopback, unless it is
  read-only. A dashboard that would let anyone on the network acknowledge refuses to start.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from gateway.errors import GatewayError

__all__ = ["CSP", "SECURITY_HEADERS", "DashboardExposed", "add_security_headers",
           "check_exposure", "is_loopback"]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
}


class DashboardExposed(GatewayError):
    """The dashboard would accept acknowledgements from the network without a token."""


async def add_security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` handler: :data:`SECURITY_HEADERS` on every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def is_loopback(host: str) -> bool:
    """True for an address only this computer reaches (127.0.0.0/8, ::1, ``localhost``).
    Anything else — another address, a host name, ``""`` or ``0.0.0.0`` (every
    interface) — counts as reachable from the network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, read_only: bool) -> None:
    """Raise :class:`DashboardExposed` when a dashboard bound to ``host`` would take
    acknowledgements from anyone (off loopback, no token and not read-only)."""
    if token is None and not read_only and not is_loopback(host):
        raise DashboardExposed(
            f"--host {host!r} is reachable from other computers, and anyone who can "
            "reach it could acknowledge alarms: give the token with --token-file FILE (or "
            "$DAQ_DASHBOARD_TOKEN_FILE, $DAQ_DASHBOARD_TOKEN), or serve it --read-only "
            "(no acknowledgements), or bind 127.0.0.1")
