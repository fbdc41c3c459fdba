"""What keeps the dashboard's page safe from what it shows.

* **Headers on every response** (:func:`add_security_headers`, on aiohttp's
  ``on_response_prepare`` signal rather than a middleware: the signal also runs for static
  files, for the SSE stream, which is prepared inside its handler, and for error pages): a
  Content-Security-Policy that allows script from the dashboard's own files only (no inline
  script, no ``eval``, no plug-ins, no ``<base>``, no framing), ``nosniff`` (a text answer
  that echoes a value is never run as script or read as HTML) and no referrer.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["CSP", "SECURITY_HEADERS", "add_security_headers"]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
}


async def add_security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` handler: :data:`SECURITY_HEADERS` on every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
