"""The Python API and the CLI's conventions (issue 16, parts 2 and 3)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffae_bench import evaluate
from diffae_bench.api import Results, _names
from diffae_bench.errors import BenchError

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"reconstruction": {"n_images": 4, "lpips": False, "random_xT": False}}


def bench(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "diffae_bench.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_task_names_are_never_split_into_letters():
    assert _names("reconstruction", "task") == ("reconstruction",)
    assert _names("reconstruction, linear_probe", "task") == ("reconstruction", "linear_probe")
    assert _names(["reconstruction"], "task") == ("reconstruction",)
    with pytest.raises(BenchError, match="no task"):
        _names([], "task")


def test_evaluate_an_in_memory_model_writes_nothing(tmp_path, monkeypatch):
    """An nn.Module implementing the interface is evaluated as it is; no file appears anywhere."""
    from diffae_bench.models import build_model
    from diffae_bench.presets import PRESETS

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFAE_BENCH_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = build_model("ddim", PRESETS.get("tiny").for_data(3, 16))
    model.label = "my-ddim"
    res = evaluate(model, tasks="reconstruction", dataset="shapes", T=10, limit=4, task_options=QUICK, device="cpu")
    assert isinstance(res, Results) and res.run_dir is None and len(res.records) == 1
    rec = res.records[0]
    assert rec["model"]["label"] == "my-ddim" and rec["task"]["config"]["T"] == [10]
    df = res.to_frame()
    assert set(df["metric"]) == {"ssim/T=10/xT=inferred", "mse/T=10/xT=inferred", "psnr/T=10/xT=inferred"}
    assert "my-ddim" in res.table() and res.compare(res).ok
    assert list(tmp_path.iterdir()) == []  # no run directory, no cache, no figure


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python example, executed as written (only the sizes made smaller)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(from diffae_bench import evaluate\n.*?)```", readme, re.S)
    assert block, "the README has a Python example starting with `from diffae_bench import evaluate`"
    code = block.group(1).replace("limit=200", "limit=8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFAE_BENCH_CACHE", str(tmp_path / "cache"))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert isinstance(scope["results"], Results) and scope["results"].records
    assert (tmp_path / "runs" / "api-example" / "run.json").is_file()  # out= given: written


def test_version_and_json_listing():
    from diffae_bench import __version__

    r = bench("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"diffae-bench {__version__}" and __version__ != "unknown"
    r = bench("ls", "models", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert {m["name"] for m in json.loads(r.stdout)} >= {"diffae", "ddim", "dmz"}


@pytest.mark.slow
def test_run_json_output_notes_once_and_command_recorded(trained_diffae, tmp_path):
    args = ["run", "--task", "reconstruction,z_usage", "--model", trained_diffae["dir"], "--limit", "4", "--T", "10",
            "--set", "reconstruction.n_images=4", "--set", "reconstruction.lpips=true", "--device", "cpu",
            "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--format", "json"]
    env = {**__import__("os").environ, "TORCH_HOME": str(tmp_path / "no-weights")}  # LPIPS absent: a note
    r = bench(*args, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # stdout is JSON alone
    assert {rec["task"]["name"] for rec in out["records"]} == {"reconstruction", "z_usage"}
    assert "it/s" not in r.stderr and "batch/s" not in r.stderr  # no progress bars when stderr is not a terminal
    assert r.stderr.count("LPIPS not computed") == 1
    assert "task z_usage takes no T" in r.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["command"].startswith("bench run --task reconstruction,z_usage")


def test_compare_json(tmp_path):
    r = bench("compare", ROOT / "results" / "ci" / "shapes", "--baseline", ROOT / "results" / "ci" / "shapes",
              "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["regressions"] == 0 and out["rows"] and "PASS" in out["verdict"]


def test_renamed_options_still_work_with_a_warning(tmp_path):
    r = bench("table", ROOT / "results" / "ci" / "shapes", "--out", tmp_path / "t.txt")
    assert r.returncode == 0 and "deprecated" in r.stderr and (tmp_path / "t.txt").is_file()
    r = bench("train", "--model", "difae", "--out", tmp_path / "x", "--steps", "1")
    assert r.returncode == 2 and "--kind" in r.stderr and "did you mean 'diffae'" in r.stderr
