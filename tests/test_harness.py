"""`bench run` end to end on tiny trained models: records, table, leaderboard, cache, regression gate, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from diffae_bench.harness.cache import Cache
from diffae_bench.harness.context import EvalContext
from diffae_bench.models import load_model
from diffae_bench.numerics import numerics_fingerprint
from diffae_bench.harness.task import get_task, task_names

QUICK = ["--limit", "24", "--T", "10", "--set", "linear_probe.few_shot_k=3",
         "--quiet", "--device", "cpu"]


def bench(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "diffae_bench.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


def records_in(run_dir):
    return {p.name: json.loads(p.read_text()) for p in sorted(run_dir.glob("*.json")) if p.name != "run.json"}


@pytest.fixture(scope="module")
def two_runs(trained_diffae, trained_ddim, tmp_path_factory):
    """The same `bench run` twice (second from the cache) on the tiny Diff-AE and DDIM."""
    root = tmp_path_factory.mktemp("bench")
    models = f"{trained_diffae['dir']},{trained_ddim['dir']}"
    # --threads: the tests' own thread count, so the records' numerics fingerprint is this process's
    common = ["run", "--task", "reconstruction,linear_probe", "--model", models, "--cache-dir", root / "cache",
              "--leaderboard", root / "leaderboard.csv", "--threads", str(torch.get_num_threads()), *QUICK]
    first = bench(*common, "--out", root / "run1")
    second = bench(*common, "--out", root / "run2")
    return root, first, second


def test_run_writes_records_with_provenance(two_runs, trained_diffae):
    root, first, _ = two_runs
    assert first.returncode == 0, first.stderr
    recs = records_in(root / "run1")
    assert len(recs) == 4  # 2 tasks x 2 models
    rec = recs["reconstruction__diffae__shapes.json"]
    assert rec["task"] == {**rec["task"], "name": "reconstruction", "version": 2}
    assert rec["task"]["config"]["T"] == [10]
    assert rec["model"]["checkpoint_sha256"] == load_model(trained_diffae["dir"]).checkpoint_sha256
    assert rec["dataset"]["splits"]["test"]["n_used"] == 24 and len(rec["dataset"]["splits"]["test"]["content_hash"]) == 64
    assert rec["environment"]["torch"].startswith("2.") and "commit" in rec["git"] and rec["seed"] == 0
    assert rec["numeric_mode"] == "fp32" and rec["wall_s"] > 0
    assert rec["numerics"]["id"] == numerics_fingerprint("cpu", "fp32")["id"]  # device, CPU kernels, threads, torch, mode
    n = torch.get_num_threads()
    assert rec["numerics"]["threads"] == n and rec["device"].endswith(f" x{n} threads")
    keys = {m["key"] for m in rec["metrics"]}
    assert {"ssim/T=10/xT=inferred", "mse/T=10/xT=random", "psnr/T=10/xT=inferred"} <= keys
    for m in rec["metrics"]:
        assert m["ci_low"] <= m["value"] <= m["ci_high"], m
    assert any("LPIPS" in n for n in rec["notes"]) or rec["pretrained_weights"]  # absent weights are said, not faked
    assert (root / "run1" / "reconstruction__diffae__reconstructions.png").is_file()
    ddim = recs["reconstruction__ddim__shapes.json"]
    assert not any("random" in m["key"] for m in ddim["metrics"])  # no z_sem: no random-x_T reconstruction
    probe = recs["linear_probe__ddim__shapes.json"]
    assert {m["params"].get("rep") for m in probe["metrics"]} == {"x_T", "pixels", "random_proj"}
    assert "diffae" in first.stdout and "ddim" in first.stdout and "mean_auroc" in first.stdout
    assert json.loads((root / "run1" / "run.json").read_text())["models"] == ["diffae", "ddim"]


def test_leaderboard_rows_from_both_runs(two_runs):
    root, first, second = two_runs
    lb = pd.read_csv(root / "leaderboard.csv")
    n_metrics = sum(len(r["metrics"]) for r in records_in(root / "run1").values())
    # the second run measured the same things: its rows replace the first's, never duplicate them
    assert len(lb) == n_metrics and set(lb["model"]) == {"diffae", "ddim"}
    assert set(lb["numerics"]) == {numerics_fingerprint("cpu", "fp32")["id"]}


def test_second_run_is_served_from_the_cache(two_runs):
    root, first, second = two_runs
    assert second.returncode == 0, second.stderr
    r1, r2 = records_in(root / "run1"), records_in(root / "run2")
    for name in r1:
        assert r2[name]["cache"]["misses"] == 0 and r2[name]["cache"]["hits"] > 0, name
        assert r1[name]["metrics"] == r2[name]["metrics"]  # same numbers
    # the first run did compute what the second was served (speed is measured by scripts, not timed tests)
    assert all(r["cache"]["misses"] > 0 for r in r1.values())


def test_compare_passes_against_itself_and_fails_against_a_better_baseline(two_runs, tmp_path):
    root, _, _ = two_runs
    ok = bench("compare", root / "run2", "--baseline", root / "leaderboard.csv")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lb = pd.read_csv(root / "leaderboard.csv")
    better = lb.copy()
    hit = (better["model"] == "diffae") & (better["metric"] == "ssim/T=10/xT=inferred")
    better.loc[hit, ["value", "ci_low", "ci_high"]] = [0.99, 0.98, 1.0]  # a baseline the new run is far worse than
    better.to_csv(tmp_path / "better.csv", index=False)
    bad = bench("compare", root / "run2", "--baseline", tmp_path / "better.csv")
    assert bad.returncode == 1 and "REGRESSION" in bad.stdout, bad.stdout + bad.stderr
    other = lb.copy()
    other["task_version"] = 99
    other.to_csv(tmp_path / "other.csv", index=False)
    refused = bench("compare", root / "run2", "--baseline", tmp_path / "other.csv")
    assert refused.returncode == 2 and "refusing" in refused.stderr


def test_changed_checkpoint_never_reuses_the_cache(trained_diffae, tmp_path):
    model = load_model(trained_diffae["dir"])
    cache = Cache(tmp_path)
    ctx = lambda m: EvalContext(model=m, dataset_name="shapes", cache=cache, progress=False)
    z1 = ctx(model).z("test", 4)
    assert (cache.hits, cache.misses) == (0, 1)
    torch.testing.assert_close(ctx(model).z("test", 4), z1)
    assert (cache.hits, cache.misses) == (1, 1)
    with torch.no_grad():
        next(model.encoder.parameters()).add_(0.01)
    model.checkpoint_sha256 = None  # weights changed in memory: the fingerprint hashes them
    ctx(model).z("test", 4)
    assert cache.misses == 2


def test_every_task_declares_version_config_and_main_metric():
    for name in task_names():
        cls = get_task(name)
        assert isinstance(cls.version, int) and cls.Config.__dataclass_params__.frozen
        assert any(m.main for m in cls.metrics)


@pytest.mark.parametrize("args,expect", [
    (["--task", "reconstrution", "--model", "x"], "did you mean 'reconstruction'"),
    (["--task", "reconstruction", "--model", "diffae"], "is a model kind"),
    (["--task", "reconstruction", "--model", "/no/such/run"], "no trained model"),
    (["--task", "reconstruction", "--model", "RUN", "--set", "reconstruction.n_imges=3"], "did you mean 'n_images'"),
    (["--task", "reconstruction", "--model", "RUN", "--dataset", "shapez"], "did you mean 'shapes'"),
    (["--task", "reconstruction", "--model", "RUN", "--limit", "1"], "at least 2 needed"),
    (["--task", "reconstruction", "--model", "RUN", "--threads", "0"], "threads must be >= 1"),
])
def test_run_bad_input_is_one_line_and_writes_no_record(trained_diffae, tmp_path, args, expect):
    args = [str(trained_diffae["dir"]) if a == "RUN" else a for a in args]
    r = bench("run", *args, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--quiet", "--device", "cpu")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and expect in r.stderr, r.stderr
    assert not list((tmp_path / "out").glob("*.json")) if (tmp_path / "out").exists() else True


def test_dataset_without_attributes_is_refused_before_work(trained_diffae, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(40):  # enough that the hash split puts some in each split
        Image.fromarray(np.full((16, 16, 3), i * 6, np.uint8)).save(folder / f"{i}.png")
    r = bench("run", "--task", "linear_probe", "--model", trained_diffae["dir"], "--dataset", "imagefolder",
              "--data-root", folder, "--out", tmp_path / "out", "--quiet", "--device", "cpu")
    assert r.returncode == 2 and "needs binary attributes" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_adhoc_variant_through_module_factory(trained_diffae, tmp_path):
    """How a researcher regression-tests a new variant without packaging it."""
    (tmp_path / "myvariant.py").write_text(textwrap.dedent(f"""
        from diffae_bench.models import load_model

        def make():
            return load_model({str(trained_diffae['dir'])!r})
    """))
    r = bench("run", "--task", "reconstruction", "--model", "myvariant:make", "--out", tmp_path / "out",
              "--cache-dir", tmp_path / "cache", "--set", "reconstruction.n_images=4", "--T", "10", "--quiet",
              "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "out" / "reconstruction__myvariant_make__shapes.json").read_text())
    assert rec["model"]["label"] == "myvariant:make" and rec["model"]["kind"] == "diffae"


def test_other_packages_register_through_entry_points(monkeypatch):
    """Plugins load lazily by name; a broken one is reported by name; a built-in's name is refused."""
    from diffae_bench import registry as registry_mod
    from diffae_bench.errors import BenchError

    class Plugin:
        name = "my_task"

    class EntryPoint:
        def __init__(self, name, value, load):
            self.name, self.value, self.group, self._load = name, value, "diffae_bench.tasks", load

        def load(self):
            return self._load()

    def broken():
        raise ImportError("No module named 'their_dependency'")

    eps = [EntryPoint("my_task", "pkg:Plugin", lambda: Plugin), EntryPoint("broken_task", "pkg2:Task", broken),
           EntryPoint("reconstruction", "pkg3:Recon", lambda: Plugin)]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: eps if group == "diffae_bench.tasks" else [])
    reg = registry_mod.Registry("task", group="diffae_bench.tasks",
                                builtins={"reconstruction": "diffae_bench.tasks.reconstruction:TASK"})
    assert reg.get("my_task") is Plugin
    with pytest.raises(BenchError, match="task plugin 'broken_task' .pkg2:Task. failed to load: ImportError"):
        reg.get("broken_task")
    assert "broken_task" not in reg.names() and "my_task" in reg.names()  # the others keep working
    with pytest.raises(BenchError, match="uses the built-in task name 'reconstruction'"):
        reg.get("reconstruction")
    assert set(reg.load_all()) == {"my_task"}


def test_codes_keep_the_models_order_when_served_from_the_cache(tmp_path):
    """Tasks iterate over codes (and draw random labelled sets in that order): cached must equal fresh."""
    from diffae_bench.models import build_model
    from diffae_bench.presets import PRESETS

    torch.manual_seed(0)
    model = build_model("dmz", PRESETS.get("tiny").for_data(3, 16)).eval()
    fresh = EvalContext(model, "shapes", cache=Cache(tmp_path), progress=False).codes("test", 8)
    served = EvalContext(model, "shapes", cache=Cache(tmp_path), progress=False).codes("test", 8)
    order = list(model.representations(torch.zeros(1, 3, 16, 16)))
    assert list(fresh) == list(served) == order == ["soft", "hard"]
    assert all(torch.equal(fresh[k], served[k]) for k in order)


# ---------------------------------------------------------------- no stale result, no batch-size dependence (issue 13)
VARIANT = """
from diffae_bench.models.diffae import DiffAE
from diffae_bench.models import load_model

SCALE = {scale}


class Variant(DiffAE):
    def decode(self, z, x_T, T):
        return super().decode(z, x_T, T) * SCALE


def make():
    model = load_model({path!r})
    model.__class__ = Variant
    return model
"""


def test_a_changed_decode_is_never_served_stale_decodes(trained_diffae, tmp_path):
    """The same checkpoint behind changed model code must recompute (the cache keys hold the code's hash)."""
    args = ["run", "--task", "reconstruction", "--model", "variant:make", "--cache-dir", tmp_path / "cache",
            "--set", "reconstruction.n_images=4", "--T", "10", "--quiet", "--device", "cpu"]
    values = []
    for i, scale in enumerate((1.0, 0.5)):
        (tmp_path / "variant.py").write_text(VARIANT.format(scale=scale, path=str(trained_diffae["dir"])))
        r = bench(*args, "--out", tmp_path / f"out{i}", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        rec = json.loads((tmp_path / f"out{i}" / "reconstruction__variant_make__shapes.json").read_text())
        values.append({m["key"]: m["value"] for m in rec["metrics"]})
        assert rec["cache"]["misses"] > 0  # computed, not served
    assert values[0]["mse/T=10/xT=inferred"] != values[1]["mse/T=10/xT=inferred"]


def test_the_model_code_hash_names_modules_not_checkout_paths(tmp_path, monkeypatch):
    """One plugin file in two clones keys alike (a shared cache serves it); a changed file keys anew."""
    import importlib.util
    import sys

    from diffae_bench.harness.context import model_code_hash

    def hash_of(folder, scale):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "variant.py").write_text(VARIANT.format(scale=scale, path="unused"))
        spec = importlib.util.spec_from_file_location("variant", folder / "variant.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "variant", module)  # inspect finds a class's file through sys.modules
        spec.loader.exec_module(module)
        return model_code_hash(module.Variant.__new__(module.Variant))

    here, clone = hash_of(tmp_path / "checkout", 1.0), hash_of(tmp_path / "elsewhere" / "clone", 1.0)
    assert here == clone
    assert hash_of(tmp_path / "elsewhere" / "clone", 0.5) != here


def test_cache_keys_hold_the_suites_code_libraries_and_weights(tmp_path, monkeypatch):
    import shutil

    from diffae_bench.harness import cache as C

    root = Path(C.__file__).resolve().parents[2]
    for d in C.SOURCE_DIRS:
        shutil.copytree(root / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    before = C.source_hash(tmp_path)
    assert before == C.source_hash(root)  # the copy hashes like the checkout
    sampler = tmp_path / "diffae_bench" / "diffusion.py"
    sampler.write_text(sampler.read_text().replace("def ddim_sample(", "def ddim_sample(  ", 1))
    C.source_hash.cache_clear()
    assert C.source_hash(tmp_path) != before  # a changed sampler is another identity
    key = Cache.key("x_T", {"n": 4})
    identity = C.environment_identity()
    assert set(identity) == {"source", "libraries", "cpu_capability", "mkl", "blas", "threads", "weights"}
    assert set(identity["libraries"]) >= {"torch", "scikit-learn", "torch-fidelity"}
    assert set(identity["weights"]) == {"alexnet-owt-7be5be79.pth", "weights-inception-2015-12-05-6726825d.pth"}
    for part, value in [("source", "0" * 64), ("cpu_capability", "AVX2" if identity["cpu_capability"] != "AVX2" else "X"),
                        ("mkl", "mkl-intel-AVX512" if identity["mkl"] != "mkl-intel-AVX512" else "mkl-amd"),
                        ("blas", identity["blas"] + "-other"), ("threads", identity["threads"] + 1), ("weights", {"alexnet-owt-7be5be79.pth": "f" * 64})]:
        monkeypatch.setattr(C, "environment_identity", lambda: {**identity, part: value})
        assert Cache.key("x_T", {"n": 4}) != key, part
    monkeypatch.undo()
    assert Cache.key("x_T", {"n": 4}) == key


def test_samples_and_noise_do_not_depend_on_batch_size_or_n(trained_diffae, tmp_path):
    """The random draws are identical; the network's arithmetic may round differently when a kernel picks another
    algorithm for another batch shape, so samples agree to float noise (bit for bit where the shapes match)."""
    model = load_model(trained_diffae["dir"])
    ctx = lambda bs: EvalContext(model=model, dataset_name="shapes", batch_size=bs, cache=Cache(enabled=False),
                                 progress=False)
    assert torch.equal(ctx(8).noise(12, "s")[:5], ctx(64).noise(5, "s"))  # image i's x_T whatever n or batch
    a, b = ctx(8).samples(12, 5, 5), ctx(64).samples(12, 5, 5)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(ctx(4).samples(5, 5, 5), a[:5], rtol=0, atol=1e-5)  # sample i whatever n
    other_seed = EvalContext(model=model, dataset_name="shapes", seed=1, cache=Cache(enabled=False), progress=False)
    assert (other_seed.samples(5, 5, 5) - a[:5]).abs().max() > 0.1  # other draws are other images, not float noise


@pytest.mark.parametrize("model", ["diffae", "ddim"])
def test_records_do_not_depend_on_batch_size(trained_diffae, trained_ddim, tmp_path, model):
    path = {"diffae": trained_diffae, "ddim": trained_ddim}[model]["dir"]
    values = []
    for bs in (8, 64):
        out = tmp_path / f"bs{bs}"
        r = bench("run", "--task", "reconstruction,memorization,linear_probe", "--model", path, "--out", out,
                  "--no-cache", "--batch-size", bs, "--set", "memorization.T=5", "--set", "memorization.T_latent=5",
                  "--set", "memorization.n_samples=20", *QUICK)
        assert r.returncode == 0, r.stderr
        values.append({(name, m["key"]): (m["value"], m["ci_low"], m["ci_high"])
                       for name, rec in records_in(out).items() for m in rec["metrics"]})
    assert values[0].keys() == values[1].keys()
    for key, triple in values[0].items():  # the same numbers up to float rounding of the network's kernels
        for a, b in zip(triple, values[1][key]):
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-5, abs=1e-6, nan_ok=True), key
