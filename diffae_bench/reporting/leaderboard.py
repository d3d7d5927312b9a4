"""Leaderboards: CSV (and Markdown) generated from result records, never edited by hand.

Records are the single source of truth; a leaderboard CSV is a cache of their
long rows. Two runs may finish at once and append to the same CSV, so every
update happens under an exclusive lock on a sidecar `<csv>.lock` (the CSV
itself is replaced, so it cannot carry the lock; `filelock` locks it on Unix
and on Windows alike) and is written to a temp file and renamed: a reader sees
the old file or the new one, never half of one, and no writer's rows are lost.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from filelock import FileLock

from ..checkpoint import atomic_write_bytes
from ..errors import BenchError
from ..harness.records import find_records, load_record, record_rows
from .tables import LEGEND, records_under, read_rows_csv, render, rows_frame, rows_to_csv, sort_rows

MARKDOWN_HEADER = ("# Leaderboard\n\nGenerated from result records by `bench leaderboard`; do not edit by hand.\n"
                   "Main metrics only, one section per data set; `bench table` shows all of them.\n\n")


@contextmanager
def _locked(csv_path: Path):
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    # An OS lock on the open file: released on exit, also if the writer dies; the lock file follows the umask.
    with FileLock(str(csv_path.with_name(csv_path.name + ".lock"))):
        yield


def _write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write_bytes(path, write)


def _rows_of(records: list[dict]) -> pd.DataFrame:
    return rows_frame([row for rec in records for row in record_rows(rec)])


def append_records(csv_path: str | Path, records: list[dict]) -> pd.DataFrame:
    """Add the rows of records to the CSV; rows of an earlier run of the same measurement (record_id) are replaced."""
    csv_path = Path(csv_path)
    new = _rows_of(records)
    with _locked(csv_path):
        if csv_path.exists():
            old = read_rows_csv(csv_path)
            old = old[~old["record_id"].isin(set(new["record_id"]))]
            merged = pd.concat([old, new], ignore_index=True) if len(old) else new
        else:
            merged = new
        merged = sort_rows(merged)
        _write_text(csv_path, rows_to_csv(merged))
    return merged


def _collect_records(paths) -> list[dict]:
    records = []
    for p in map(Path, paths):
        if p.is_dir():
            records += records_under(p)
        elif p.suffix.lower() == ".csv":
            raise BenchError(f"{p} is a CSV; a leaderboard is rebuilt from record files and run directories only")
        else:
            records += [load_record(q) for q in find_records([p])]
    return records


def build_leaderboard(record_paths_or_dirs, csv_path: str | Path, markdown_path: str | Path | None = None) -> pd.DataFrame:
    """Regenerate the CSV (and Markdown of the main metrics) from records alone, replacing what was there."""
    records = _collect_records(record_paths_or_dirs)
    if not records:
        raise BenchError(f"no result records in {', '.join(map(str, record_paths_or_dirs))}")
    # One record per measurement: a later re-run (created_at) replaces an earlier one, as append_records does.
    by_id = {rec["record_id"]: rec for rec in sorted(records, key=lambda r: str(r["created_at"]))}
    rows = sort_rows(_rows_of(list(by_id.values())))
    csv_path = Path(csv_path)
    with _locked(csv_path):
        _write_text(csv_path, rows_to_csv(rows))
    if markdown_path is not None:
        _write_text(Path(markdown_path), MARKDOWN_HEADER + markdown_by_dataset(rows))
    return rows


def current_task_versions(tasks) -> dict[str, int]:
    """The installed code's version of each task (tasks not installed here are left out)."""
    from ..harness.task import get_task, task_names

    known = set(task_names())
    return {t: int(get_task(t).version) for t in tasks if t in known}


def stale_versions(rows: pd.DataFrame) -> dict[str, tuple[list[int], int]]:
    """task -> (versions in the rows older than the code's, the code's version): records that predate a change
    of meaning. They stay (they are what was measured, and say so), but no run of today's code is compared
    with them (`bench compare` refuses other versions), so a reader must see that they are out of date."""
    current = current_task_versions(sorted(set(rows["task"])))
    out = {}
    for task, code_v in current.items():
        old = sorted(int(v) for v in set(rows.loc[rows["task"] == task, "task_version"]) if int(v) < code_v)
        if old:
            out[task] = (old, code_v)
    return out


def markdown_by_dataset(rows: pd.DataFrame) -> str:
    """Main metrics as Markdown, one section per data set, so each table has only its own data set's columns
    (MNIST rows no longer carry shapes' attribute columns as "-"); the legend once at the end. A task whose
    records are older than the installed code's version is marked in its heading and listed at the top."""
    legend = f"\n\n{LEGEND}\n"
    stale = stale_versions(rows)
    sections = []
    for dataset in sorted(set(rows["dataset"])):
        text = render(rows[rows["dataset"] == dataset], "markdown", main_only=True)
        body = text[:-len(legend)] if text.endswith(legend) else text
        for task, (old, code_v) in stale.items():
            for v in old:
                body = body.replace(f"### {task} (v{v})\n",
                                    f"### {task} (v{v}; OUT OF DATE: the task is v{code_v} now)\n")
        sections.append(f"## {dataset}\n\n{body}")  # render's "### task (vN)" sections sit under it
    head = ""
    if stale:
        listed = ", ".join(f"{t} (records v{'/'.join(map(str, old))}, code v{v})" for t, (old, v) in sorted(stale.items()))
        head = (f"Out of date: {listed}. These records were made before the task's meaning changed; they are "
                "kept as measured, and no run of the current code is compared with them.\n\n")
    return head + "\n\n".join(sections) + legend
