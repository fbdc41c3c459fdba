"""The headers every response carries. Pure, no services."""

from __future__ import annotations

from gateway.dashboard.security import CSP


def test_the_policy_forbids_inline_script_plugins_base_and_framing() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in CSP
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
