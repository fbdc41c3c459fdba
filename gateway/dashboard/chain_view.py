"""A certificate's traceability chain, from the calibration registry (``--registry`` or
``$DAQ_REGISTRY``): ``GET /api/chain/CERT`` (JSON) and ``GET /chain/CERT`` (a small HTML page).

The chain is the certificate's instrument's chain today in the dashboard's time zone,
resolved by :func:`calibration.chain.resolve`; the registry is opened read-only per request,
and a registry whose audit log fails its check shows no chain (HTTP 409).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web


class ChainView:
    def __init__(self, registry: str | None, tz: str) -> None:
        self.registry = registry
        self.tz = tz

    def chain(self, cert_id: str) -> dict[str, Any]:
        """The chain of ``cert_id`` as JSON-ready data; HTTP 404 when there is none."""
        from calibration.chain import Records, resolve
        from calibration.records import Certificate, Instrument
        from calibration.registry import Registry, RegistryError

        if self.registry is None:
            raise web.HTTPNotFound(text="no calibration registry configured "
                                        "(daq dashboard --registry FILE or DAQ_REGISTRY)")
        try:
            with Registry(self.registry, create=False, read_only=True) as reg:
                problems = reg.verify()  # records changed behind its back are not shown
                if problems:
                    raise web.HTTPConflict(
                        text=f"the registry's audit log fails its check ({problems[0]}): no "
                             "traceability chain from a registry that is not trusted")
                cert = reg.get("certificate", cert_id)
                instruments = [r for r in reg.list("instrument") if isinstance(r, Instrument)]
                certs = [r for r in reg.list("certificate") if isinstance(r, Certificate)]
        except RegistryError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        if not isinstance(cert, Certificate):
            raise web.HTTPNotFound(text=f"no certificate {cert_id!r} in the registry")
        today = dt.datetime.now(ZoneInfo(self.tz)).date()
        chain = resolve(Records.of(instruments, certs), cert.instrument, today)
        return {"certificate": cert_id, "instrument": cert.instrument, "at": today.isoformat(),
                "ok": chain.ok, "chain": chain.as_dict()}

    async def api_chain(self, request: web.Request) -> web.Response:
        doc = await asyncio.to_thread(self.chain, request.match_info["cert"])
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def html_chain(self, request: web.Request) -> web.Response:
        doc = await asyncio.to_thread(self.chain, request.match_info["cert"])
        return web.Response(text=render_chain(doc), content_type="text/html")


def _t(value: object) -> str:
    """Any value as HTML text or a double-quoted attribute value: escaped, quotes included."""
    return html.escape("" if value is None else str(value), quote=True)


def _path(value: object) -> str:
    """A value as one URL path segment: every reserved character percent-encoded (a ``/``,
    ``?``, ``#`` or ``:`` cannot change where the link goes), then escaped for the attribute."""
    return _t(quote(str(value), safe=""))


def render_chain(doc: dict[str, Any]) -> str:
    """The HTML page of :meth:`ChainView.chain`'s result: every link, nested, each marked
    ✔ or ✘ with its problems. Every value is escaped (:func:`_t`), the certificate id in the
    JSON link URL-encoded too (:func:`_path`); no inline script or style (the dashboard's
    Content-Security-Policy forbids them)."""

    def link(d: dict[str, Any]) -> str:
        mark = "✔" if not d["problems"] else "✘"
        probs = "".join(f'<li class="bad">{_t(p)}</li>' for p in d["problems"])
        refs = "".join(link(r) for r in d["references"])
        u = f", u ≤ {d['u']:.3g}" if d.get("u") is not None else ""
        expires = f", expires {d['expires']}" if d["expires"] else ""
        valid = f"valid at {d['at']}{expires}{u}"
        return (f"<li><b>{mark} {_t(d['instrument'])}</b> — "
                f"{_t(d['certificate'] or 'no certificate')} ({_t(valid)})"
                f"<ul>{probs}{refs}</ul></li>")

    cert = doc["certificate"]
    return ('<!doctype html><meta charset="utf-8"><meta name="viewport" '
            'content="width=device-width,initial-scale=1"><link rel="stylesheet" '
            f'href="/static/app.css"><title>Chain of {_t(cert)}</title>'
            '<main class="page"><p><a href="/">← dashboard</a></p>'
            f"<h1>Traceability of {_t(doc['instrument'])}</h1>"
            f"<p>certificate <span data-cert>{_t(cert)}</span>, at {_t(doc['at'])}: "
            f'<b class="{"ok" if doc["ok"] else "bad"}">'
            f"{'chain intact' if doc['ok'] else 'chain broken'}</b> "
            f'(<a href="/api/chain/{_path(cert)}" data-json>JSON</a>)</p>'
            f'<ul class="chain">{link(doc["chain"])}</ul></main>')
