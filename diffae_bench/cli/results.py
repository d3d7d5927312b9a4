"""`bench table`, `bench compare`, `bench leaderboard`: the commands that read result records.

Kept out of cli.py so they load no model code; cli.py adds them with
`register(app)`. BenchError propagates to cli.main, which prints one line and
exits 2; `bench compare` exits 1 (not 2) when a main metric regressed, so CI
can tell "worse" from "could not compare".
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import BenchError


class TableFormat(str, Enum):
    terminal = "terminal"
    markdown = "markdown"
    csv = "csv"
    latex = "latex"


class OutputFormat(str, Enum):
    """A table format, or json (machine-readable) for the commands that produce results."""

    terminal = "terminal"
    markdown = "markdown"
    csv = "csv"
    latex = "latex"
    json = "json"


class CIStyle(str, Enum):
    pm = "pm"
    interval = "interval"


def _write_or_echo(text: str, out: Optional[str]) -> None:
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    from ..checkpoint import atomic_write_bytes

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write_bytes(Path(out), write)
    typer.echo(f"wrote {out}", err=True)


def register(app: typer.Typer) -> None:
    """Add the result commands to a typer app (the `bench` app, or a test's)."""

    @app.command("table")
    def table(
        paths: List[str] = typer.Argument(..., help="record files, run directories, or leaderboard CSVs"),
        fmt: TableFormat = typer.Option(TableFormat.terminal, "--format", "-f", help="terminal, markdown, csv, latex"),
        main_only: bool = typer.Option(False, "--main-only", help="only the main metrics"),
        task: Optional[str] = typer.Option(None, "--task", help="only this task"),
        ci: CIStyle = typer.Option(CIStyle.pm, "--ci", help="pm: value ± half-width; interval: value [lo, hi]"),
        output: Optional[str] = typer.Option(None, "--output", "-o", help="write to this file instead of stdout"),
        out: Optional[str] = typer.Option(None, "--out", hidden=True, help="deprecated: --output"),
    ):
        """Results as a table: one row per (data set, model), one column per metric (csv: the long rows)."""
        from ..reporting.tables import load_rows, render

        if out is not None:
            typer.echo("warning: bench table --out is deprecated (--out names a directory elsewhere); use -o/--output",
                       err=True)
            output = output or out

        _write_or_echo(render(load_rows(paths), fmt.value, main_only=main_only, task=task, ci_style=ci.value), output)

    @app.command("compare")
    def compare(
        new: List[str] = typer.Argument(..., help="new results: record files, run directories, or CSVs"),
        baseline: str = typer.Option(..., "--baseline", help="baseline results: a record, run directory, or CSV"),
        tolerance: float = typer.Option(0.0, "--tolerance", help="extra slack beyond the baseline's CI"),
        baseline_model: Optional[str] = typer.Option(None, "--baseline-model",
                                                     help="compare every new model against this baseline model"),
        fmt: str = typer.Option("text", "--format", help="text or json (the rows and the verdict)"),
    ):
        """Regression gate: exit 1 if a main metric got worse beyond the baseline's CI (+ tolerance), 2 if incomparable."""
        from ..reporting.compare import compare_rows, format_diff, verdict
        from ..reporting.tables import load_rows

        if fmt not in ("text", "json"):
            raise BenchError(f"--format must be text or json, got '{fmt}'")
        diff, n_regressions = compare_rows(load_rows(new), load_rows([baseline]), tolerance, baseline_model)
        if fmt == "json":
            typer.echo(json.dumps({"regressions": n_regressions, "tolerance": tolerance,
                                   "verdict": verdict(diff, n_regressions, tolerance),
                                   "rows": json.loads(diff.to_json(orient="records"))}, indent=1))
        else:
            typer.echo(format_diff(diff))
            typer.echo(verdict(diff, n_regressions, tolerance))
        if n_regressions:
            raise typer.Exit(1)

    @app.command("leaderboard")
    def leaderboard(
        paths: List[str] = typer.Argument(..., help="record files and run directories (the records are the truth)"),
        output: str = typer.Option("results/leaderboard.csv", "--output", "-o", help="leaderboard CSV to (re)write"),
        out: Optional[str] = typer.Option(None, "--out", hidden=True, help="deprecated: --output"),
        markdown: Optional[str] = typer.Option(None, "--markdown", help="also write the main metrics as Markdown"),
    ):
        """Regenerate a leaderboard CSV (and Markdown) from result records."""
        if out is not None:
            typer.echo("warning: bench leaderboard --out is deprecated (--out names a directory elsewhere); "
                       "use -o/--output", err=True)
            output = out
        from ..reporting.leaderboard import build_leaderboard

        rows = build_leaderboard(paths, output, markdown)
        typer.echo(f"{output}: {rows['record_id'].nunique()} records, {len(rows)} rows"
                   + (f"; {markdown}" if markdown else ""))

    @app.command("criteria")
    def criteria_cmd(
        leaderboard: str = typer.Argument("results/leaderboard.csv", help="leaderboard CSV (bench leaderboard)"),
        output: Optional[str] = typer.Option(None, help="write the table to this markdown file (e.g. results/criteria.md)"),
        check: bool = typer.Option(False, "--check", help="with --output: change nothing, exit 1 if the file differs"),
    ):
        """What the reference models must show (issue 21), verdicts by 95 % CIs, generated from a leaderboard."""
        from pathlib import Path

        from ..reporting.criteria import criteria_page
        from ..reporting.tables import read_rows_csv

        page = criteria_page(read_rows_csv(leaderboard), leaderboard)
        if output is None:
            typer.echo(page, nl=False)
        elif check:
            if not Path(output).is_file() or Path(output).read_text(encoding="utf-8") != page:
                typer.echo(f"{output}: not what {leaderboard} gives; run: bench criteria {leaderboard} --output {output}",
                           err=True)
                raise typer.Exit(1)
            typer.echo(f"{output}: matches {leaderboard}")
        else:
            Path(output).write_text(page, encoding="utf-8")
            typer.echo(f"{output}: written from {leaderboard}")

    @app.command("findings")
    def findings_cmd(
        leaderboard: str = typer.Argument("results/leaderboard.csv", help="leaderboard CSV (bench leaderboard)"),
        readme: Optional[str] = typer.Option(None, help="rewrite the findings block of this file (e.g. README.md)"),
        check: bool = typer.Option(False, "--check", help="with --readme: change nothing, exit 1 if the block differs"),
    ):
        """The paper's findings, verdicts by 95 % CIs, generated from a leaderboard (never typed)."""
        from pathlib import Path

        from ..reporting.findings import findings, markdown
        from ..reporting.leaderboard import current_task_versions
        from ..reporting.summary_table import readme_with_tables
        from ..reporting.tables import read_rows_csv

        rows = read_rows_csv(leaderboard)
        if readme is None:
            typer.echo(markdown(findings(rows), current_task_versions(sorted(set(rows["task"])))), nl=False)
            return
        text = Path(readme).read_text(encoding="utf-8")
        try:
            new = readme_with_tables(text, rows)
        except ValueError as e:
            raise BenchError(f"{readme}: {e}") from None
        if check:
            if new != text:
                typer.echo(f"{readme}: the findings block is not what {leaderboard} gives; "
                           f"run: bench findings {leaderboard} --readme {readme}", err=True)
                raise typer.Exit(1)
            typer.echo(f"{readme}: findings block matches {leaderboard}")
            return
        Path(readme).write_text(new, encoding="utf-8")
        typer.echo(f"{readme}: findings block rewritten from {leaderboard}")
