"""Issue 21: the GPU training step (training/step.py), the high-t x0 diagnostic and scripts/gpu_perf.sh.

There is no GPU here: the on-device step is exercised on the CPU (its code
path minus CUDA itself), and everything that must not change on the CPU is
checked bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffae_bench import diffusion as D
from diffae_bench.training import train as train_mod
from diffae_bench.checkpoint import load_checkpoint
from diffae_bench.data import load_dataset
from diffae_bench.models.diffae import DiffAE
from diffae_bench.errors import TrainingDiverged
from diffae_bench.models import load_model
from diffae_bench.perf.accuracy import train_loss_agreement
from diffae_bench.training.train import TrainOptions, train_autoencoder
from diffae_bench.training.step import LossLog, StepSetup
from diffae_bench.training.x0_diagnostic import X0Diagnostic, summary_lines, x0_errors

ROOT = Path(__file__).resolve().parent.parent


def _opts(tmp_path, **kw):
    base = dict(model="diffae", preset="tiny", dataset="shapes", image_size=16, train_limit=64, batch_size=8, seed=3,
                out=str(tmp_path / "run"), ckpt_every=3, device="cpu", progress=False, diag_every=0)
    return TrainOptions(**{**base, **kw})


def _same_tensors(a_dir: Path, b_dir: Path) -> tuple[dict, dict]:
    ta, ma = load_checkpoint(a_dir / "checkpoint.safetensors")
    tb, mb = load_checkpoint(b_dir / "checkpoint.safetensors")
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    return ma, mb


def test_deferred_loss_reads_change_nothing(tmp_path):
    """Reading the loss every 4 steps gives the same weights, optimizer, RNG and logged loss as every step."""
    every = train_autoencoder(_opts(tmp_path, out=str(tmp_path / "a"), steps=7))
    deferred = train_autoencoder(_opts(tmp_path, out=str(tmp_path / "b"), steps=7, log_every=4))
    ma, mb = _same_tensors(tmp_path / "a", tmp_path / "b")
    assert ma["loss_ema"] == mb["loss_ema"] and every["first_loss"] == deferred["first_loss"]
    assert mb["numerics"]["log_every"] == 4 and ma["numerics"]["log_every"] == 1
    assert mb["recipe_change"] == "batch_size 8 (preset 32)"


def _nan_at(monkeypatch, call: int):
    calls = {"n": 0}
    real_loss = DiffAE.loss

    def flaky(self, x0, generator=None):
        calls["n"] += 1
        loss = real_loss(self, x0, generator)
        return loss * float("nan") if calls["n"] == call else loss

    monkeypatch.setattr(DiffAE, "loss", flaky)


def test_a_deferred_read_still_names_the_bad_step_and_saves_nothing_after_it(tmp_path, monkeypatch):
    _nan_at(monkeypatch, 4)
    # Checkpoint at step 3 (which reads steps 1-3); the NaN of step 4 is read at step 5 (log_every 5),
    # before the step-6 checkpoint could save it.
    with pytest.raises(TrainingDiverged, match="at step 4; stopped, the last good checkpoint \\(step 3\\)"):
        train_autoencoder(_opts(tmp_path, steps=20, log_every=5))
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert meta["step"] == 3


def test_loss_log_reads_in_order():
    log = LossLog()
    for i, v in enumerate([1.0, 0.5, 0.25], 1):
        log.add(i, torch.tensor(v))
    assert log.flush(0) == 3 and log.first == 1.0
    assert log.avg == 0.98 * (0.98 * 1.0 + 0.02 * 0.5) + 0.02 * 0.25
    log.add(4, torch.tensor(float("inf")))
    with pytest.raises(TrainingDiverged, match="inf at step 4; stopped, no checkpoint was written"):
        log.flush(0)


def test_on_device_step_resumes_exactly_and_is_recorded(tmp_path, monkeypatch):
    """The GPU step's code path (device generator, fused Adam, deferred reads), run on the CPU."""
    monkeypatch.setattr(train_mod, "step_setup",
                        lambda device, mode="fp32", compile_mode=None: StepSetup(mode, compile_mode, on_device=True))
    train_autoencoder(_opts(tmp_path, out=str(tmp_path / "a"), steps=6, log_every=4))
    train_autoencoder(_opts(tmp_path, out=str(tmp_path / "b"), steps=4, log_every=4))
    train_autoencoder(_opts(tmp_path, out=str(tmp_path / "b"), steps=6, log_every=4))
    ma, mb = _same_tensors(tmp_path / "a", tmp_path / "b")
    assert mb["step"] == 6 and mb["numerics"]["fused_adam"] and mb["numerics"]["on_device"]
    assert mb["numerics"]["rng"] == "device"


def test_time_budget_stops_cleanly_and_resumes(tmp_path):
    s = train_autoencoder(_opts(tmp_path, steps=50, max_seconds=0.0))
    assert s["step"] == 1 and s["out_of_time"] and not s["interrupted"]
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert meta["step"] == 1
    assert train_autoencoder(_opts(tmp_path, steps=2))["step"] == 2


# --------------------------------------------------------------- the high-t x0 diagnostic
def _setup_x0(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((n, 3, 8, 8), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    return x0, noise, torch.from_numpy(D.alphas_cumprod(D.linear_betas()))


def test_x0_errors_oracles():
    x0, noise, ab = _setup_x0()
    ts = (300, 600, 999)
    # The true noise as the prediction recovers x0 exactly (up to float32 rounding).
    perfect = x0_errors(lambda x_t, t: noise, x0, noise, ts, ab)
    assert all(v < 1e-4 for v in perfect.values()), perfect
    # eps = 0: x0_hat = clip(x_t / sqrt(a)), computed here in float64 numpy.
    zero = x0_errors(lambda x_t, t: torch.zeros_like(x_t), x0, noise, ts, ab)
    a = D.alphas_cumprod(D.linear_betas())
    for t in ts:
        x_t = np.sqrt(a[t]) * x0.double().numpy() + np.sqrt(1 - a[t]) * noise.double().numpy()
        ref = np.abs(np.clip(x_t / np.sqrt(a[t]), -1, 1) - x0.double().numpy()).mean() / 2
        assert zero[t] == pytest.approx(ref, abs=1e-5), t
    assert zero[999] > zero[300]  # more noise, worse guess from x_t alone


def test_x0_diagnostic_on_trained_models(trained_diffae, trained_ddim, tmp_path):
    for run in (trained_diffae, trained_ddim):
        model = load_model(run["dir"])
        diag = X0Diagnostic("shapes", None, 16, tmp_path, torch.device("cpu"), n_images=8)
        rec = diag(model, step=500, images_seen=16000)
        errs = [rec["x0_mae"][str(t)] for t in (300, 600, 800, 900, 999)]
        assert all(0 <= e <= 1 for e in errs) and errs[0] < errs[-1], errs
        assert ("x0_mae_other_z" in rec) == model.has_semantic_latent
    lines = (tmp_path / "x0_diagnostic.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["split"] == "test"
    assert summary_lines(json.loads(lines[0]))[0].startswith("high-t x0 error (EMA")


def test_bf16_training_loss_and_gradient_agree_with_fp32(trained_diffae):
    """The fast path's numeric mode, on a trained model (a fresh one predicts eps = 0 in any precision)."""
    model = load_model(trained_diffae["dir"]).requires_grad_(True)
    data = load_dataset("shapes", "train", image_size=16, limit=256)
    for mode in ("bf16-cl", "bf16"):
        r = train_loss_agreement(model, data, mode, torch.device("cpu"), batch_size=16, n_batches=2)
        assert r["loss_rel_diff_max"] <= 1e-2 and r["grad_cosine_min"] >= 0.99 and r["pass"], r
    same = train_loss_agreement(model, data, "fp32", torch.device("cpu"), batch_size=16, n_batches=1)
    assert same["loss_rel_diff_max"] == 0 and same["grad_cosine_min"] == pytest.approx(1.0)


# --------------------------------------------------------------- CLI and the GPU script
@pytest.mark.slow
def test_train_cli_logs_and_prints_the_x0_diagnostic(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "diffae_bench.cli", "train", "--out", str(out), "--steps", "4",
                        "--train-limit", "16", "--batch-size", "4", "--image-size", "16", "--device", "cpu",
                        "--diag-every", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in (out / "x0_diagnostic.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in recs] == [2, 4] and set(recs[-1]["x0_mae"]) == {"300", "600", "800", "900", "999"}
    assert "high-t x0 error (EMA" in r.stdout and "t=999" in r.stdout and "with another image's code" in r.stdout


@pytest.mark.slow
def test_perf_times_the_fast_step(capsys):
    from diffae_bench.perf.throughput import run_perf

    rows = run_perf(["tiny"], ["diffae"], batch_size=2, seconds=0.01, device="cpu", modes=["fp32"], fast=True,
                    fast_mode="fp32-cl", train_batches=[2], steps_per_call=1)
    assert [r["variant"] for r in rows] == ["fp32", "fast"] and all(r["train_images_s"] > 0 for r in rows)
    assert all(r["sample_evals_s"] > 0 for r in rows)
    assert "fast" in capsys.readouterr().out


@pytest.mark.slow
def test_gpu_perf_script_smoke(tmp_path):
    """scripts/gpu_perf.sh end to end at tiny size on the CPU (GPU_PERF_SMOKE=1), as the GPU machine runs it."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_PERF_SMOKE": "1", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", "scripts/gpu_perf.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 8 and {"results.md", "summary.txt", "x0_diagnostic.jsonl"} <= set(files), files
    results = (tmp_path / "out" / "results.md").read_text()
    assert "fast" in results and "high-t x0 error" in results and "PASS" in results, results
    assert "exit 0" in results and "TIMED OUT" not in results and "SKIP" not in results, results
