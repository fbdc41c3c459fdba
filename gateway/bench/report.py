"""The calibration report a customer reads: one self-contained HTML file (inline CSS, the plot
as a PNG data URI, no network; prints cleanly to A4 / PDF from any browser).

Sections (each an element with a fixed ``id``): ``identification`` (the DUT), ``reference``
(the standard and its traceability chain), ``method``, ``conditions``, ``results``,
``budget`` (per point: contribution, value, distribution, sensitivity, u, contribution to u),
``decision`` (rule and statement), ``model`` (the fitted correction), ``plot`` (error against
nominal with U bars and the MPE envelope) and ``certificate`` (id and SHA-256).

The certificate's identity travels in ``<meta name="daq-certificate">`` and
``<meta name="daq-certificate-sha256">`` (SHA-256 of its canonical JSON,
``calibration.records.record_json``), and its canonical JSON in
``<script type="application/json" id="certificate-json">``: ``daq cert verify REPORT``
checks all three against the registry (:func:`verify_report`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.chain import Link
from calibration.decision import Rule
from calibration.procedure import Procedure
from calibration.records import Certificate, Instrument, record_json
from calibration.registry import Registry, sha256_text
from calibration.session import SessionResult, polynomial_of

__all__ = ["ReportInputs", "VerifyResult", "plot_png", "render_report", "verify_report"]

_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;font-size:10.5pt;margin:2em auto;max-width:62em;
color:#111}
h1{font-size:16pt;margin-bottom:.2em}h2{font-size:12.5pt;border-bottom:1px solid #999;
margin-top:1.4em}h3{font-size:11pt}
table{border-collapse:collapse;margin:.5em 0;width:100%}
th,td{border:1px solid #bbb;padding:2px 6px;text-align:right;font-variant-numeric:tabular-nums}
th{background:#eee}td.l,th.l{text-align:left}
table.num{font-size:8pt}table.num td{white-space:nowrap}
.pass{color:#075e07}.fail{color:#a00}.muted{color:#555}
img{max-width:100%}
code{font-size:9pt;word-break:break-all}
@media print{body{margin:0;max-width:none}section{break-inside:avoid}
 section.budget-point{break-inside:avoid}h2{break-after:avoid}}
@page{size:A4;margin:15mm}
"""


@dataclass(frozen=True)
class ReportInputs:
    proc: Procedure
    session_id: str
    certificate: Certificate
    result: SessionResult
    dut: Instrument | None
    reference: Instrument
    reference_certificate: Certificate
    chain: Link
    identities: dict[str, str]  # role → "*IDN?" identity line
    started_at: str
    finished_at: str


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _g(x: float | None, digits: int = 6) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits}g}"


def plot_png(proc: Procedure, result: SessionResult) -> bytes:
    """Error of the DUT against nominal with ±U bars and the ±MPE envelope (Agg, PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = sorted(result.points, key=lambda p: p.nominal)
    x = np.array([p.nominal for p in pts])
    e = np.array([p.error for p in pts])
    u = np.array([p.U for p in pts])
    fig = Figure(figsize=(7.0, 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    mpe = [p.mpe for p in pts]
    if all(m is not None for m in mpe):
        m = np.array(mpe, dtype=float)
        ax.plot(x, m, color="tab:red", linestyle="--", linewidth=1.0, label="±MPE")
        ax.plot(x, -m, color="tab:red", linestyle="--", linewidth=1.0)
        ax.fill_between(x, -m, m, color="tab:red", alpha=0.06)
    ax.errorbar(x, e, yerr=u, fmt="o", color="tab:blue", capsize=4, markersize=4,
                label="error ± U (≈95 %)")
    ax.set_xlabel(f"nominal / {proc.unit}")
    ax.set_ylabel(f"error / {proc.unit}")
    ax.set_title(f"{proc.title}: error of the DUT")
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _kv(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th class='l'>{_e(k)}</th><td class='l'>{_e(v)}</td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


def _chain_html(link: Link) -> str:
    mark = "✔" if not link.problems else "✘"
    problems = "".join(f"<br><span class='fail'>{_e(p)}</span>" for p in link.problems)
    item = (f"{mark} {_e(link.instrument)} — certificate {_e(link.certificate or 'none')} "
            f"(valid at {_e(link.at)}, expires {_e(link.expires or '—')}, "
            f"u ≤ {_e(_g(link.u, 3))}){problems}")
    refs = "".join(_chain_html(r) for r in link.references)
    return f"<li>{item}{f'<ul>{refs}</ul>' if refs else ''}</li>"


def _instrument_rows(inst: Instrument | None, ident: str | None, inst_id: str
                     ) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [("registry id", inst_id)]
    if inst is not None:
        rows += [("maker, model", f"{inst.maker} {inst.model}"), ("serial number", inst.serial),
                 ("range", f"{inst.range.min:g} … {inst.range.max:g} {inst.unit}"),
                 ("resolution", f"{inst.resolution:g} {inst.unit}"),
                 ("owner, location", f"{inst.owner}, {inst.location}")]
    if ident:
        rows.append(("identification (*IDN?)", ident))
    return rows


def render_report(r: ReportInputs) -> str:
    """The report as one HTML document."""
    proc, cert, res = r.proc, r.certificate, r.result
    u = proc.unit
    text = record_json(cert)
    sha = sha256_text(text)
    png = base64.b64encode(plot_png(proc, res)).decode("ascii")
    rule = Rule(proc.acceptance.rule)
    out: list[str] = []
    w = out.append
    w("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>")
    w(f"<title>Calibration report {_e(cert.id)}</title>")
    w(f"<meta name='daq-certificate' content='{_e(cert.id)}'>")
    w(f"<meta name='daq-certificate-sha256' content='{sha}'>")
    w(f"<style>{_CSS}</style></head><body>")
    w(f"<h1>Calibration report — certificate {_e(cert.id)}</h1>")
    w(f"<p class='muted'>{_e(cert.laboratory)} · {_e(cert.accreditation)} · session "
      f"{_e(r.session_id)} · {_e(r.started_at)} – {_e(r.finished_at)}</p>")

    w("<section id='identification'><h2>1. Device under test</h2>")
    w(_kv(_instrument_rows(r.dut, r.identities.get("DUT"), cert.instrument)))
    w("</section>")

    w("<section id='reference'><h2>2. Reference standard and traceability</h2>")
    w(_kv([*_instrument_rows(r.reference, r.identities.get("reference"), r.reference.id),
           ("certificate", f"{r.reference_certificate.id} ({r.reference_certificate.laboratory}"
                           f", calibrated {r.reference_certificate.calibration_date}, expires "
                           f"{r.reference_certificate.expires})")]))
    w("<h3>Traceability chain</h3><ul class='chain'>" + _chain_html(r.chain) + "</ul></section>")

    w("<section id='method'><h2>3. Method</h2>")
    w(f"<p>{_e(proc.method)}</p>")
    w(_kv([("procedure", f"{proc.id} — {proc.title}"), ("quantity", f"{proc.quantity} ({u})"),
           ("setpoints", ", ".join(f"{s.nominal:g}" for s in proc.setpoints) + f" {u}"),
           ("readings per point", ", ".join(str(proc.readings(i))
                                            for i in range(len(proc.setpoints)))),
           ("correction model", proc.fit.kind),
           ("uncertainty", "GUM (JCGM 100:2008); U = k·u_c with k from Student's t at the "
                           "Welch–Satterthwaite ν_eff (truncated down) for a two-sided 95 % "
                           "coverage probability")]))
    w("</section>")

    w("<section id='conditions'><h2>4. Conditions</h2>")
    w(_kv([(k, v) for k, v in cert.environment.items()]
          + [("calibration date", cert.calibration_date), ("valid until", cert.expires)]))
    w("</section>")

    w("<section id='results'><h2>5. Results</h2><table class='num'><tr>")
    heads = [f"nominal / {u}", f"reference / {u}", f"indicated (mean) / {u}", f"s / {u}", "n",
             f"u<sub>A</sub> / {u}", f"u<sub>c</sub> / {u}", "ν<sub>eff</sub>", "k",
             f"U / {u}", f"error / {u}", f"MPE / {u}", "TUR", "as found"]
    w("".join(f"<th>{h}</th>" for h in heads) + "</tr>")
    for p in res.points:
        d = p.decision
        cls = "" if d is None else ("pass" if d.accepted else "fail")
        verdict = "—" if d is None else (
            f"{'accepted' if d.accepted else 'rejected'}: {d.zone}")
        cells = [_g(p.nominal), _g(p.reference, 9), _g(p.dut_mean, 9), _g(p.dut_std, 3),
                 str(p.n), _g(p.u_a, 3), _g(p.u_c, 3), _g(p.dof_eff, 3), f"{p.k:.3f}",
                 _g(p.U, 3), _g(p.error, 4), _g(p.mpe, 3), "—" if d is None else _g(d.tur, 3)]
        w("<tr>" + "".join(f"<td>{c}</td>" for c in cells)
          + f"<td class='{cls}'>{_e(verdict)}</td></tr>")
    w("</table></section>")

    w("<section id='budget'><h2>6. Uncertainty budgets</h2>")
    for p in res.points:
        w(f"<section class='budget-point'><h3>{_g(p.nominal)} {_e(u)}</h3>"
          "<table class='num'><tr>"
          "<th class='l'>contribution</th><th>value</th><th class='l'>distribution</th>"
          "<th>sensitivity c<sub>i</sub></th><th>u(x<sub>i</sub>)</th>"
          "<th>|c<sub>i</sub>|·u(x<sub>i</sub>)</th><th>ν<sub>i</sub></th><th>share</th></tr>")
        for row in p.budget_rows():
            dist = row["distribution"] + (f", k = {row['k']:g}" if row["distribution"] ==
                                          "normal" and row["k"] != 1 else "")
            common = " <small>(common to every point)</small>" if row["shared"] else ""
            w(f"<tr><td class='l'>{_e(row['name'])}{common}</td><td>{_g(row['value'], 4)}</td>"
              f"<td class='l'>{_e(dist)}</td><td>{row['sensitivity']:g}</td>"
              f"<td>{_g(row['u'], 3)}</td><td>{_g(row['u_y'], 3)}</td>"
              f"<td>{_g(row['dof'], 3) if row['dof'] is not None else '∞'}</td>"
              f"<td>{100 * row['share']:.1f} %</td></tr>")
        w(f"<tr><th class='l'>combined</th><td></td><td></td><td></td><td></td>"
          f"<th>{_g(p.u_c, 3)}</th><th>{_g(p.dof_eff, 3)}</th><th>U = {_g(p.U, 3)} "
          f"(k = {p.k:.3f})</th></tr></table></section>")
    w("</section>")

    w("<section id='decision'><h2>7. Decision rule and statement of conformity</h2>")
    if rule is Rule.SIMPLE:
        w("<p>ILAC-G8:09/2019 <b>simple acceptance</b> (guard band w = 0): a point is "
          "accepted when |error| ≤ MPE.</p>")
    else:
        w("<p>ILAC-G8:09/2019 <b>guarded acceptance</b> (guard band w = U): a point is "
          "accepted when |error| ≤ MPE − U (probability of false acceptance ≤ 2.5 %).</p>")
    w("<p>Non-binary statements: <i>pass</i> |e| + U ≤ MPE; <i>conditional pass</i> |e| ≤ MPE "
      "&lt; |e| + U; <i>conditional fail</i> |e| − U &lt; MPE &lt; |e|; <i>fail</i> "
      "|e| − U ≥ MPE.</p>")
    cls = {True: "pass", False: "fail", None: ""}[res.conforms]
    w(f"<p class='{cls}'><b>{_e(cert.conformity)}</b></p></section>")

    w("<section id='model'><h2>8. Correction model</h2>")
    poly = polynomial_of(res.model)
    if poly is not None:
        terms = " + ".join(f"{c:.6g}" if i == 0 else f"({c:.6g})·x" if i == 1
                           else f"({c:.6g})·x^{i}" for i, c in enumerate(poly.coefficients))
        w(f"<p>δ(x) = {_e(terms)} &nbsp; (corrected value = x + δ(x), x the indication; valid "
          f"for {poly.x_min:.6g} ≤ x ≤ {poly.x_max:.6g} {_e(u)})</p>")
        w("<table><tr><th class='l'>covariance</th>"
          + "".join(f"<th>c{i}</th>" for i in range(len(poly.coefficients))) + "</tr>")
        for i, cov_row in enumerate(poly.covariance):
            w(f"<tr><th class='l'>c{i}</th>" + "".join(f"<td>{v:.3e}</td>" for v in cov_row)
              + "</tr>")
        w("</table>")
    if res.cvd is not None:
        c = res.cvd
        w(f"<p>Callendar–Van Dusen fit of the DUT: R0 = {c.r0:.6f} Ω, A = {c.a:.6e} /°C, "
          f"B = {c.b:.6e} /°C² (covariance of R0, A, B: "
          f"{_e(json.dumps(c.as_dict()['covariance']))}). The certificate's correction "
          "turns a temperature computed with the nominal coefficients into the one these "
          "coefficients give (model <code>cvd</code>).</p>")
    w("</section>")

    w("<section id='plot'><h2>9. Error against nominal</h2>")
    w(f"<img id='error-plot' alt='error of the DUT against nominal with U bars and the MPE "
      f"envelope' src='data:image/png;base64,{png}'></section>")

    w("<section id='certificate'><h2>10. Certificate</h2>")
    w(_kv([("certificate", cert.id), ("issued into the registry", "audit-logged"),
           ("SHA-256 of its canonical JSON", sha)]))
    w("<p class='muted'>Check this report against the registry: <code>daq cert verify "
      "REPORT.html</code>.</p>")
    w(f"<script type='application/json' id='certificate-json'>{_e(text)}</script>")
    w("</section></body></html>")
    return "\n".join(out)


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    certificate: str | None
    sha256: str | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


_META = re.compile(r"<meta name='(daq-certificate(?:-sha256)?)' content='([^']*)'>")
_JSON = re.compile(r"<script type='application/json' id='certificate-json'>(.*?)</script>",
                   re.S)


def read_report(text: str) -> tuple[str | None, str | None, str | None]:
    """(certificate id, stated SHA-256, embedded canonical JSON) of a report."""
    meta: dict[str, Any] = {k: html.unescape(v) for k, v in _META.findall(text)}
    m = _JSON.search(text)
    return (meta.get("daq-certificate"), meta.get("daq-certificate-sha256"),
            html.unescape(m.group(1)) if m else None)


def verify_report(text: str, registry: Registry) -> VerifyResult:
    """Check a report's certificate against the registry: the stated hash matches the embedded
    JSON, the registry's stored record and its latest audit entry."""
    cert_id, sha, embedded = read_report(text)
    if cert_id is None or sha is None:
        return VerifyResult(cert_id, sha, ("not a daq calibration report: no certificate id "
                                           "or SHA-256",))
    problems: list[str] = []
    if embedded is None:
        problems.append("the report carries no certificate JSON")
    elif sha256_text(embedded) != sha:
        problems.append(f"the report's certificate JSON hashes to {sha256_text(embedded)}, "
                        f"not the stated {sha}: the report was altered")
    stored = registry.raw_json("certificate", cert_id)
    if stored is None:
        problems.append(f"certificate {cert_id!r} is not in the registry {registry.path}")
        return VerifyResult(cert_id, sha, tuple(problems))
    if sha256_text(stored) != sha:
        problems.append(f"certificate {cert_id!r} in the registry hashes to "
                        f"{sha256_text(stored)}, the report states {sha}")
    entries = [e for e in registry.audit()
               if e.kind == "certificate" and e.record_id == cert_id]
    if not entries or entries[-1].record_sha256 != sha:
        problems.append(f"the registry's audit log does not record certificate {cert_id!r} "
                        f"with SHA-256 {sha} as its latest state")
    return VerifyResult(cert_id, sha, tuple(problems))
