"""Who may acknowledge: a dashboard bound off loopback needs a token or read-only; and the
headers every response carries. Pure, no services."""

from __future__ import annotations

from typing import Any, cast

import pytest

from gateway.dashboard import Dashboard, DashboardOptions
from gateway.dashboard.security import CSP, DashboardExposed, check_exposure, is_loopback
from gateway.errors import GatewayError


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("192.168.1.20", False), ("control-room.example", False),
])
def test_loopback_is_only_this_computer(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_off_loopback_needs_a_token_or_read_only() -> None:
    check_exposure("127.0.0.1", None, False)  # today's default: unchanged
    check_exposure("0.0.0.0", "s3cret", False)
    check_exposure("0.0.0.0", None, True)
    with pytest.raises(DashboardExposed, match=r"--token-file.*--read-only"):
        check_exposure("0.0.0.0", None, False)
    assert issubclass(DashboardExposed, GatewayError)


def test_the_dashboard_itself_refuses_before_opening_anything() -> None:
    # not only the command line: the demo or any other caller is held to the same rule
    with pytest.raises(DashboardExposed):
        Dashboard(cast(Any, None), DashboardOptions(host="0.0.0.0"))


def test_the_policy_forbids_inline_script_plugins_base_and_framing() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in CSP
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
