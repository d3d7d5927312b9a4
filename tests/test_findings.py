"""The paper's findings table: verdict rules on oracle inputs, and the README block is generated, not typed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from diffae_bench.reporting.findings import NO, OPEN, YES, Estimate, better, beyond, combine, findings, markdown, replace_block
from diffae_bench.reporting.tables import read_rows_csv

ROOT = Path(__file__).resolve().parents[1]


def E(value, half=0.01, version=1):
    return Estimate(value, value - half, value + half, version)


def test_verdicts_need_separated_cis():
    assert better(E(0.9), E(0.5)) == YES
    assert better(E(0.5), E(0.9)) == NO
    assert better(E(0.51, 0.05), E(0.5, 0.05)) == OPEN  # a higher point estimate alone is not a yes
    assert better(E(10.0), E(20.0), higher_is_better=False) == YES  # lower is better: FD, step ratio
    assert beyond(E(0.7), 0.5) == YES and beyond(E(0.3), 0.5) == NO and beyond(E(0.5, 0.1), 0.5) == OPEN
    assert beyond(E(0.2), 0.5, above=False) == YES
    assert combine([YES, YES]) == YES and combine([YES, OPEN]) == OPEN and combine([YES, NO, OPEN]) == NO
    assert combine([]) == "no data"


def _rows(diffae_ssim: float, ddim_ssim: float) -> pd.DataFrame:
    rows = []
    for kind, ssim in (("diffae", diffae_ssim), ("ddim", ddim_ssim)):
        for T in (10, 20, 50, 100):
            rows.append({"dataset": "toy", "model_kind": kind, "task": "reconstruction", "task_version": 2,
                         "metric": f"ssim/T={T}/xT=inferred", "value": ssim, "ci_low": ssim - 0.01,
                         "ci_high": ssim + 0.01})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("diffae, ddim, verdict", [(0.9, 0.5, YES), (0.5, 0.9, NO), (0.7, 0.705, OPEN)])
def test_a_finding_follows_the_numbers_and_says_what_it_lacks(diffae, ddim, verdict):
    found = {f.claim: f for f in findings(_rows(diffae, ddim))}
    every_T = next(f for c, f in found.items() if c.startswith("Diff-AE reconstructs better than DDIM at every T"))
    assert every_T.verdicts == {"toy": verdict} and every_T.versions == {"reconstruction": [2]}
    probes = next(f for c, f in found.items() if c.startswith("linear probes"))
    assert probes.verdicts == {"toy": "no data"}  # no probe records: not a "no"


def test_out_of_date_records_are_marked():
    found = findings(_rows(0.9, 0.5))
    assert "(OUT OF DATE: code v3)" in markdown(found, {"reconstruction": 3})
    assert "OUT OF DATE" not in markdown(found, {"reconstruction": 2})


def test_replace_block_needs_both_markers_once():
    from diffae_bench.reporting.findings import BEGIN, END

    assert replace_block(f"a\n{BEGIN}\nold\n{END}\nb", "new\n") == f"a\n{BEGIN}\nnew\n{END}\nb"
    with pytest.raises(ValueError):
        replace_block("no markers", "x")


def test_readme_findings_and_main_table_are_what_the_committed_leaderboard_gives():
    """Typed edits, or new records without `bench findings ... --readme README.md`, fail here."""
    from diffae_bench.reporting.summary_table import readme_with_tables

    rows = read_rows_csv(ROOT / "results" / "leaderboard.csv")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_tables(readme, rows) == readme, "run: bench findings results/leaderboard.csv --readme README.md"


def test_main_table_reads_each_kinds_metric_and_marks_old_records():
    from diffae_bench.reporting.summary_table import main_table

    def row(model, kind, task, version, metric, value):
        return {"dataset": "toy", "model": model, "model_kind": kind, "task": task, "task_version": version,
                "metric": metric, "value": value}

    rows = pd.DataFrame([
        row("a", "diffae", "linear_probe", 2, "mean_auroc/rep=z_sem", 0.9),
        row("b", "dmz", "linear_probe", 2, "mean_auroc/rep=soft", 0.8),
        row("b", "dmz", "linear_probe", 2, "mean_auroc/rep=z_sem", 0.1),  # not the DMZ-style model's own code
        row("a", "diffae", "interpolation", 1, "step_ratio/path=z_lerp+xT_slerp", 1.5),
        row("a", "diffae", "interpolation", 2, "step_ratio/path=z_lerp+xT_slerp", 1.25),  # the newest version wins
    ])
    table = main_table(rows, {"linear_probe": 2, "interpolation": 3})
    a, b = (line for line in table.splitlines() if line.startswith("| toy |"))
    assert "| 0.900 |" in a and "| 1.25* |" in a and "1.50" not in a
    assert "| 0.800 |" in b and "0.100" not in b
    assert "interpolation v2" in table and "the code is interpolation v3" in table and "linear_probe v2;" not in table
