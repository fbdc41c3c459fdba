"""What a technician sees during a calibration session: a rich terminal view (progress bar
over setpoints, a live panel of the current readings with mean, s and stability, a table of
finished points with error, U and verdict) or plain lines for logs and CI (``--plain``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from calibration.procedure import Procedure
from calibration.session import PointResult

__all__ = ["PlainView", "RichView", "verdict_text"]


def verdict_text(r: PointResult) -> str:
    if r.decision is None:
        return "no MPE"
    return f"{'accepted' if r.decision.accepted else 'rejected'}: {r.decision.zone}"


def _g(x: float, digits: int = 6) -> str:
    return f"{x:.{digits}g}"


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values) if values else math.nan
    s = statistics.stdev(values) if len(values) > 1 else math.nan
    return mean, s


def _stability(values: list[float]) -> float:
    """|mean of the second half − mean of the first half| (what the stability check uses)."""
    if len(values) < 2:
        return math.nan
    half = len(values) // 2
    return abs(statistics.fmean(values[half:]) - statistics.fmean(values[:half]))


class PlainView:
    """One line per event, nothing redrawn: for logs, CI and pipes."""

    def __init__(self, echo: Callable[[str], Any] = print) -> None:
        self.echo = echo
        self.proc: Procedure | None = None

    def begin(self, proc: Procedure, session_id: str, finished: list[PointResult]) -> None:
        self.proc = proc
        self.echo(f"session {session_id}: {proc.title}, {len(proc.setpoints)} setpoints, "
                  f"{len(finished)} already finished")
        for r in finished:
            self.point(r)

    def setpoint(self, i: int, action: str) -> None:
        assert self.proc is not None
        self.echo(f"[{i + 1}/{len(self.proc.setpoints)}] "
                  f"{self.proc.setpoints[i].nominal:g} {self.proc.unit}: {action}")

    def reading(self, i: int, dut: list[float], ref: list[float]) -> None:
        pass  # the point's line says it all

    def point(self, r: PointResult) -> None:
        assert self.proc is not None
        u = self.proc.unit
        self.echo(f"  point {r.nominal:g} {u}: mean {_g(r.dut_mean, 9)} s {_g(r.dut_std, 3)} "
                  f"n {r.n}; error {_g(r.error, 4)} {u}, U {_g(r.U, 3)} (k {r.k:.3f}); "
                  f"{verdict_text(r)}")

    def message(self, text: str) -> None:
        self.echo(text)

    def end(self) -> None:
        pass


class RichView:
    """A live terminal view; :meth:`pause` / :meth:`unpause` around a prompt."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.proc: Procedure | None = None
        self.done: list[PointResult] = []
        self.current: tuple[int, list[float], list[float]] | None = None
        self.action = ""
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=self.console)
        self.task = self.progress.add_task("setpoints", total=1)
        self.live: Live | None = None

    # -- rendering ---------------------------------------------------------------------------
    def _panel(self) -> Panel:
        assert self.proc is not None
        u = self.proc.unit
        if self.current is None:
            return Panel(self.action or "waiting", title="current point")
        i, dut, ref = self.current
        table = Table.grid(padding=(0, 2))
        for col in ("", "last", "mean", "s", "n", "stability"):
            table.add_column(col, justify="right")
        table.add_row("", "last", "mean", "s", "n", "stability")
        for name, values in (("DUT", dut), ("reference", ref)):
            mean, s = _stats(values)
            last = values[-1] if values else math.nan
            table.add_row(name, _g(last, 9), _g(mean, 9), _g(s, 3), str(len(values)),
                          _g(_stability(values), 3))
        limit = self.proc.defaults.stability
        title = (f"{self.proc.setpoints[i].nominal:g} {u} — {self.action}"
                 + (f" (stability limit {limit:g} {u})" if limit else ""))
        return Panel(table, title=title)

    def _table(self) -> Table:
        assert self.proc is not None
        u = self.proc.unit
        table = Table(title="finished points")
        for col in (f"nominal / {u}", f"indicated / {u}", f"reference / {u}", f"error / {u}",
                    f"U / {u}", "k", f"MPE / {u}", "TUR", "verdict"):
            table.add_column(col, justify="right")
        for r in sorted(self.done, key=lambda p: p.index):
            d = r.decision
            style = "" if d is None else ("green" if d.accepted else "red")
            table.add_row(f"{r.nominal:g}", _g(r.dut_mean, 9), _g(r.reference, 9),
                          _g(r.error, 4), _g(r.U, 3), f"{r.k:.3f}",
                          "—" if r.mpe is None else _g(r.mpe, 3),
                          "—" if d is None else f"{d.tur:.1f}", verdict_text(r), style=style)
        return table

    def _render(self) -> Group:
        return Group(self.progress, self._panel(), self._table())

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    # -- the SessionView protocol ------------------------------------------------------------
    def begin(self, proc: Procedure, session_id: str, finished: list[PointResult]) -> None:
        self.proc = proc
        self.done = list(finished)
        self.progress.update(self.task, total=len(proc.setpoints), completed=len(finished),
                             description=f"{session_id}")
        self.live = Live(self._render(), console=self.console, refresh_per_second=8)
        self.live.start()

    def setpoint(self, i: int, action: str) -> None:
        self.action = action
        if self.current is None or self.current[0] != i:
            self.current = (i, [], [])
        self._refresh()

    def reading(self, i: int, dut: list[float], ref: list[float]) -> None:
        self.current = (i, dut, ref)
        self._refresh()

    def point(self, r: PointResult) -> None:
        self.done.append(r)
        self.progress.advance(self.task)
        self._refresh()

    def message(self, text: str) -> None:
        self.console.print(text)

    def end(self) -> None:
        self.current = None
        self.action = "done"
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()
            self.live = None

    def pause(self) -> None:
        if self.live is not None:
            self.live.stop()

    def unpause(self) -> None:
        if self.live is not None:
            self.live.start()
