"""``python -m benchmarks --only coverage`` runs (a small smoke run; the numbers are in
docs/calibrated-readings.md)."""

from __future__ import annotations

from benchmarks.coverage import CASES, format_rows, run_coverage


def test_the_coverage_table_runs_every_path() -> None:
    rows = run_coverage(sessions=40, per=3, seed=5)
    assert [r.name for r in rows] == [c[0] for c in CASES]
    by_name = {r.name: r for r in rows}
    assert by_name["lab least squares, repeatability unstated"].coverage < 0.6
    for r in rows:
        assert r.readings >= 40 * 2
        assert 0.0 < r.se < 0.2
        assert 0.9 < r.reference < 1.0
    assert format_rows(rows).count("\n") == len(rows) + 1
