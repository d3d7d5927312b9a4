"""Result tables: the long rows of records, loaded from anywhere, rendered for people.

Rows are the long format of `records.record_rows` (one per metric value,
columns ROW_COLUMNS). `load_rows` reads them from record files, run
directories and leaderboard CSVs alike, with the same dtypes whatever the
source, so tables, leaderboards and the regression gate agree on every value.

`render` turns rows into the wide human table: one section per task version
(their metric columns differ, and numbers of different versions must not sit
side by side), one row per (data set, model), one column per metric key with
a direction arrow and `*` for main metrics. `csv` is the exception: it writes
the long rows, which `load_rows` and `bench compare` read back.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from ..errors import BenchError
from ..harness.records import ROW_COLUMNS, find_records, load_record, record_rows

FORMATS = ("terminal", "markdown", "csv", "latex")
INT_COLUMNS = ("task_version", "n", "seed")
FLOAT_COLUMNS = ("value", "ci_low", "ci_high", "ideal")
# Columns added after the first leaderboards were written: empty when an older CSV lacks them.
LATER_COLUMNS = ("ideal", "numerics", "weights")
BOOL_COLUMNS = ("higher_is_better", "main")
STR_COLUMNS = tuple(c for c in ROW_COLUMNS if c not in INT_COLUMNS + FLOAT_COLUMNS + BOOL_COLUMNS)
SORT_KEY = ["task", "dataset", "model", "metric"]
LEGEND = "`*` main metric (gated by `bench compare`); ↑ higher is better, ↓ lower is better; cells: value ± half-width of the 95% CI (bootstrap over items; fewshot_fid: t-interval over repeats)."


# ---------------------------------------------------------------- rows: one dtype per column, whatever the source
def _to_bool(v) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


def rows_frame(rows) -> pd.DataFrame:
    """Rows (dicts or a DataFrame, e.g. all-string from a CSV) as a DataFrame with ROW_COLUMNS and fixed dtypes."""
    df = pd.DataFrame(rows, columns=list(ROW_COLUMNS)) if not isinstance(rows, pd.DataFrame) else rows
    missing = [c for c in ROW_COLUMNS if c not in df.columns]
    if missing:
        raise BenchError(f"result rows lack columns {missing}")
    out = pd.DataFrame(index=range(len(df)))
    for c in ROW_COLUMNS:
        col = df[c].reset_index(drop=True)
        if c in FLOAT_COLUMNS:
            out[c] = pd.to_numeric(col, errors="coerce").astype("float64")
        elif c in INT_COLUMNS:
            out[c] = pd.to_numeric(col, errors="coerce").astype("Int64")  # nullable: a CSV cell may be empty
        elif c in BOOL_COLUMNS:
            out[c] = col.map(_to_bool).astype(bool)
        else:
            out[c] = col.fillna("").astype(str)
    return out


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Leaderboard order; created_at and record_id make it total, so the order never depends on append order."""
    keys = SORT_KEY + ["created_at", "record_id"]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def read_rows_csv(path_or_buffer) -> pd.DataFrame:
    # Everything as text first: a hex data_hash of only digits must not become an int.
    try:
        raw = pd.read_csv(path_or_buffer, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchError(f"cannot read result CSV {path_or_buffer}: {e}") from None
    missing = [c for c in ROW_COLUMNS if c not in raw.columns and c not in LATER_COLUMNS]
    if missing:
        raise BenchError(f"{path_or_buffer} is not a result CSV: it lacks columns {missing}")
    for c in LATER_COLUMNS:
        if c not in raw.columns:
            raw[c] = ""
    return rows_frame(raw)


def rows_to_csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df[list(ROW_COLUMNS)].to_csv(buf, index=False)
    return buf.getvalue()


def records_under(directory: Path) -> list[dict]:
    """Records in a directory tree; other JSON there (a training run's config.json) is not a record and is skipped."""
    records = []
    for path in find_records([directory]):
        try:
            head = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            head = None  # unreadable: let load_record report it
        if isinstance(head, dict) and "metrics" not in head and "schema_version" not in head:
            continue
        records.append(load_record(path))
    return records


def load_rows(paths) -> pd.DataFrame:
    """Rows from record JSON files, run directories (recursively) and leaderboard CSVs."""
    frames = []
    for p in map(Path, paths):
        if p.is_dir():
            frames.append(rows_frame([r for rec in records_under(p) for r in record_rows(rec)]))
        elif p.is_file() and p.suffix.lower() == ".csv":
            frames.append(read_rows_csv(p))
        elif p.is_file():
            frames.append(rows_frame(record_rows(load_record(p))))
        else:
            raise BenchError(f"no record, run directory or result CSV at {p}")
    frames = [f for f in frames if len(f)]
    if not frames:
        raise BenchError(f"no result rows in {', '.join(map(str, paths))}")
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def latest_rows(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """One row per key: the most recent by created_at (several runs of one measurement)."""
    when = pd.to_datetime(df["created_at"], utc=True, errors="coerce", format="ISO8601")
    order = when.fillna(pd.Timestamp.min.tz_localize("UTC")).argsort(kind="stable")
    return df.iloc[order].drop_duplicates(key, keep="last").sort_index()


# ---------------------------------------------------------------- rendering
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _latex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(s))


def _finite(x) -> bool:
    return x is not None and not pd.isna(x) and math.isfinite(x)


def format_cell(value, lo, hi, ci_style: str = "pm", latex: bool = False) -> str:
    """4 significant digits for the value; the CI's half-width to 2 (more would be false precision)."""
    if not _finite(value):
        return "n/a"
    v = f"{value:.4g}"
    if not (_finite(lo) and _finite(hi)):
        return v
    if ci_style == "interval":
        return f"{v} [{lo:.4g}, {hi:.4g}]"
    pm = r"$\pm$" if latex else "±"
    return f"{v} {pm} {(hi - lo) / 2:.2g}"


def _select(df: pd.DataFrame, main_only: bool, task: str | None) -> pd.DataFrame:
    if task is not None:
        if task not in set(df["task"]):
            raise BenchError(f"no rows for task '{task}' (tasks: {', '.join(sorted(set(df['task']))) or 'none'})")
        df = df[df["task"] == task]
    if main_only:
        df = df[df["main"]]
    return df


def wide_table(rows: pd.DataFrame, ci_style: str = "pm", latex: bool = False) -> tuple[list[str], list[list[str]]]:
    """Headers and cells for one task version: one row per (data set, model), one column per metric key."""
    rows = latest_rows(rows, ["dataset", "model", "metric"])
    first = rows.drop_duplicates("metric")  # order of first appearance, main metrics first
    metrics = sorted(first.itertuples(), key=lambda m: not m.main)
    esc = _latex_escape if latex else (lambda s: s)
    up, down = (r"$\uparrow$", r"$\downarrow$") if latex else ("↑", "↓")
    headers = ["dataset", "model"] + [f"{esc(m.metric)}{'*' if m.main else ''} {up if m.higher_is_better else down}"
                                      for m in metrics]
    cells = {(r.dataset, r.model, r.metric): format_cell(r.value, r.ci_low, r.ci_high, ci_style, latex)
             for r in rows.itertuples()}
    body = []
    for dataset, model in sorted(set(zip(rows["dataset"], rows["model"]))):
        body.append([esc(dataset), esc(model)] + [cells.get((dataset, model, m.metric), "-") for m in metrics])
    return headers, body


def plain_table(headers: list[str], body: list[list[str]], n_left: int = 2) -> str:
    """Aligned text; the first n_left columns left-aligned (names), the rest right-aligned (numbers)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    just = lambda i, s: str(s).ljust(widths[i]) if i < n_left else str(s).rjust(widths[i])
    lines = ["  ".join(just(i, h) for i, h in enumerate(headers)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(just(i, c) for i, c in enumerate(row)) for row in body]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(headers: list[str], body: list[list[str]], n_left: int = 2) -> str:
    cell = lambda s: str(s).replace("|", r"\|")
    lines = ["| " + " | ".join(map(cell, headers)) + " |",
             "|" + "|".join("---" if i < n_left else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in body]
    return "\n".join(lines)


def render(df: pd.DataFrame, fmt: str = "terminal", *, main_only: bool = False, task: str | None = None,
           ci_style: str = "pm") -> str:
    if fmt not in FORMATS:
        raise BenchError(f"unknown table format '{fmt}' (formats: {', '.join(FORMATS)})")
    df = _select(df, main_only, task)
    if fmt == "csv":
        return rows_to_csv(sort_rows(df))
    if df.empty:
        return "(no rows)\n"
    latex = fmt == "latex"
    sections = []
    for (task_name, version), group in df.groupby(["task", "task_version"], sort=True, dropna=False):
        headers, body = wide_table(group, ci_style, latex)
        title = f"{task_name} (v{version})"
        if fmt == "terminal":
            sections.append(f"{title}\n{plain_table(headers, body)}")
        elif fmt == "markdown":
            sections.append(f"### {title}\n\n{markdown_table(headers, body)}")
        else:
            table = pd.DataFrame(body, columns=headers).to_latex(index=False, escape=False,
                                                                 column_format="ll" + "r" * (len(headers) - 2))
            sections.append(f"% {title}\n{table.rstrip()}")
    legend = LEGEND if fmt == "markdown" else LEGEND.replace("`", "")
    if latex:  # a comment, so the output stays a drop-in tabular
        legend = "% " + legend.replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace("±", r"$\pm$")
    return "\n\n".join(sections) + f"\n\n{legend}\n"
