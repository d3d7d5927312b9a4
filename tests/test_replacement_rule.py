"""The replacement rule as code (diffae_bench/reporting/replacement.py).

Oracles: a set of records judged against itself is "not worse" everywhere; a number moved just past the
committed CI fails exactly its own check; records of other task versions are never compared. And the
three verdicts reached by hand on results/legs/2026-11-27_h200_two-legs/README.md, from the committed
records, are what the code gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from diffae_bench.harness.records import ROW_COLUMNS
from diffae_bench.reporting.replacement import FAILS, HOLDS, INCOMPARABLE, RULES, judge
from diffae_bench.reporting.tables import load_rows, rows_frame

ROOT = Path(__file__).resolve().parent.parent
LEGS = ROOT / "results" / "legs" / "2026-11-27_h200_two-legs" / "records"

# (kind, task, metric, value, ci_low, ci_high, higher_is_better, task version): every number rules v2 and v3 read
BASE = [
    ("diffae", "reconstruction", "ssim/T=100/xT=random", 0.40, 0.35, 0.45, True, 2),
    ("diffae", "reconstruction", "ssim/T=20/xT=inferred", 0.90, 0.89, 0.91, True, 2),
    ("diffae", "linear_probe", "mean_auroc/rep=z_sem", 0.95, 0.94, 0.96, True, 3),
    ("diffae", "sample_fid", "fd_cnn/T=20/z=prior", 4.0, 3.0, 5.0, False, 3),
    ("diffae", "z_usage", "gap/t=700", 0.5, 0.4, 0.6, True, 1),
    ("ddim", "reconstruction", "ssim/T=100/xT=inferred", 0.99, 0.98, 0.995, True, 2),
    ("ddim", "sample_fid", "fd_cnn/T=20/z=prior", 5.0, 4.0, 6.0, False, 3),
    ("ddim", "sample_fid", "fd_cnn/T=100/z=prior", 4.5, 3.5, 5.5, False, 3),
    ("dmz", "linear_probe", "mean_auroc/rep=hard", 0.90, 0.88, 0.92, True, 3),
    ("dmz", "linear_probe", "mean_auroc/rep=soft", 0.95, 0.94, 0.96, True, 3),
    ("dmz", "reconstruction", "ssim/T=100/xT=random", 0.30, 0.25, 0.35, True, 2),
    ("dmz", "sample_fid", "fd_cnn/T=20/z=prior", 20.0, 16.0, 24.0, False, 3),
    ("dmz", "sample_fid", "fd_cnn/T=20/z=autoencoding", 8.0, 6.0, 10.0, False, 3),
    ("dmz", "z_usage", "gap/t=700", 0.9, 0.8, 1.0, True, 1),
]


def rows(changes: dict | None = None, drop=(), data: str = "mnist") -> pd.DataFrame:
    """Leaderboard rows of BASE; changes: (kind, metric) -> {field: value}; drop: (kind, metric) left out."""
    out = []
    for kind, task, metric, value, lo, hi, hib, version in BASE:
        if (kind, metric) in drop:
            continue
        row = {c: "" for c in ROW_COLUMNS}
        row.update(record_id=f"{kind}-{task}", task=task, task_version=version, model=f"{kind}-small-{data}",
                   model_kind=kind, dataset=data, metric=metric, family="x", value=value, ci_low=lo, ci_high=hi, n=100,
                   higher_is_better=hib, main=False, numeric_mode="fp32", seed=0)
        row.update((changes or {}).get((kind, metric), {}))
        out.append(row)
    return rows_frame(out)


def statuses(verdict) -> dict:
    return {o.check.split(":")[0]: o.status for o in verdict.outcomes if not o.clause.startswith("(d)")}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_set_against_itself_meets_every_rule(rule):
    verdict = judge(rule, rows(), rows(), "mnist")
    assert verdict.met and all(o.status == HOLDS for o in verdict.outcomes)
    # every clause of the rule was read, and clause (d) checked the goals the set meets (its z gaps)
    assert {o.clause for o in verdict.outcomes} == {label for label, _ in RULES[rule].clauses} | {"(d) goals"}
    assert any("z_usage gap" in o.check for o in verdict.outcomes if o.clause == "(d) goals")


def test_the_committed_ci_is_the_bound_in_the_metrics_own_direction():
    # higher is better: at ci_low holds, just below fails; lower is better: at ci_high holds, just above fails
    at_bounds = rows({("ddim", "ssim/T=100/xT=inferred"): {"value": 0.98},
                      ("ddim", "fd_cnn/T=20/z=prior"): {"value": 6.0}})
    assert judge("v3", rows(), at_bounds, "mnist").met
    past = rows({("ddim", "ssim/T=100/xT=inferred"): {"value": 0.9799},
                 ("ddim", "fd_cnn/T=20/z=prior"): {"value": 6.01}})
    verdict = judge("v3", rows(), past, "mnist")
    assert not verdict.met
    failing = {o.check.split(":")[0] for o in verdict.failing()}
    assert failing == {"ddim reconstruction ssim/T=100/xT=inferred", "ddim sample_fid fd_cnn/T=20/z=prior"}
    # better numbers are never a failure
    assert judge("v3", rows(), rows({("ddim", "fd_cnn/T=20/z=prior"): {"value": 0.5}}), "mnist").met


def test_rules_v2_and_v3_differ_only_in_the_dmz_samples_they_read():
    # the DMZ's Bernoulli(0.5) samples much worse, its decoder's own samples better: v2 fails, v3 holds
    new = rows({("dmz", "fd_cnn/T=20/z=prior"): {"value": 40.0}, ("dmz", "fd_cnn/T=20/z=autoencoding"): {"value": 7.0}})
    v2, v3 = judge("v2", rows(), new, "mnist"), judge("v3", rows(), new, "mnist")
    assert [o.check for o in v2.failing()] == ["dmz sample_fid fd_cnn/T=20/z=prior: not worse"]
    assert v3.met


def test_other_task_versions_and_missing_models_are_never_compared():
    newer = rows({("ddim", "fd_cnn/T=20/z=prior"): {"task_version": 4}})
    verdict = judge("v3", rows(), newer, "mnist")
    assert not verdict.met
    assert statuses(verdict)["ddim sample_fid fd_cnn/T=20/z=prior"] == INCOMPARABLE
    # other task options (a --limit or --profile quick run) or other images: never compared either
    for field, value in (("config_hash", "quick"), ("data_hash", "other"), ("weights", "fd_cnn:other")):
        verdict = judge("v3", rows(), rows({("ddim", "fd_cnn/T=20/z=prior"): {field: value}}), "mnist")
        assert statuses(verdict)["ddim sample_fid fd_cnn/T=20/z=prior"] == INCOMPARABLE and not verdict.met
    # a z gap (read from the new record alone) or a goal kept on fewer images is not "met" either
    fewer = rows({("dmz", "gap/t=700"): {"data_hash": "24 images"}, ("diffae", "gap/t=700"): {"data_hash": "24 images"}})
    verdict = judge("v3", rows(), fewer, "mnist")
    assert statuses(verdict)["dmz z_usage gap/t=700"] == INCOMPARABLE
    assert [o.status for o in verdict.outcomes if o.clause == "(d) goals"] == [INCOMPARABLE]
    no_dmz = rows(drop={(k, m) for k, _, m, *_ in BASE if k == "dmz"})
    verdict = judge("v3", rows(), no_dmz, "mnist")
    assert {o.clause for o in verdict.failing()} >= {"(c3) DMZ-style"}
    assert all(s == INCOMPARABLE for c, s in statuses(verdict).items() if c.startswith("dmz") and "z_usage" not in c)
    # the newest version both sides hold is the one compared: an extra newer committed record does not block it
    extra = rows({("ddim", "fd_cnn/T=20/z=prior"): {"task_version": 4, "value": 99.0}})
    extra = extra[(extra["model_kind"] == "ddim") & (extra["metric"] == "fd_cnn/T=20/z=prior")]
    committed = pd.concat([rows(), extra], ignore_index=True)
    assert statuses(judge("v3", committed, rows(), "mnist"))["ddim sample_fid fd_cnn/T=20/z=prior"] == HOLDS


def test_the_z_gap_must_lie_wholly_above_zero_and_a_met_goal_must_stay_met():
    touching = rows({("dmz", "gap/t=700"): {"ci_low": 0.0}})
    verdict = judge("v3", rows(), touching, "mnist")
    assert statuses(verdict)["dmz z_usage gap/t=700"] == FAILS
    # Diff-AE's z gap is not a numbered check, only a goal (d): losing it fails (d) alone
    lost = rows({("diffae", "gap/t=700"): {"value": 0.01, "ci_low": -0.01, "ci_high": 0.03}})
    verdict = judge("v3", rows(), lost, "mnist")
    assert [o.clause for o in verdict.failing()] == ["(d) goals"]


def test_two_records_of_one_measurement_are_refused():
    with pytest.raises(ValueError, match="one record of each task"):
        judge("v3", rows(), pd.concat([rows(), rows()]), "mnist")


def test_the_hand_verdicts_of_the_legs_page():
    """MNIST: v2 not met by the DMZ's Bernoulli samples alone, v3 met (the references replaced in session 6);
    shapes: v3 not met, the DDIM's fd_cnn at T = 20 and 100 and Diff-AE's T = 20 SSIM past the CI."""
    replaced = load_rows([LEGS / "replaced-references"])
    mnist = load_rows([LEGS / "diffae", LEGS / "ddim", LEGS / "dmz"])
    v2 = judge("v2", replaced, mnist, "mnist")
    assert [o.check for o in v2.failing()] == ["dmz sample_fid fd_cnn/T=20/z=prior: not worse"]
    assert judge("v3", replaced, mnist, "mnist").met

    shapes = judge("v3", load_rows([ROOT / "results" / "records" / "shapes"]),
                   load_rows([LEGS / f"shapes-{k}" for k in ("diffae", "ddim", "dmz")]), "shapes")
    s = statuses(shapes)
    assert not shapes.met
    assert {c for c, v in s.items() if v == FAILS} == {
        "diffae reconstruction ssim/T=20/xT=inferred", "ddim sample_fid fd_cnn/T=20/z=prior",
        "ddim sample_fid fd_cnn/T=100/z=prior"}
    # the 700k records' probes are linear_probe v2; the references' were re-run at v3 since: not compared
    assert {c for c, v in s.items() if v == INCOMPARABLE} == {
        "diffae linear_probe mean_auroc/rep=z_sem", "dmz linear_probe mean_auroc/rep=hard",
        "dmz linear_probe mean_auroc/rep=soft"}



def test_the_v_ddim_verdict_of_the_v_shapes_page():
    """results/legs/2026-11-28_cpu_v-shapes: the v DDIM's records against the committed shapes references
    under v3. Clause (b): both fd_cnn checks hold, the 100-step reconstruction SSIM fails; the other kinds
    have no records yet, so their checks are incomparable and the rule is not met."""
    page = ROOT / "results" / "legs" / "2026-11-28_cpu_v-shapes" / "records" / "ddim-v165k"
    s = statuses(judge("v3", load_rows([ROOT / "results" / "records" / "shapes"]), load_rows([page]), "shapes"))
    assert {c: v for c, v in s.items() if c.startswith("ddim")} == {
        "ddim reconstruction ssim/T=100/xT=inferred": FAILS, "ddim sample_fid fd_cnn/T=20/z=prior": HOLDS,
        "ddim sample_fid fd_cnn/T=100/z=prior": HOLDS}
    assert all(v == INCOMPARABLE for c, v in s.items() if not c.startswith("ddim"))


def test_the_three_v_models_verdict_of_the_v_shapes_page():
    """The page's rule-verdict block is `replacement_rule.py --rewrite` of its comment, and the verdict it shows:
    not met, on Diff-AE's z_sem probe (a) and the DDIM's 100-step reconstruction (b), every DMZ-style check
    and every sample check holding."""
    import importlib.util

    from diffae_bench.reporting import page_blocks

    spec = importlib.util.spec_from_file_location("replacement_rule", ROOT / "scripts" / "replacement_rule.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    page = ROOT / "results" / "legs" / "2026-11-28_cpu_v-shapes"
    found = page_blocks.blocks((page / "README.md").read_text(), "rule-verdict")
    assert len(found) == 2 and all(body == script.render(args) for args, body in found)
    for budget in ("v165k", "v256k"):  # 164,992 and 256,000 images: the same verdict on the same checks
        folders = [page / "records" / f"{k}-{budget}" for k in ("diffae", "ddim", "dmz")]
        assert all(f.as_posix().endswith(p) for f, p in zip(folders, found[("v165k", "v256k").index(budget)][0]
                                                                .split("|")[2].replace(" ", "").split(",")))
        verdict = judge("v3", load_rows([ROOT / "results" / "records" / "shapes"]), load_rows(folders), "shapes")
        s = statuses(verdict)
        assert not verdict.met
        assert {c for c, v in s.items() if v == FAILS} == {"diffae linear_probe mean_auroc/rep=z_sem",
                                                           "ddim reconstruction ssim/T=100/xT=inferred"}
        assert all(v == HOLDS for c, v in s.items() if c.startswith("dmz") or "sample_fid" in c)
        assert INCOMPARABLE not in s.values()  # every check the rule reads has records on both sides


@pytest.mark.slow
def test_the_scripts_judge_and_replace_nothing_unless_met(tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "replacement_rule.py")]
    ok = subprocess.run([*script, "--data", "mnist", "--committed", str(LEGS / "replaced-references"),
                         str(LEGS / "diffae"), str(LEGS / "ddim"), str(LEGS / "dmz")], capture_output=True, text=True)
    assert ok.returncode == 0 and "rule v3 on mnist: **MET**" in ok.stdout
    shapes_new = [str(LEGS / f"shapes-{k}") for k in ("diffae", "ddim", "dmz")]
    assert subprocess.run([*script, "--data", "shapes", *shapes_new], capture_output=True).returncode == 1
    bad = subprocess.run([*script, "--data", "shapes", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a folder of records" in bad.stderr

    board = ROOT / "results" / "records" / "shapes"
    before = sorted(p.relative_to(board) for p in board.rglob("*"))
    replace = subprocess.run([sys.executable, str(ROOT / "scripts" / "replace_references.py"), "--data", "shapes",
                              "--label", "x", "--exports", str(tmp_path), "--archive", str(tmp_path / "archive"),
                              *[a for r in shapes_new for a in ("--records", r)]], capture_output=True, text=True)
    assert replace.returncode == 1 and "nothing replaced: rule v3 is not met on shapes" in replace.stderr
    assert sorted(p.relative_to(board) for p in board.rglob("*")) == before and not (tmp_path / "archive").exists()


def _leg_files(folder: Path, data: str) -> Path:
    """What gpu_leg.sh returns for one data set, made from the committed models: model-<name>.tar, logs.tar.gz."""
    folder.mkdir()
    manifest = json.loads((ROOT / "results/models/manifest.json").read_text())
    for kind in ("diffae", "ddim", "dmz"):
        with tarfile.open(folder / f"model-{kind}-small-{data}.tar", "w") as tar:
            tar.add(ROOT / "results/models" / f"{kind}-small-{data}", arcname=f"{kind}-small-{data}")
    logs = folder / "logs"
    logs.mkdir()
    entries = {k: v for k, v in manifest["models"].items() if k.endswith(f"-{data}")}
    (logs / f"manifest-{data}.json").write_text(json.dumps({"models": entries}))
    with tarfile.open(folder / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
    return folder


@pytest.mark.slow
def test_judge_leg_unpacks_evaluates_and_judges_a_legs_files(tmp_path):
    """scripts/judge_leg.sh end to end at smoke size: its smoke records are of fewer images, so the rule must call
    them incomparable (exit 1) rather than judge them against the default-size references."""
    files = _leg_files(tmp_path / "files", "shapes")
    run = subprocess.run(["bash", "scripts/judge_leg.sh", "shapes", str(files), str(tmp_path / "work")], cwd=ROOT,
                         env={**os.environ, "SMOKE": "1", "PY": sys.executable},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    verdict = (tmp_path / "work" / "verdict.md").read_text()
    assert "NOT MET" in verdict and "other images" in verdict and "| fails |" not in verdict
    assert {p.name for p in (tmp_path / "work" / "exports").iterdir()} == {
        "manifest.json", "diffae-small-shapes", "ddim-small-shapes", "dmz-small-shapes"}
    assert not (tmp_path / "work" / "records-rest").exists()  # the other tasks are not run when the rule fails
    # bad input: one line, exit 2, and the existing WORK is not touched
    for args in (["cifar", str(files), str(tmp_path / "w2")], ["shapes", str(tmp_path / "none"), str(tmp_path / "w3")],
                 ["shapes", str(files), str(tmp_path / "work")]):
        bad = subprocess.run(["bash", "scripts/judge_leg.sh", *args], cwd=ROOT, capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
