"""z_usage: the pure scoring core against numpy / scipy, model oracles through the task, and `bench run` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import bootstrap

from diffae_bench import diffusion as D
from diffae_bench.harness.cache import Cache
from diffae_bench.harness.context import EvalContext
from diffae_bench.errors import BenchError
from diffae_bench.models import DiffusionAutoencoder
from diffae_bench.models import build_model
from diffae_bench.presets import PRESETS
from diffae_bench.harness.task import get_task
from diffae_bench.tasks.z_usage import ZUsageConfig, fixed_derangement, score_z_usage

SIZE = 16  # shapes at 16 px: the oracles need no training, only images


# -- pure core -----------------------------------------------------------------------
def test_gap_is_the_relative_difference_of_mean_losses_with_joint_bootstrap():
    rng = np.random.default_rng(0)
    own = rng.gamma(2.0, 0.05, (200, 3))
    shuffled = own * np.array([1.0, 1.5, 3.0]) + rng.gamma(2.0, 0.01, (200, 3))
    out = score_z_usage(own, shuffled, seed=0)
    expect = (shuffled.mean(0) - own.mean(0)) / own.mean(0)
    np.testing.assert_allclose([g for g, _ in out["gap"]], expect, rtol=1e-12)
    np.testing.assert_allclose(out["mean_gap"][0], expect.mean(), rtol=1e-12)
    np.testing.assert_allclose([v for v, _ in out["loss_own"]], own.mean(0), rtol=1e-12)
    # The CI against scipy's paired percentile bootstrap of the same statistic (other resamples: loose).
    for j in range(3):
        ref = bootstrap((own[:, j], shuffled[:, j]), lambda o, s, axis=-1: (s.mean(axis) - o.mean(axis)) / o.mean(axis),
                        paired=True, vectorized=True, n_resamples=4000, method="percentile",
                        random_state=np.random.default_rng(1)).confidence_interval
        lo, hi = out["gap"][j][1]
        width = ref.high - ref.low
        assert abs(lo - ref.low) < 0.15 * width and abs(hi - ref.high) < 0.15 * width, (j, (lo, hi), ref)
        assert lo <= expect[j] <= hi


def test_identical_arms_give_zero_and_exchangeable_arms_a_ci_around_zero():
    rng = np.random.default_rng(1)
    own = rng.gamma(2.0, 0.05, (300, 4))
    same = score_z_usage(own, own.copy(), seed=0)
    assert all(g == 0 and ci == (0.0, 0.0) for g, ci in same["gap"]) and same["mean_gap"] == (0.0, (0.0, 0.0))
    noise = score_z_usage(own, rng.gamma(2.0, 0.05, (300, 4)), seed=0)  # same distribution, unrelated draws
    for g, (lo, hi) in noise["gap"] + [noise["mean_gap"]]:
        assert lo < 0 < hi and abs(g) < 0.2


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        score_z_usage(np.ones((5, 2)), np.ones((5, 3)))
    with pytest.raises(ValueError):
        score_z_usage(np.ones((1, 2)), np.ones((1, 2)))


def test_fixed_derangement_moves_every_image():
    for n in (2, 3, 10, 257):
        perm = fixed_derangement(n, seed=n)
        assert sorted(perm) == list(range(n)) and (perm != np.arange(n)).all()
    np.testing.assert_array_equal(fixed_derangement(50, 0), fixed_derangement(50, 0))
    with pytest.raises(ValueError):
        fixed_derangement(1, 0)


# -- oracle models through the task ---------------------------------------------------------
class _Oracle(DiffusionAutoencoder):
    """Codes are the clean pixels; the denoiser reads x0 from z (scaled by `trust`) or ignores z (trust 0)."""

    kind = "oracle"
    latent_type = "continuous"

    def __init__(self, trust: float):
        super().__init__()
        self.trust = trust
        self.z_dim = 3 * SIZE * SIZE
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a device
        self.alpha_bar = torch.from_numpy(D.alphas_cumprod(D.linear_betas())).float()

    @property
    def image_shape(self):
        return (3, SIZE, SIZE)

    def encode(self, x0):
        return x0.flatten(1)

    def denoise(self, x_t, t, z=None):
        # eps = (x_t - sqrt(a) x0) / sqrt(1 - a), with x0 guessed as trust * z (0 when z is ignored)
        a = self.alpha_bar[t.cpu()].view(-1, 1, 1, 1).to(x_t)
        return (x_t - a.sqrt() * self.trust * z.view(-1, *self.image_shape)) / (1 - a).sqrt()

    def encode_stochastic(self, x0, T, z=None):
        raise NotImplementedError

    def decode(self, z, x_T, T):
        raise NotImplementedError


def _run(model, tmp_path, **cfg):
    ctx = EvalContext(model=model, dataset_name="shapes", cache=Cache(tmp_path / "cache"), progress=False, batch_size=16)
    task = get_task("z_usage")
    return task().run(ctx, task.make_config(cfg))


def _values(res):
    return {v.key: v for v in res.values}


def test_a_decoder_that_ignores_z_has_no_gap(tmp_path):
    vals = _values(_run(_Oracle(trust=0.0), tmp_path, n_images=40, t_values=(100, 500)))
    for key in ("gap/t=100", "gap/t=500", "mean_gap"):
        v = vals[key]
        assert v.ci_low <= 0 <= v.ci_high and v.value == 0, v
    assert vals["loss_own/t=500"].value > 0.01  # the arms are equal, not trivially zero


def test_a_decoder_given_the_clean_image_has_a_large_gap(tmp_path):
    res = _run(_Oracle(trust=0.9), tmp_path, n_images=40, t_values=(100, 500, 900))
    vals = _values(res)
    for t in (100, 500, 900):
        v = vals[f"gap/t={t}"]
        assert v.ci_low > 10, v  # own code: 10 % of x0 left to guess; another image's: all of it
        assert vals[f"loss_shuffled/t={t}"].value > vals[f"loss_own/t={t}"].value
    assert vals["mean_gap"].ci_low > 10 and vals["mean_gap"].n == 40
    assert res.extra["shuffled_code_equal_fraction"] == 0.0


def test_the_losses_do_not_depend_on_batch_size(tmp_path):
    def values(batch_size):
        ctx = EvalContext(model=_Oracle(trust=0.5), dataset_name="shapes", cache=Cache(tmp_path / str(batch_size)),
                          progress=False, batch_size=batch_size)
        return _values(get_task("z_usage")().run(ctx, ZUsageConfig(n_images=12, t_values=(300,))))

    a, b = values(16), values(5)  # one batch, or three uneven ones: the noise is drawn per image (diffae_bench.rng)
    for key in ("gap/t=300", "loss_own/t=300", "loss_shuffled/t=300"):
        assert a[key].value == pytest.approx(b[key].value, rel=1e-6)


def test_t_outside_the_training_steps_is_refused(tmp_path):
    for bad in ((1000,), (-1, 500), ()):
        with pytest.raises(BenchError, match="t_values"):
            _run(_Oracle(trust=0.5), tmp_path, n_images=4, t_values=bad)


def test_a_model_without_a_code_gets_a_note_not_zeros(tmp_path):
    ddim = build_model("ddim", PRESETS.get("tiny").for_data(3, SIZE)).eval()
    res = _run(ddim, tmp_path, n_images=8)
    assert res.values == [] and "no semantic code" in res.notes[0]


# -- end to end --------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_run_z_usage_on_the_tiny_models(trained_diffae, trained_ddim, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "diffae_bench.cli", "run", "--task", "z_usage", "--model", f"{trained_diffae['dir']},{trained_ddim['dir']}", "--set", "z_usage.n_images=64", "--set", "z_usage.t_values=100,500",
           "--device", "cpu", "--quiet", "--out", out, "--cache-dir", tmp_path / "cache"]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    recs = {json.loads(p.read_text())["model"]["kind"]: json.loads(p.read_text()) for p in out.glob("z_usage__*.json")}
    diffae = {m["key"]: m for m in recs["diffae"]["metrics"]}
    assert set(diffae) >= {"mean_gap", "gap/t=100", "gap/t=500", "loss_own/t=100", "loss_shuffled/t=500"}
    # The conftest model uses z after 500 steps (its docstring): the gap at t=100 is clearly positive.
    assert diffae["gap/t=100"]["ci_low"] > 0 and diffae["mean_gap"]["n"] == 64
    assert recs["ddim"]["metrics"] == [] and any("no semantic code" in n for n in recs["ddim"]["notes"])
