"""`bench report`: records -> one self-contained HTML page (diffae_bench.reporting.report). Loads no model code."""

from __future__ import annotations

from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add `bench report` to a typer app."""

    @app.command("report")
    def report(
        paths: List[str] = typer.Argument(..., help="run directories, record folders (e.g. results/records) or record files"),
        out: str = typer.Option("report.html", "--out", "-o", help="HTML file to write"),
        dataset: List[str] = typer.Option([], "--dataset", help="only this data set (repeatable; default: all)"),
        figures_dir: Optional[str] = typer.Option(None, "--figures-dir",
                                                  help="also write the cross-model figures here as PNG files"),
    ):
        """One static HTML page from records alone: main table per data set with CIs, cross-model figures, grids, notes."""
        from pathlib import Path

        from ..checkpoint import atomic_write_bytes
        from ..reporting.report import build_html

        text = build_html(paths, dataset or None, Path(figures_dir) if figures_dir else None)

        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        atomic_write_bytes(Path(out), write)
        typer.echo(f"wrote {out} ({len(text.encode()) // 1024} KiB)", err=True)
