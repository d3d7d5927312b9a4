"""The Python API: `evaluate(model, tasks=[...])` (lm-evaluation-harness's `simple_evaluate`).

    from diffae_bench import evaluate
    results = evaluate("diffae-small-shapes", tasks=["reconstruction", "linear_probe"], T=[10, 20], limit=200)
    results.table()                      # the CLI's table
    df = results.to_frame()              # one row per metric value (pandas)
    results.compare("results/leaderboard.csv")   # the regression gate; .ok is False on a regression

Nothing is written unless `out=` (a run directory) or `cache_dir=` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .errors import BenchError


@dataclass
class Comparison:
    diff: pd.DataFrame  # one row per compared metric, with its status
    n_regressions: int  # main metrics worse than the baseline beyond its CI (+ tolerance)
    text: str  # the gate's table and verdict, as `bench compare` prints them

    @property
    def ok(self) -> bool:
        return self.n_regressions == 0

    def __str__(self) -> str:
        return self.text


@dataclass
class Results:
    records: list[dict]  # one record per (task, model, data set), as `bench run` writes them
    run_dir: Path | None  # where they were written (None: in memory only)

    def to_frame(self) -> pd.DataFrame:
        """One row per metric value (records.ROW_COLUMNS): task, model, dataset, metric, value, ci_low, ci_high, ..."""
        from .harness.records import record_rows
        from .reporting.tables import rows_frame

        return rows_frame([row for rec in self.records for row in record_rows(rec)])

    def table(self, fmt: str = "terminal", main_only: bool = False) -> str:
        """The table `bench table` prints (terminal, markdown, csv, latex)."""
        from .reporting.tables import render

        return render(self.to_frame(), fmt, main_only=main_only)

    def compare(self, baseline, tolerance: float = 0.0, baseline_model: str | None = None) -> Comparison:
        """The regression gate against a baseline: a record, run directory, leaderboard CSV, or another Results.

        Raises BenchError where the rows are not comparable (different task
        versions, options, data, seeds, numeric modes or weights), as `bench compare` exits 2.
        """
        from .reporting.compare import compare_rows, format_diff, verdict
        from .reporting.tables import load_rows

        base = baseline.to_frame() if isinstance(baseline, Results) else load_rows([str(baseline)])
        diff, n = compare_rows(self.to_frame(), base, tolerance, baseline_model)
        return Comparison(diff, n, format_diff(diff) + "\n" + verdict(diff, n, tolerance))

    def __repr__(self) -> str:
        tasks = sorted({r["task"]["name"] for r in self.records})
        models = sorted({r["model"]["label"] for r in self.records})
        return f"Results({len(self.records)} records; tasks {tasks}; models {models})"


def _names(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    """A list of names; a plain string is one name or a comma-separated list (never split into letters)."""
    items = [value] if isinstance(value, str) else list(value)
    out = tuple(s.strip() for item in items for s in str(item).split(",") if s.strip())
    if not out:
        raise BenchError(f"no {what} given")
    return out


def evaluate(model, tasks: str | Sequence[str] = ("reconstruction", "linear_probe"), *, dataset: str | None = None,
             T: int | Sequence[int] | None = None, limit: int | None = None, seed: int = 0, device: str = "auto",
             batch_size: int = 64, threads: int | None = None, task_options: dict | None = None, dataset_options: dict | None = None,
             numeric_mode: str = "auto", out: str | Path | None = None, cache_dir: str | Path | None = None,
             offline: bool = False, progress: bool = False) -> Results:
    """Evaluate one model (or a list of them) on tasks; the same numbers as `bench run` with the same options.

    model: a run directory from `bench train`, a committed reference name
    ("diffae-small-shapes"), "module:factory", an in-memory DiffusionAutoencoder
    (give it a `.label` attribute to name it in tables), or a list of these.
    T: DDIM steps for every task that takes them (one int or a list).
    out: a run directory to write records, figures and run.json to (default: nothing written).
    cache_dir: a cache folder to read and write (default: no cache, nothing written).
    offline: never download the LPIPS / FID weights (default: fetched on first use, sha256-checked).
    threads: torch's CPU threads for the call (default: unchanged); bit-for-bit reproduction needs the same count.
    """
    from .harness.runner import RunOptions, run

    models = tuple(model) if isinstance(model, (list, tuple)) else (model,)
    steps = None if T is None else ((int(T),) if isinstance(T, int) else tuple(int(t) for t in T))
    opts = RunOptions(tasks=_names(tasks, "task"), models=models, dataset=dataset, limit=limit, T=steps, seed=seed,
                      out=None if out is None else str(out), device=device, batch_size=batch_size, threads=threads,
                      cache_dir=None if cache_dir is None else str(cache_dir), use_cache=cache_dir is not None,
                      task_options={k: dict(v) for k, v in (task_options or {}).items()}, progress=progress,
                      numeric_mode=numeric_mode, dataset_options=dict(dataset_options or {}), write=out is not None,
                      offline=offline)
    run_dir, records = run(opts)
    return Results(records, run_dir)
