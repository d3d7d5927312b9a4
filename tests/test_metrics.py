"""Metric cores against independent references (scikit-image, scikit-learn, scipy) and oracles."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import roc_auc_score

from diffae_bench.metrics import stats
from diffae_bench.metrics.lpips_metric import ALEXNET_FILE, LPIPS, lpips_unavailable_reason
from diffae_bench.tasks.linear_probe import fit_probe, mean_auroc, score_probe
from diffae_bench.tasks.reconstruction import score_reconstruction


def _pair(c: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(4, c, 32, 32, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    return a, b


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_mse_psnr_match_scikit_image(channels):
    a, b = _pair(channels)
    ours = score_reconstruction(a, b)
    for i in range(len(a)):
        x = ((a[i].double() + 1) / 2).numpy()
        y = ((b[i].double() + 1) / 2).numpy()
        ref = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1.0, channel_axis=0)
        assert ours["ssim"][i] == pytest.approx(ref, abs=1e-9)
        assert ours["mse"][i] == pytest.approx(mean_squared_error(x, y), rel=1e-12)
        assert ours["psnr"][i] == pytest.approx(peak_signal_noise_ratio(x, y, data_range=1.0), rel=1e-12)


def test_reconstruction_oracles():
    a, b = _pair(3)
    perfect = score_reconstruction(a, a.clone())
    assert np.allclose(perfect["ssim"], 1.0) and np.allclose(perfect["mse"], 0.0) and np.isinf(perfect["psnr"]).all()
    noise = score_reconstruction(a, torch.rand(a.shape, generator=torch.Generator().manual_seed(99)) * 2 - 1)
    assert noise["ssim"].mean() < 0.05 and noise["mse"].mean() > 0.1


def test_vectorised_auroc_equals_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (50, 40))
    s = np.round(rng.normal(size=(50, 40)) + y, 1)  # rounding makes ties, which count one half
    ours = stats.auroc_rows(y, s)
    ref = [roc_auc_score(y[i], s[i]) for i in range(50)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert np.isnan(stats.auroc_rows(np.ones((1, 5)), np.arange(5.0)[None]))[0]


def test_mean_ci_matches_scipy_percentile_bootstrap():
    v = np.random.default_rng(1).exponential(size=300)
    lo, hi = stats.mean_ci(v, n_boot=4000)
    ref = scipy.stats.bootstrap((v,), np.mean, n_resamples=4000, method="percentile", random_state=0).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.02)
    assert lo < v.mean() < hi


def _probe(train_X, train_y, test_X, test_y):
    return score_probe(test_y, fit_probe(train_X, train_y, test_X))


def test_probe_oracle_labels_give_auroc_one_and_noise_chance():
    rng = np.random.default_rng(2)
    y_tr, y_te = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    # oracle: the label itself (plus irrelevant noise dimensions) as the representation
    oracle = _probe(np.c_[y_tr, rng.normal(size=(400, 5))], y_tr, np.c_[y_te, rng.normal(size=(400, 5))], y_te)
    assert oracle["auroc"][0] > 0.99 and oracle["accuracy"][0] > 0.98
    # anti-oracle: noise unrelated to the label
    noise = _probe(rng.normal(size=(400, 20)), y_tr, rng.normal(size=(400, 20)), y_te)
    assert abs(noise["auroc"][0] - 0.5) < 0.08
    lo, hi = noise["auroc"][1]
    assert lo < 0.5 < hi  # chance lies inside its CI


def test_mean_auroc_averages_attributes_and_draws():
    rng = np.random.default_rng(3)
    Y = rng.integers(0, 2, (300, 2))
    perfect, noise = Y[:, 0].astype(float), rng.random(300)
    value, (lo, hi) = mean_auroc(Y, [perfect, noise])
    assert value == pytest.approx((1.0 + roc_auc_score(Y[:, 1], noise)) / 2)
    assert lo <= value <= hi
    draws, _ = mean_auroc(Y, [np.stack([perfect, 1 - perfect])])  # AUROC 1 and 0: mean 0.5
    assert draws == pytest.approx(0.5)


def test_lpips_absent_weights_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reason = lpips_unavailable_reason()
    assert reason and ALEXNET_FILE in reason and str(tmp_path) in reason and "\n" not in reason
    with pytest.raises(FileNotFoundError):
        LPIPS()


def test_lpips_wiring_with_a_locally_saved_alexnet(tmp_path, monkeypatch):
    """Wiring only: a randomly initialised AlexNet saved where torchvision's would be. Not LPIPS numbers.

    The published sha256 refuses such a file (tests/test_weights.py); this test alone
    makes the table accept it, to reach the code behind the check.
    """
    import dataclasses
    import hashlib

    import torchvision

    from diffae_bench.metrics import weights as W

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), ckpt / ALEXNET_FILE)
    assert "refused" in lpips_unavailable_reason()
    blob = (ckpt / ALEXNET_FILE).read_bytes()
    monkeypatch.setitem(W.KNOWN, "alexnet", dataclasses.replace(W.KNOWN["alexnet"], size=len(blob),
                                                                sha256=hashlib.sha256(blob).hexdigest()))
    assert lpips_unavailable_reason() is None
    fn = LPIPS()
    a, b = _pair(3)
    same, diff = fn(a, a), fn(a, b)
    assert same.shape == (4,) and torch.allclose(same, torch.zeros(4, dtype=same.dtype), atol=1e-6)
    assert (diff > 0).all()
    assert fn(a[:, :1], b[:, :1]).shape == (4,)  # grey images are repeated to RGB
    assert set(fn.weights) == {"lpips_alexnet_backbone", "lpips_linear_heads_v0.1"}


def test_corner_means_reads_the_four_corners_in_unit_range():
    from diffae_bench.metrics.image import corner_means
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, (5, 3, 16, 16)))
    u = (x.numpy() + 1) / 2
    ref = np.mean([u[..., :4, :4].mean((1, 2, 3)), u[..., :4, -4:].mean((1, 2, 3)),
                   u[..., -4:, :4].mean((1, 2, 3)), u[..., -4:, -4:].mean((1, 2, 3))], 0)
    np.testing.assert_allclose(corner_means(x).numpy(), ref, rtol=1e-12)
    black = -torch.ones(2, 1, 16, 16)
    black[:, :, 5:11, 5:11] = 1  # a white shape in the middle leaves the background black
    assert corner_means(black).tolist() == [0.0, 0.0]
    assert corner_means(torch.ones(1, 1, 8, 8)).tolist() == [1.0]


def test_abs_ci_covers_the_absolute_value():
    from diffae_bench.metrics.image import abs_ci
    assert abs_ci((-0.2, 0.1)) == (0.0, 0.2)
    assert abs_ci((0.1, 0.3)) == (0.1, 0.3)
    assert abs_ci((-0.3, -0.1)) == (0.1, 0.3)


def test_fit_probe_is_sklearns_probability_with_logits_rounded():
    """fit_probe = predict_proba's P(y=1) (independent reference) up to the 1e-10 logit rounding (v3)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(4)
    X, X_te = rng.normal(size=(200, 8)), rng.normal(size=(100, 8))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y).predict_proba(X_te)[:, 1]
    assert np.abs(fit_probe(X, y, X_te) - ref).max() < 1e-10


def test_probe_scores_equal_in_exact_arithmetic_tie_and_count_half():
    """Twin bits (equal on every training image) get equal weights, so a code and the same code with its twins
    swapped score equal in exact arithmetic. Summed in another order they differ by an ulp (predict_proba splits
    2 of these 40 pairs here); fit_probe must keep every pair tied, so AUROC credits each pair 1/2."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (6, 64)).astype(float)
    y = np.array([1, 1, 1, 0, 0, 0])
    X[:, 0] = X[:, 63] = y  # twin label bits, at both ends of the sum
    codes = rng.integers(0, 2, (40, 64)).astype(float)
    swapped = codes.copy()
    swapped[:, 0], swapped[:, 63] = codes[:, 63], codes[:, 0]
    p = fit_probe(X, y, np.r_[codes, swapped])
    assert np.array_equal(p[:40], p[40:])
    assert (codes[:, 0] != codes[:, 63]).sum() >= 10  # pairs that really differ
    assert roc_auc_score([1, 0], [p[0], p[40]]) == 0.5


def test_few_label_auroc_of_binary_codes_is_the_same_on_every_openblas_kernel():
    """The reference subset's DMZ hard bits (shapes, 32 + 32 images; tests/data) split ties differently on
    OpenBLAS's Sandybridge and Haswell kernels before v3 (0.66425 vs 0.66428; SkylakeX 0.66399): not any more."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from diffae_bench.numerics import blas_kernels, is_x86

    if not blas_kernels().startswith("openblas-") or not is_x86():
        pytest.skip("numpy's BLAS is not OpenBLAS on x86 here")
    fixture = Path(__file__).parent / "data" / "dmz_hard_bits_shapes_subset.npz"
    code = f"""
import numpy as np
from diffae_bench.harness.task import TaskResult
from diffae_bench.tasks.linear_probe import LinearProbe, LinearProbeConfig
d = np.load({str(fixture)!r})
X_tr, X_te = d["X_train"].astype(float), d["X_test"].astype(float)
Y_tr, Y_te = d["Y_train"].astype(np.int64), d["Y_test"].astype(np.int64)
res = TaskResult()
attrs = ("is_circle", "is_large", "is_left", "is_top", "is_warm")
LinearProbe._few_shot("hard", X_tr, X_te, Y_tr, Y_te, attrs, 3, LinearProbeConfig(few_shot_k=(3,)), 0, res)
from diffae_bench.numerics import blas_kernels
print(blas_kernels(), repr(res.values[0].value))
"""
    values = {core: subprocess.run([sys.executable, "-c", code], env={**os.environ, "OPENBLAS_CORETYPE": core},
                                   capture_output=True, text=True, check=True).stdout.strip()
              for core in ("Sandybridge", "Haswell")}  # both run on any x86-64 CPU with AVX2
    assert {core: v.split()[0] for core, v in values.items()} == {c: f"openblas-{c}" for c in values}  # the pin held
    assert values["Sandybridge"].split()[1] == values["Haswell"].split()[1], values
    assert float(values["Haswell"].split()[1]) == pytest.approx(0.6641709778869221, abs=1e-12)
    # Independently: scikit-learn's own probabilities, ties merged at 1e-12 (well above an ulp, well below
    # the gaps between distinct scores), AUROC by roc_auc_score, averaged over the task's draws and attributes.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from diffae_bench.rng import derive_seed
    from diffae_bench.tasks.linear_probe import few_label_indices

    d = np.load(fixture)
    X_tr, X_te, Y_tr, Y_te = (d[k].astype(float) for k in ("X_train", "X_test", "Y_train", "Y_test"))
    per_attr = []
    for a, attr in enumerate(("is_circle", "is_large", "is_left", "is_top", "is_warm")):
        draws = []
        for k in range(5):
            idx = few_label_indices(Y_tr[:, a], 3, np.random.default_rng(derive_seed(0, "few_shot", attr, 3, k)))
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_tr[idx], Y_tr[idx, a])
            draws.append(roc_auc_score(Y_te[:, a], np.round(clf.predict_proba(X_te)[:, 1], 12)))
        per_attr.append(np.mean(draws))
    assert float(values["Haswell"].split()[1]) == pytest.approx(float(np.mean(per_attr)), abs=1e-12)
