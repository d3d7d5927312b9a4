"""The committed reference models: manifest integrity, CPU loading, and the CI regression subset.

`check` re-evaluates a fast fixed subset of tasks on the committed checkpoints and
gates it against results/ci (bench compare + exact reproduction), so a change to a
task, sampler or metric that moves a number fails here unless the task's version was
bumped and results/ci regenerated (python -m diffae_bench.references regenerate).
"""

from __future__ import annotations

import json
import shutil

import pytest

from diffae_bench.checkpoint import file_sha256
from diffae_bench.models import load_model
from diffae_bench.models.registry import checkpoint_id
from diffae_bench.references import (CI_DIR, CPU_KERNELS, DATASETS, EXACT_DIR, MODELS_DIR, OPENBLAS_CORE, REFERENCES,
                                     ROOT, check, exact_baseline, lane_env, moved, numerics_id,
                                     numpy_avx512_targets)

MANIFEST = json.loads((MODELS_DIR / "manifest.json").read_text())["models"]


@pytest.mark.parametrize("name", [r[0] for r in REFERENCES])
def test_manifest_matches_the_committed_files_and_models_load_on_cpu(name):
    entry = MANIFEST[name]
    for fname, info in entry["files"].items():
        path = MODELS_DIR / name / fname
        assert file_sha256(path) == info["sha256"] and path.stat().st_size == info["bytes"]
        assert info["bytes"] <= 10.5e6  # "at most ~10 MB each"
    assert entry["images_seen"] > 0 and entry["seed"] == 0 and entry["train_commands"][0].startswith("bench train")
    model = load_model(MODELS_DIR / name, "cpu", require_latent=entry["model"] == "diffae")
    assert next(model.parameters()).dtype.is_floating_point and model.image_shape == (3 if "shapes" in name else 1, 32, 32)
    # The id records carry is the manifest's files' (pages check records against manifests through it).
    shas = [entry["files"][f]["sha256"] for f in ("checkpoint.safetensors", "latent.safetensors") if f in entry["files"]]
    assert len(shas) == (2 if entry["model"] == "diffae" else 1)
    assert model.checkpoint_sha256 == checkpoint_id(shas)


def test_every_leaderboard_record_is_of_the_committed_model():
    """A record under results/records that names a reference carries that committed model's fingerprint
    (checkpoint sha256; with Diff-AE's latent file, the registry's combined one), so replacing a model
    without re-evaluating it, or keeping a replaced model's records, fails here (issue 21)."""
    fingerprints = {name: load_model(MODELS_DIR / name, "cpu").checkpoint_sha256 for name, _, _ in REFERENCES}
    checked = stale = 0
    for path in sorted((ROOT / "results" / "records").rglob("*.json")):
        model = json.loads(path.read_text()).get("model")
        if not isinstance(model, dict) or model.get("label") not in fingerprints:
            continue  # run.json and other files that are not task records
        checked += 1
        if model.get("checkpoint_sha256") != fingerprints[model["label"]]:
            stale += 1
            print(f"{path}: {model['label']} {str(model.get('checkpoint_sha256'))[:12]} != committed "
                  f"{fingerprints[model['label']][:12]}")
    assert checked >= 10 * len(REFERENCES) and stale == 0


def test_moved_values_are_reported(tmp_path):
    data = DATASETS[0]
    shutil.copytree(CI_DIR / data, tmp_path / "new")
    rec_path = next(p for p in sorted((tmp_path / "new").glob("reconstruction__*.json")))
    rec = json.loads(rec_path.read_text())
    rec["metrics"][0]["value"] *= 1.01
    rec_path.write_text(json.dumps(rec))
    out = moved(tmp_path / "new", CI_DIR / data)
    assert len(out) == 1 and rec["metrics"][0]["key"] in out[0]
    assert moved(CI_DIR / data, CI_DIR / data) == []
    # the exact baseline of the committed run's own fingerprint holds the same values
    assert moved(CI_DIR / data, exact_baseline(numerics_id(CI_DIR / data), data)) == []


def test_exact_baselines_exist_for_both_cpu_kernel_families():
    ids = {p.stem for p in EXACT_DIR.glob("*.json")}
    assert {i.split("-")[1] for i in ids} >= {"AVX2"}, ids
    for i in ids:
        assert set(json.loads((EXACT_DIR / f"{i}.json").read_text())) == set(DATASETS)


@pytest.mark.slow
def test_avx2_lane_really_runs_avx2_kernels():
    """The env that CI's second lane sets makes ATen dispatch to AVX2 kernels on any x86 CPU (issue 13)."""
    import os
    import subprocess
    import sys

    code = ("import torch; from diffae_bench.numerics import blas_kernels, mkl_branch; "
            "from numpy._core._multiarray_umath import __cpu_features__ as f; "
            "print(torch.backends.cpu.get_cpu_capability(), blas_kernels(), mkl_branch(), f.get('X86_V4', False))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **lane_env("avx2")}, capture_output=True,
                         text=True, check=True)
    aten, blas, mkl, numpy_v4 = out.stdout.split()
    assert aten == "AVX2" and numpy_v4 == "False"  # numpy's ufuncs: AVX2 code too
    if mkl.startswith("mkl-intel"):  # oneMKL capped to AVX2 on Intel; AMD CPUs run its generic path anyway
        assert mkl == "mkl-intel-AVX2"
    if blas.startswith("openblas-"):  # numpy's BLAS runs the AVX2 machines' kernels too
        assert blas == "openblas-Haswell"


def test_lanes_pin_openblas_to_their_kernel_family(monkeypatch):
    """Two machines that ATen calls AVX512 may load different OpenBLAS kernels: each lane names them (x86)."""
    import diffae_bench.numerics as N

    if not N.is_x86():
        pytest.skip("OpenBLAS core types are x86 names")
    npy = {"NPY_DISABLE_CPU_FEATURES": " ".join(numpy_avx512_targets())} if numpy_avx512_targets() else {}
    assert lane_env("avx2") == {**CPU_KERNELS["avx2"], "OPENBLAS_CORETYPE": "Haswell", **npy}
    assert lane_env("avx2")["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    for family, core in OPENBLAS_CORE.items():
        monkeypatch.setattr(N, "cpu_capability", lambda family=family: family)
        assert lane_env("native") == {"OPENBLAS_CORETYPE": core}
    monkeypatch.setattr(N, "cpu_capability", lambda: "DEFAULT")
    assert lane_env("native") == {}


@pytest.mark.slow
@pytest.mark.parametrize("kernels", list(CPU_KERNELS))
def test_reference_subset_passes_the_gate_on_both_cpu_kernel_families(tmp_path, kernels):
    """Statistically on any machine; exactly where results/ci/exact has this numerics fingerprint."""
    assert check(tmp_path / "out", cache_dir=tmp_path / "cache", quiet=True, kernels=kernels) == 0


