"""Issue 21's goals for the references: verdicts on oracle / anti-oracle leaderboards, and the committed page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from diffae_bench.reporting.criteria import criteria, criteria_page
from diffae_bench.reporting.findings import NO, NOT_ASKED, YES
from diffae_bench.reporting.tables import read_rows_csv

ROOT = Path(__file__).resolve().parents[1]


def _leaderboard(trained: bool) -> pd.DataFrame:
    """Every metric the goals read, on both data sets: a trained model's numbers, or an untrained one's."""
    def v(good, bad):
        return good if trained else bad

    per_kind = {
        ("sample_fid", "corner_gap/T=100/z=prior"): {"ddim": v(0.01, 0.4), "diffae": v(0.02, 0.3)},
        ("sample_fid", "fd_cnn/T=100/z=prior"): {"ddim": v(20.0, 400.0), "diffae": v(25.0, 300.0)},
        ("sample_fid", "fd_cnn_floor"): {"ddim": 5.0, "diffae": 5.0},
        ("fake_detection", "auroc/T=50"): {"ddim": v(0.6, 0.99), "diffae": v(0.7, 0.99)},
        ("reconstruction", "ssim/T=100/xT=random"): {"diffae": v(0.6, 0.05)},
        ("reconstruction", "ssim/T=20/xT=inferred"): {"diffae": v(0.95, 0.7)},
        ("reconstruction", "ssim/T=100/xT=inferred"): {"ddim": v(0.9, 0.99)},
        ("linear_probe", "mean_auroc/rep=z_sem"): {"diffae": v(0.99, 0.8)},
        ("linear_probe", "mean_auroc/rep=x_T"): {"ddim": v(0.9, 0.95)},
        ("linear_probe", "mean_auroc/rep=hard"): {"dmz": v(0.95, 0.7)},
        ("z_usage", "gap/t=700"): {"diffae": v(0.3, -0.01), "dmz": v(0.2, 0.0)},
    }
    rows = []
    for data in ("mnist", "shapes"):
        for (task, metric), values in per_kind.items():
            for kind, value in values.items():
                half = 0.005 * max(1.0, abs(value))
                rows.append({"dataset": data, "model_kind": kind, "task": task, "task_version": 3, "metric": metric,
                             "value": value, "ci_low": value - half, "ci_high": value + half})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("trained, verdict", [(True, YES), (False, NO)])
def test_goals_follow_the_numbers_and_apply_where_the_issue_sets_them(trained, verdict):
    goals = criteria(_leaderboard(trained))
    assert len(goals) == 8
    for g in goals:
        assert g.verdicts["shapes"] == verdict, g.claim
    # the sample, probe and fake-detection goals are set for shapes only; F2, F3 and z-usage on both
    asked_on_mnist = [g.claim for g in goals if g.verdicts["mnist"] != NOT_ASKED]
    assert len(asked_on_mnist) == 3 and all(g.verdicts["mnist"] == verdict for g in goals if g.claim in asked_on_mnist)


def test_a_zero_gap_is_not_taken_as_using_z():
    rows = _leaderboard(True)
    at_700 = rows.metric == "gap/t=700"
    rows.loc[at_700, ["value", "ci_low", "ci_high"]] = [0.001, -0.002, 0.004]
    uses_z = next(g for g in criteria(rows) if "uses z" in g.claim)
    assert uses_z.verdicts["shapes"] == "not resolved"


def test_criteria_page_is_what_the_committed_leaderboard_gives():
    """New records without `bench criteria results/leaderboard.csv --output results/criteria.md` fail here."""
    rows = read_rows_csv(ROOT / "results" / "leaderboard.csv")
    page = criteria_page(rows, "results/leaderboard.csv")
    assert (ROOT / "results" / "criteria.md").read_text(encoding="utf-8") == page, \
        "run: bench criteria results/leaderboard.csv --output results/criteria.md"
