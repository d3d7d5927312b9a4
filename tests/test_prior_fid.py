"""prior_fid: the code statistics core against scipy and oracles; the prior seam; the task end to end.

The FD itself is sample_fid's (tests/test_frechet.py); here the end-to-end test
checks that the default prior's row is sample_fid's `z=prior` number exactly,
so the two tasks' rows compare.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from diffae_bench.errors import BenchError
from diffae_bench.models import build_model
from diffae_bench.presets import PRESETS
from diffae_bench.harness.runner import RunOptions, run
from diffae_bench.tasks.prior_fid import code_statistics, code_statistics_ci
from diffae_bench.training.train import TrainOptions, train_autoencoder

TINY = PRESETS.get("tiny").for_data(3, 16)


def test_code_statistics_against_scipy_on_biased_correlated_bits():
    g = np.random.default_rng(0)
    base = g.random((3000, 1)) < 0.5
    codes = np.concatenate([g.random((3000, 3)) < [0.2, 0.5, 0.9],  # independent, biased
                            base ^ (g.random((3000, 2)) < 0.1)], 1).astype(float)  # two noisy copies of one bit
    out = code_statistics(codes)
    pairs = [abs(sps.pearsonr(codes[:, i], codes[:, j]).statistic) for i in range(5) for j in range(i + 1, 5)]
    assert out["bit_dependence"] == pytest.approx(np.mean(pairs), rel=1e-10)
    assert out["bit_balance"] == pytest.approx(np.mean([abs(codes[:, j].mean() - 0.5) for j in range(5)]), rel=1e-12)
    assert out["dead_bits"] == 0.0


def test_code_statistics_oracles_fair_coins_copies_and_dead_bits():
    g = np.random.default_rng(1)
    n, d = 20_000, 16
    fair = (g.random((n, d)) < 0.5).astype(float)
    out = code_statistics(fair)
    # Fair independent coins: balance ~ 0 and dependence at its finite-n floor sqrt(2 / (pi n)) (0.0056 here).
    assert out["bit_balance"] < 0.01 and out["bit_dependence"] < 2 * np.sqrt(2 / (np.pi * n)) and out["dead_bits"] == 0
    copies = np.concatenate([fair[:, :1], fair[:, :1], 1 - fair[:, :1]], 1)  # a bit, its copy, its complement
    assert code_statistics(copies)["bit_dependence"] == pytest.approx(1.0)
    dead = fair.copy()
    dead[:, :4] = 1.0  # four bits that never change
    s = code_statistics(dead)
    assert s["dead_bits"] == pytest.approx(4 / d)
    assert s["bit_balance"] == pytest.approx((4 * 0.5 + np.abs(fair[:, 4:].mean(0) - 0.5).sum()) / d)
    assert s["bit_dependence"] == pytest.approx(code_statistics(fair[:, 4:])["bit_dependence"])  # dead pairs left out
    assert np.isnan(code_statistics(np.ones((10, 3)))["bit_dependence"])
    with pytest.raises(ValueError):
        code_statistics(np.ones(5))


def test_code_statistics_ci_brackets_the_value_and_shrinks_with_n():
    g = np.random.default_rng(2)
    codes = (g.random((4000, 8)) < np.linspace(0.1, 0.9, 8)).astype(float)
    width = {}
    for n in (400, 4000):
        value, ci = code_statistics(codes[:n]), code_statistics_ci(codes[:n], n_boot=200, seed=0)
        assert ci["bit_balance"][0] <= value["bit_balance"] <= ci["bit_balance"][1]
        width[n] = ci["bit_balance"][1] - ci["bit_balance"][0]
    assert width[4000] < width[400] / 2


def test_sampling_with_restores_the_prior_mode_even_on_error():
    model = build_model("dmz", TINY).eval()
    prior = model.prior
    assert prior.modes == ("bernoulli", "empirical", "codes")
    with prior.sampling_with("codes"):
        assert model.describe()["prior"] == "codes"  # the samples cache and the record see the mode
    assert prior.mode == "bernoulli"
    with pytest.raises(RuntimeError), prior.sampling_with("empirical"):
        raise RuntimeError("a failing task")
    assert prior.mode == "bernoulli"
    with pytest.raises(BenchError, match="offers: bernoulli, empirical, codes"):
        with prior.sampling_with("gaussian"):
            pass
    assert build_model("diffae", TINY).prior.modes == ()  # the latent DDIM is one fixed prior
    assert build_model("ddim", TINY).prior is None


@pytest.mark.slow  # trains a model for 100 steps (~10 s) and a feature net for 40
def test_prior_fid_end_to_end_matches_sample_fid_on_the_default_prior(tmp_path):
    model_dir = tmp_path / "dmz"
    # 100 steps at lr 2e-3 open the zero-initialised output convs, so the decoder reads its bits
    # (tests/test_baselines.py's trained_dmz): the priors' codes then make different samples.
    train_autoencoder(TrainOptions(model="dmz", preset="tiny", image_size=16, steps=100, batch_size=32, lr=2e-3,
                                   train_limit=256, device="cpu", out=str(model_dir), progress=False))
    ddim_dir = tmp_path / "ddim"
    train_autoencoder(TrainOptions(model="ddim", preset="tiny", image_size=16, steps=1, batch_size=8, train_limit=64,
                                   device="cpu", out=str(ddim_dir), progress=False))
    net = {"feature_net.steps": 40, "feature_net.n_train": 500, "feature_net.n_test": 100}
    opts = {"prior_fid": {"n_samples": 24, "T": (5,), "n_boot": 20, **net},
            "sample_fid": {"n_samples": 24, "T": (5,), "n_boot": 20, **net}}
    out, _ = run(RunOptions(tasks=("prior_fid", "sample_fid"), models=(str(model_dir), str(ddim_dir)),
                            out=str(tmp_path / "out"), device="cpu", cache_dir=str(tmp_path / "cache"), limit=120,
                            progress=False, task_options=opts))
    rec = json.loads((out / "prior_fid__dmz__shapes.json").read_text())
    values = {m["key"]: m for m in rec["metrics"]}
    assert set(values) == {"bit_balance", "bit_dependence", "dead_bits",
                           *(f"fd_cnn/T=5/prior={p}" for p in ("bernoulli", "empirical", "codes"))}
    assert values["bit_balance"]["n"] == 120 and values["fd_cnn/T=5/prior=codes"]["n"] == 24
    assert all(m["ci_low"] <= m["ci_high"] for m in rec["metrics"])
    # The default prior's row is sample_fid's z=prior row: same samples (per-item seeds), same real set.
    sample_fid = json.loads((out / "sample_fid__dmz__shapes.json").read_text())
    same = next(m for m in sample_fid["metrics"] if m["key"] == "fd_cnn/T=5/z=prior")
    assert values["fd_cnn/T=5/prior=bernoulli"]["value"] == same["value"]
    # The priors draw different codes, and the decoder reads them, so the samples differ.
    fds = [values[f"fd_cnn/T=5/prior={p}"]["value"] for p in ("bernoulli", "empirical", "codes")]
    assert len(set(fds)) == 3, fds
    assert rec["figures"] == ["prior_fid__dmz__samples_by_prior.png"] and (out / rec["figures"][0]).exists()
    # No mode leaks out of the task: sample_fid, run after it on the same model object, says the paper's prior.
    assert sample_fid["model"]["describe"]["prior"] == rec["model"]["describe"]["prior"] == "bernoulli"
    ddim = json.loads((out / "prior_fid__ddim__shapes.json").read_text())
    assert ddim["metrics"] == [] and any("no choice of sampling mode" in n for n in ddim["notes"])
