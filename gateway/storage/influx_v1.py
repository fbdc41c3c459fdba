"""InfluxDB 1.x HTTP API: ``POST /write`` with line protocol, ``/query`` for InfluxQL.

Debian's InfluxDB 1.6.7 has no ``/api/v2/write`` (404), hence this backend; it also works
against VictoriaMetrics' ``/write``. One keep-alive connection (urllib3, already a dependency
of influxdb-client) is reused for every request; no automatic retries (the ingest decides).

Credentials go into a basic ``Authorization`` header and nowhere else: not in URLs, not in
log messages, not in ``repr``.
"""

from __future__ import annotations

import gzip as gziplib
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import urllib3
from urllib3.exceptions import HTTPError, LocationParseError, SSLError

from daq.model import Reading
from gateway.storage.base import StorageError, retryable_status
from gateway.storage.lineproto import to_body

__all__ = ["InfluxV1Storage", "quote_ident"]

log = logging.getLogger(__name__)


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxV1Storage:
    """Writes readings to an InfluxDB 1.x database (``/write?db=…&rp=…&precision=ns``).

    ``create_database``: send ``CREATE DATABASE`` (a no-op when it exists) before the first
    write — at once if the server answers, else before the first write that reaches it. A
    refusal (a non-admin user) is logged once and not retried: the database may well exist.
    Thread-safe (urllib3's pool); meant for one writer thread plus occasional queries.
    """

    def __init__(
        self,
        url: str,
        *,
        database: str,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        create_database: bool = True,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
        gzip: bool = False,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"InfluxDB URL must be http(s)://host[:port][/path], not {url!r}")
        if parts.username or parts.password:
            raise ValueError("give InfluxDB credentials as username/password, not in the URL")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.database = database
        self.retention_policy = retention_policy
        self.username = username
        self.gzip = gzip
        self._prefix = parts.path.rstrip("/")
        self._headers: dict[str, str] = {}
        if username is not None or password is not None:
            self._headers.update(
                urllib3.util.make_headers(basic_auth=f"{username or ''}:{password or ''}")
            )
        timeout = urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s)
        pool_kw: dict[str, Any] = {"maxsize": 2, "block": False, "retries": False,
                                   "timeout": timeout}
        if parts.scheme == "https":
            pool_kw["cert_reqs"] = "CERT_REQUIRED"
            if ca_file:
                pool_kw["ca_certs"] = ca_file
        self._pool = urllib3.connection_from_url(self.url, **pool_kw)
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        self._write_path = f"{self._prefix}/write?{urlencode(params)}"
        self._need_create = create_database
        self._closed = False
        if create_database:
            try:
                self._create_database()
            except StorageError as exc:
                if not exc.retryable:
                    raise
                log.warning("InfluxDB at %s not reachable yet (%s); will create database %r "
                            "before the first write", self.url, exc, database)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(url={self.url!r}, database={self.database!r}, "
                f"username={self.username!r})")

    # -- requests ---------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        if self._closed:
            raise StorageError(f"{self!r} is closed", retryable=False)
        hdrs = dict(self._headers)
        if headers:
            hdrs.update(headers)
        try:
            return self._pool.urlopen(method, path, body=body, headers=hdrs, redirect=False,
                                      preload_content=True, assert_same_host=False)
        except (SSLError, LocationParseError) as exc:
            raise StorageError(f"InfluxDB {self.url}: {exc}", retryable=False) from exc
        except HTTPError as exc:  # connection refused/reset, timeouts, protocol errors
            raise StorageError(f"InfluxDB {self.url}: {type(exc).__name__}: {exc}",
                               retryable=True) from exc
        except OSError as exc:
            raise StorageError(f"InfluxDB {self.url}: {exc}", retryable=True) from exc

    @staticmethod
    def _error_text(resp: urllib3.BaseHTTPResponse) -> str:
        data = resp.data or b""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data[:300].decode("utf-8", "replace").strip()
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])[:300]
        return data[:300].decode("utf-8", "replace").strip()

    def _check(self, resp: urllib3.BaseHTTPResponse, what: str) -> None:
        if 200 <= resp.status < 300:
            return
        raise StorageError(
            f"InfluxDB {self.url} {what}: HTTP {resp.status}: {self._error_text(resp)}",
            retryable=retryable_status(resp.status), status=resp.status,
        )

    def _create_database(self) -> None:
        try:
            self.query(f"CREATE DATABASE {quote_ident(self.database)}")
        except StorageError as exc:
            if exc.retryable:
                raise
            log.warning("could not create InfluxDB database %r at %s (%s); "
                        "writing to it anyway", self.database, self.url, exc)
        self._need_create = False

    # -- public API -------------------------------------------------------------------

    def write(self, readings: Sequence[Reading]) -> None:
        """Write readings in one request; raise :class:`StorageError` on any failure."""
        if not readings:
            return
        if self._need_create:
            self._create_database()
        self.write_body(to_body(readings))

    def write_body(self, body: bytes) -> None:
        """Write ready-made line protocol (precision ns)."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            body = gziplib.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        resp = self._request("POST", self._write_path, body, headers)
        self._check(resp, f"write to {self.database!r}")

    def query(self, influxql: str, *, database: str | None = None) -> dict[str, Any]:
        """Run InfluxQL (``POST /query``, ``epoch=ns``) and return the decoded JSON.

        Raises :class:`StorageError` for an HTTP error or an ``error`` in any statement's
        result. Timestamps in the result are integers (ns).
        """
        params = {"q": influxql, "epoch": "ns"}
        db = self.database if database is None else database
        if db:
            params["db"] = db
        if self.retention_policy:
            params["rp"] = self.retention_policy
        resp = self._request(
            "POST", f"{self._prefix}/query", urlencode(params).encode("ascii"),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        self._check(resp, "query")
        doc = orjson.loads(resp.data)
        if not isinstance(doc, dict):
            raise StorageError(f"InfluxDB {self.url} query: unexpected answer", retryable=False)
        errors = [r["error"] for r in doc.get("results", []) if "error" in r]
        if "error" in doc:
            errors.insert(0, doc["error"])
        if errors:
            raise StorageError(f"InfluxDB {self.url} query: {'; '.join(map(str, errors))}",
                               retryable=False, status=resp.status)
        return doc

    def ping(self) -> bool:
        """Whether the server answers ``/ping``."""
        try:
            resp = self._request("GET", f"{self._prefix}/ping")
        except StorageError:
            return False
        return resp.status == 204

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()

    def __enter__(self) -> InfluxV1Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
