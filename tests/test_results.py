"""Result tables, leaderboards and the regression gate, on synthetic records (no models, no training)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing as mp
from dataclasses import dataclass

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from diffae_bench.cli.results import register
from diffae_bench.reporting.compare import _status, compare_rows
from diffae_bench.numerics import fingerprint_id
from diffae_bench.errors import BenchError
from diffae_bench.reporting.leaderboard import append_records, build_leaderboard
from diffae_bench.harness.records import build_record, record_rows, write_record
from diffae_bench.reporting.tables import load_rows, read_rows_csv, render, rows_frame, sort_rows
from diffae_bench.harness.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class FakeConfig:
    steps: int = 10  # only here so the record has a config


class FakeTask(Task):
    name = "fake"
    version = 1
    Config = FakeConfig
    metrics = (Metric("acc", higher_is_better=True, main=True), Metric("mse", higher_is_better=False, main=True),
               Metric("speed", higher_is_better=True, main=False))


def make_record(model="diffae", seed=0, acc=0.80, mse=0.10, speed=100.0, acc_ci=0.02, version=1, images="abc",
                created_at="2024-05-01T12:00:00+00:00", task="fake", dataset="shapes", numeric_mode="fp32",
                weights=None, without=(), cpu="AVX2") -> dict:
    task_cls = type("Fake", (FakeTask,), {"name": task, "version": version})
    result = TaskResult()
    result.add("acc", acc, (acc - acc_ci, acc + acc_ci), n=100, T=20)
    if "mse" not in without:
        result.add("mse", mse, (mse - 0.01, mse + 0.01), n=100)
    result.add("speed", speed, None, n=1)  # no CI: the gate uses the value
    numerics = {"device_type": "cpu", "cpu_capability": cpu, "torch": "2.14.1", "numeric_mode": numeric_mode}
    numerics["id"] = fingerprint_id(numerics)
    return build_record(
        task_cls=task_cls, cfg=FakeConfig(), result=result,
        model_info={"label": model, "kind": model, "fingerprint": hashlib.sha256(model.encode()).hexdigest()},
        dataset_info={"name": dataset, "splits": {"test": {"content_hash": images, "n_used": 100}}},
        seed=seed, numeric_mode=numeric_mode, numerics=numerics, device="cpu", wall_s=1.0, created_at=created_at,
        environment={}, git={"commit": "0123456789abcdef"}, machine={}, pretrained_weights=weights or {}, cache={})


def rows_of(*records) -> pd.DataFrame:
    return rows_frame([r for rec in records for r in record_rows(rec)])


def run_cli(*args) -> tuple[int, str]:
    """Invoke a fresh app with the result commands; a BenchError gets its exit code, as cli.main gives it."""
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, [str(a) for a in args])
    if isinstance(result.exception, BenchError):
        return result.exception.exit_code, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


# ---------------------------------------------------------------- rows and tables
def test_rows_round_trip_through_files_dirs_and_csv(tmp_path):
    rec = make_record()
    expected = rows_of(rec)
    assert len(expected) == 3 and set(expected["metric"]) == {"acc/T=20", "mse", "speed"}
    path = write_record(tmp_path / "run", rec)
    (tmp_path / "run" / "config.json").write_text('{"model": "diffae"}')  # a training run's file, not a record
    pd.testing.assert_frame_equal(load_rows([path]), expected)
    pd.testing.assert_frame_equal(load_rows([tmp_path]), expected)
    append_records(tmp_path / "lb.csv", [rec])
    pd.testing.assert_frame_equal(load_rows([tmp_path / "lb.csv"]), sort_rows(expected))
    with pytest.raises(BenchError):
        load_rows([tmp_path / "missing.json"])


def test_table_formats_render():
    rows = rows_of(make_record(), make_record(model="ddim", acc=0.6, mse=0.2))
    text = render(rows, "terminal")
    assert "fake (v1)" in text and "acc/T=20* ↑" in text and "mse* ↓" in text and "speed ↑" in text
    assert "0.8 ± 0.02" in text and "ddim" in text
    md = render(rows, "markdown")
    assert "| dataset | model | acc/T=20* ↑ |" in md and "|---|---|---:|" in md
    latex = render(rows, "latex")
    assert r"\begin{tabular}" in latex and r"$\uparrow$" in latex and r"$\pm$" in latex
    back = read_rows_csv(io.StringIO(render(rows, "csv")))
    pd.testing.assert_frame_equal(back, sort_rows(rows))
    assert "speed" not in render(rows, "markdown", main_only=True)
    assert "[0.78, 0.82]" in render(rows, "terminal", ci_style="interval")
    with pytest.raises(BenchError, match="no rows for task 'nope'"):
        render(rows, "terminal", task="nope")


def test_table_cli_writes_file(tmp_path):
    path = write_record(tmp_path, make_record())
    code, out = run_cli("table", path, "--format", "markdown", "--main-only", "--task", "fake", "--output", tmp_path / "t.md")
    assert code == 0, out
    assert "| acc/T=20* ↑ |" in (tmp_path / "t.md").read_text()


# ---------------------------------------------------------------- leaderboard
def _append_many(csv_path: str, model: str, count: int) -> None:
    for seed in range(count):
        append_records(csv_path, [make_record(model=model, seed=seed)])


@pytest.mark.slow  # starts processes
def test_concurrent_appends_lose_no_rows(tmp_path):
    csv_path = tmp_path / "lb.csv"
    count = 12
    ctx = mp.get_context("fork")  # spawn would re-import torch in each child: seconds on 2 cores
    workers = [ctx.Process(target=_append_many, args=(str(csv_path), m, count)) for m in ("diffae", "ddim")]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):  # a reader must never see half a file
        if csv_path.exists():
            read_rows_csv(csv_path)
    for w in workers:
        w.join()
        assert w.exitcode == 0
    rows = read_rows_csv(csv_path)
    assert rows["record_id"].nunique() == 2 * count and len(rows) == 2 * count * 3


def test_reappend_replaces_and_rebuild_equals_appended(tmp_path):
    first = make_record(seed=0, acc=0.5)
    rerun = make_record(seed=0, acc=0.9, created_at="2024-06-01T00:00:00+00:00")  # same measurement, same id
    other = make_record(model="ddim")
    csv_path = tmp_path / "lb.csv"
    append_records(csv_path, [first])
    append_records(csv_path, [other])
    appended = append_records(csv_path, [rerun])
    assert len(appended) == 6 and appended.loc[appended["metric"] == "acc/T=20", "value"].max() == 0.9
    write_record(tmp_path / "runs" / "a", first)
    write_record(tmp_path / "runs" / "b", rerun)
    write_record(tmp_path / "runs" / "b", other)
    code, out = run_cli("leaderboard", tmp_path / "runs", "--output", tmp_path / "rebuilt.csv",
                        "--markdown", tmp_path / "lb.md")
    assert code == 0, out
    pd.testing.assert_frame_equal(read_rows_csv(tmp_path / "rebuilt.csv"), read_rows_csv(csv_path))
    md = (tmp_path / "lb.md").read_text()
    assert "do not edit" in md and "acc/T=20*" in md and "speed" not in md
    with pytest.raises(BenchError):
        build_leaderboard([csv_path], tmp_path / "x.csv")  # a CSV is not a source of truth


# ---------------------------------------------------------------- the regression gate
@pytest.fixture()
def baseline(tmp_path):
    return write_record(tmp_path / "base", make_record(acc=0.80, acc_ci=0.02))


def _new(tmp_path, **kw):
    return write_record(tmp_path / "new", make_record(created_at="2024-07-01T00:00:00+00:00", **kw))


def test_compare_against_itself_passes(baseline):
    code, out = run_cli("compare", baseline, "--baseline", baseline)
    assert code == 0 and "PASS: 2 main metrics compared" in out


def test_compare_fails_when_main_metric_worse_beyond_ci(tmp_path, baseline):
    code, out = run_cli("compare", _new(tmp_path, acc=0.75), "--baseline", baseline)
    assert code == 1 and "REGRESSION" in out and out.strip().splitlines()[-1].startswith("FAIL: 1 of 2")


def test_compare_passes_within_ci_or_tolerance(tmp_path, baseline):
    assert run_cli("compare", _new(tmp_path, acc=0.79), "--baseline", baseline)[0] == 0
    assert run_cli("compare", _new(tmp_path, acc=0.75), "--baseline", baseline, "--tolerance", "0.1")[0] == 0
    diff, n = compare_rows(rows_of(make_record(mse=0.3)), rows_of(make_record(mse=0.1)), tolerance=0.25)
    assert n == 0
    diff, n = compare_rows(rows_of(make_record(acc=0.9)), rows_of(make_record(acc=0.8)))
    assert n == 0 and diff.set_index("metric").loc["acc/T=20", "status"] == "better"


def test_compare_ignores_non_main_metrics(tmp_path, baseline):
    diff, n = compare_rows(rows_of(make_record(speed=1.0)), rows_of(make_record(speed=100.0)))
    assert n == 0 and diff.set_index("metric").loc["speed", "status"] == "worse"
    assert run_cli("compare", _new(tmp_path, speed=1.0), "--baseline", baseline)[0] == 0


def test_compare_refuses_other_task_version_or_data(tmp_path, baseline):
    code, msg = run_cli("compare", _new(tmp_path, version=2), "--baseline", baseline)
    assert code == 2 and "v2" in msg and "v1" in msg and "\n" not in msg
    code, msg = run_cli("compare", _new(tmp_path, images="other"), "--baseline", baseline)
    assert code == 2 and "data_hash" in msg and "\n" not in msg


def test_compare_errors_when_nothing_matches(tmp_path, baseline):
    code, msg = run_cli("compare", _new(tmp_path, model="ddim"), "--baseline", baseline)
    assert code == 2 and "nothing to compare" in msg
    with pytest.raises(BenchError, match="nothing to compare"):
        compare_rows(rows_of(make_record(task="other")), rows_of(make_record()))


def test_compare_baseline_model_and_latest_baseline_run():
    new = rows_of(make_record(model="mine", acc=0.70))
    old_base = make_record(model="diffae", acc=0.60, created_at="2024-01-01T00:00:00+00:00")
    base = rows_of(old_base, make_record(model="diffae", acc=0.80))  # the later run is the baseline
    diff, n = compare_rows(new, base, baseline_model="diffae")
    assert n == 1 and set(diff["model"]) == {"mine"}
    assert diff.set_index("metric").loc["acc/T=20", "baseline"] == pytest.approx(0.80)
    with pytest.raises(BenchError, match="no rows for model 'nope'"):
        compare_rows(new, base, baseline_model="nope")


# ---------------------------------------------------------------- the gate fails closed (issue 13)
def test_compare_fails_when_a_main_metric_goes_missing(tmp_path, baseline):
    code, out = run_cli("compare", _new(tmp_path, without=("mse",)), "--baseline", baseline)
    assert code == 1 and "MISSING" in out and "missing in the new results" in out.strip().splitlines()[-1]
    # a measurement the new run did not make at all (another model) is not "missing": it was not asked for
    diff, n = compare_rows(rows_of(make_record()), rows_of(make_record(), make_record(model="ddim")))
    assert n == 0 and set(diff.loc[diff["model"] == "ddim", "status"]) == {"baseline-only"}


@pytest.mark.parametrize("change, column", [({"seed": 1}, "seed"), ({"numeric_mode": "bf16"}, "numeric_mode"),
                                            ({"weights": {"fd_cnn_shapes": {"sha256": "f" * 64}}}, "weights")])
def test_compare_refuses_other_seed_mode_or_weights(tmp_path, baseline, change, column):
    code, msg = run_cli("compare", _new(tmp_path, **change), "--baseline", baseline)
    assert code == 2 and "refusing to compare" in msg and column in msg and "\n" not in msg


def test_compare_accepts_other_cpu_kernels_statistically(tmp_path, baseline):
    """Another CPU kernel family (numerics fingerprint) is compared within CIs, not refused."""
    code, out = run_cli("compare", _new(tmp_path, cpu="AVX512", acc=0.81), "--baseline", baseline)
    assert code == 0 and "PASS" in out
    assert read_rows_csv(io.StringIO(render(rows_of(make_record(cpu="AVX512")), "csv")))["numerics"].iloc[0] \
        == "cpu-AVX512-torch2.14.1-fp32"


@pytest.mark.parametrize("new, new_ci, expected", [
    (0.45, (0.42, 0.48), "better"), (0.31, (0.28, 0.34), "ok"), (0.5, (0.47, 0.53), "better"),
    (0.25, (0.22, 0.28), "REGRESSION"),  # farther from the ideal than the baseline's CI allows
    (0.62, (0.55, 0.69), "REGRESSION"),  # copying: the new CI lies wholly above 0.5
    (0.52, (0.45, 0.59), "better"),  # above 0.5 but not significantly: no sign of copying
])
def test_gate_with_an_ideal_value(new, new_ci, expected):
    """copy_auc's ideal is 0.5: moving toward it is never a regression; away from it, or copying above it, is."""
    assert _status(new, 0.31, 0.28, 0.34, False, True, 0.0, ideal=0.5, new_ci=new_ci) == expected


def test_memorization_declares_copy_auc_ideal():
    from diffae_bench.harness.task import get_task

    assert get_task("memorization").metric("copy_auc").ideal == 0.5


def test_crash_exits_with_its_own_code(monkeypatch, capsys):
    from diffae_bench.cli import commands as cli  # main reads the module's own app

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as e:
        cli.main(["ls", "tasks"])
    assert e.value.code == cli.CRASH_EXIT_CODE not in (0, 1, 2)
    assert "a bug" in capsys.readouterr().err


def test_leaderboard_marks_records_older_than_the_tasks_code(tmp_path):
    from diffae_bench.reporting.leaderboard import markdown_by_dataset, stale_versions
    from diffae_bench.harness.task import get_task

    current = get_task("z_usage").version
    old = make_record(task="z_usage", version=current - 1 if current > 1 else 0)
    now = make_record(task="reconstruction", version=get_task("reconstruction").version)
    rows = rows_of(old, now)
    assert stale_versions(rows) == {"z_usage": ([old["task"]["version"]], current)}
    text = markdown_by_dataset(rows)
    assert text.startswith("Out of date: z_usage")
    assert f"### z_usage (v{old['task']['version']}; OUT OF DATE: the task is v{current} now)" in text
    assert f"### reconstruction (v{now['task']['version']})\n" in text  # a current task is not marked
    assert stale_versions(rows_of(make_record(task="a_plugin_task_not_installed", version=1))) == {}
