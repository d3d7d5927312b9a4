"""interpolation and memorization: pure cores on constructed inputs, then tiny end-to-end runs.

The end-to-end runs call diffae_bench.harness.runner.run in-process after importing the
task modules (they register on import), so they do not depend on
tasks/__init__.py listing them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffae_bench.data import load_dataset
from diffae_bench.metrics.image import mse
from diffae_bench.harness.runner import RunOptions, run
from diffae_bench.tasks.interpolation import path_stats, slerp
from diffae_bench.tasks.memorization import copying_test, nearest_neighbours, pixel_nearest


# -- interpolation: pure core ------------------------------------------------------------
def _blend(a: torch.Tensor, b: torch.Tensor, weights) -> torch.Tensor:
    """(P, K, C, H, W) frames (1 - w) a + w b for each weight."""
    return torch.stack([(1 - w) * a + w * b for w in weights], dim=1)


def test_linear_pixel_blend_is_perfectly_even_and_as_long_as_the_distance():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1, torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    stats = path_stats(_blend(a, b, np.linspace(0, 1, 9)), a, b)
    np.testing.assert_allclose(stats["step_ratio"], 1.0, atol=1e-6)
    np.testing.assert_allclose(stats["path_length"], mse(a, b).sqrt().numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats["endpoint_mse"], 0.0, atol=1e-12)
    np.testing.assert_allclose(stats["step_mse"], mse(a, b).numpy() / 8**2, rtol=1e-6)  # 8 equal steps


def test_a_path_with_one_jump_has_a_large_ratio_and_bad_ends_are_seen():
    a, b = -torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    K = 9
    jump = _blend(a, b, [0.0] * 4 + [1.0] * 5)  # all of the change in one of the 8 steps
    stats = path_stats(jump, a, b)
    np.testing.assert_allclose(stats["step_ratio"], K - 1)  # max / mean = D / (D / 8)
    np.testing.assert_allclose(stats["path_length"], 2 / 2)  # RMS distance on [0, 1] images: 1
    off = path_stats(_blend(a, b, np.linspace(0.25, 0.75, K)), a, b)  # ends miss the inputs by a quarter
    np.testing.assert_allclose(off["endpoint_mse"], 0.25**2)
    still = path_stats(a.unsqueeze(1).expand(-1, K, -1, -1, -1), a, a)
    np.testing.assert_allclose(still["step_ratio"], 1.0)  # a path that never moves is even, not nan


def test_slerp_keeps_unit_vectors_on_the_sphere_with_exact_ends():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    a, b = a / a.flatten(1).norm(dim=1).view(-1, 1, 1, 1), b / b.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    path = slerp(a, b, 11)
    assert path.shape == (11, 6, 3, 4, 4)
    torch.testing.assert_close(path[0], a, rtol=0, atol=0)
    torch.testing.assert_close(path[-1], b, rtol=0, atol=0)
    torch.testing.assert_close(path.flatten(2).norm(dim=2), torch.ones(11, 6), rtol=0, atol=1e-5)
    # orthogonal unit vectors: the midpoint is (a + b) / sqrt(2); equal angles between consecutive points
    e1, e2 = torch.eye(4)[:1], torch.eye(4)[1:2]
    mid = slerp(e1, e2, 3)[1]
    torch.testing.assert_close(mid, (e1 + e2) / 2**0.5)
    angles = torch.arccos((slerp(e1, e2, 5)[:-1] * slerp(e1, e2, 5)[1:]).sum(-1).clamp(-1, 1)).flatten()
    torch.testing.assert_close(angles, torch.full((4,), torch.pi / 8), rtol=0, atol=1e-5)
    # identical vectors (angle 0) fall back to lerp instead of dividing by sin(0)
    same = slerp(a[:2], a[:2], 4)
    assert torch.isfinite(same).all()
    torch.testing.assert_close(same, a[:2].expand(4, -1, -1, -1, -1))


# -- memorization: pure core -------------------------------------------------------------
def test_nearest_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(2)
    q, r = torch.randn(7, 5, generator=g), torch.randn(30, 5, generator=g)
    d, i = nearest_neighbours(q, r, chunk=3)
    full = ((q[:, None] - r[None]) ** 2).mean(-1)
    np.testing.assert_allclose(d, full.min(1).values.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(i, full.argmin(1).numpy())


def test_copying_test_on_synthetic_distances():
    rng = np.random.default_rng(0)
    held = rng.gamma(2.0, 1.0, 200)
    copier = copying_test(np.zeros(200), held)
    assert copier["copy_pvalue"] < 1e-10 and copier["copy_auc"] == 1.0
    fresh = copying_test(rng.gamma(2.0, 1.0, 200), held)
    assert fresh["copy_pvalue"] > 0.05 and abs(fresh["copy_auc"] - 0.5) < 0.1
    lo, hi = fresh["copy_auc_ci"]
    assert lo <= fresh["copy_auc"] <= hi and lo < 0.5 < hi
    far = copying_test(held + 5, held)  # samples farther than real images: not copying (auc near 0)
    assert far["copy_auc"] < 0.1 and far["copy_pvalue"] > 0.99


@pytest.fixture(scope="module")
def shapes_images():
    train = load_dataset("shapes", "train", image_size=16, limit=1000).tensor(np.arange(1000))
    test = load_dataset("shapes", "test", image_size=16, limit=200).tensor(np.arange(200))
    return train, test


def test_copying_test_flags_a_model_that_returns_training_images(shapes_images):
    train, test = shapes_images
    d_heldout, _ = pixel_nearest(test[:100], train)
    copies = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:100]]
    d_copies, idx = pixel_nearest(copies, train)
    assert np.all(d_copies < 1e-12)  # each copy finds itself (or an identical image)
    t = copying_test(d_copies, d_heldout)
    assert t["copy_pvalue"] < 0.01 and t["copy_auc"] > 0.95
    # half copies, half fresh images: still detected, with a smaller effect
    d_fresh, _ = pixel_nearest(test[100:150], train)
    half = copying_test(np.r_[d_copies[:50], d_fresh], d_heldout)
    assert half["copy_pvalue"] < 0.01 and 0.6 < half["copy_auc"] < t["copy_auc"]


def test_copying_test_passes_a_model_that_returns_other_heldout_images(shapes_images):
    train, test = shapes_images
    d_heldout, _ = pixel_nearest(test[:100], train)
    d_other, _ = pixel_nearest(test[100:200], train)  # same distribution, never trained on
    t = copying_test(d_other, d_heldout)
    assert t["copy_pvalue"] > 0.05 and abs(t["copy_auc"] - 0.5) < 0.1


# -- end to end ------------------------------------------------------------------------
def _run(tmp_path, task: str, models: list, options: dict) -> dict[str, dict]:
    out, records = run(RunOptions(tasks=(task,), models=tuple(str(m) for m in models), out=str(tmp_path / "out"),
                                  device="cpu", cache_dir=str(tmp_path / "cache"), progress=False,
                                  task_options={task: options}))
    files = {p.name: json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "run.json"}
    assert len(files) == len(models) == len(records)
    return files


def test_interpolation_end_to_end(trained_diffae, trained_ddim, tmp_path):
    recs = _run(tmp_path, "interpolation", [trained_diffae["dir"], trained_ddim["dir"]],
                {"n_pairs": 4, "n_points": 5, "T": 10})
    diffae, ddim = recs["interpolation__diffae__shapes.json"], recs["interpolation__ddim__shapes.json"]
    assert diffae["task"]["name"] == "interpolation" and diffae["task"]["version"] == 1
    for rec, path in ((diffae, "z_lerp+xT_slerp"), (ddim, "xT_slerp")):
        values = {m["key"]: m for m in rec["metrics"]}
        assert {m["params"]["path"] for m in rec["metrics"]} == {path}
        for family in ("step_ratio", "step_mse", "path_length", "endpoint_mse"):
            m = values[f"{family}/path={path}"]
            assert m["n"] == 4 and np.isfinite(m["value"]) and m["ci_low"] <= m["value"] <= m["ci_high"]
        assert values[f"step_ratio/path={path}"]["value"] >= 1.0
        assert rec["dataset"]["splits"]["test"]["n_used"] == 8
        assert any("LPIPS" in n for n in rec["notes"]) or rec["pretrained_weights"]
    assert (tmp_path / "out" / "interpolation__diffae__interpolations.png").is_file()
    assert (tmp_path / "out" / "interpolation__ddim__interpolations.png").is_file()


def test_memorization_end_to_end(trained_diffae, tmp_path):
    recs = _run(tmp_path, "memorization", [trained_diffae["dir"]],
                {"n_samples": 16, "n_train": 64, "T": 10, "T_latent": 10})
    rec = recs["memorization__diffae__shapes.json"]
    values = {m["key"]: m for m in rec["metrics"]}
    for space in ("pixel_mse", "z_mse"):
        auc = values[f"copy_auc/space={space}"]
        assert 0.0 <= auc["value"] <= 1.0 and auc["ci_low"] <= auc["value"] <= auc["ci_high"] and auc["n"] == 16
        assert 0.0 <= values[f"copy_pvalue/space={space}"]["value"] <= 1.0
        assert values[f"nn_median/space={space}/group=generated"]["value"] >= 0
        assert values[f"nn_median/space={space}/group=heldout"]["value"] >= 0
    assert rec["dataset"]["splits"]["train"]["n_used"] == 64 and rec["dataset"]["splits"]["test"]["n_used"] == 16
    assert rec["extra"]["n_train_searched"]["n"] == 64  # an explicit n_train: the first 64, stated as a departure
    assert any("64 of the" in d for d in rec["extra"]["departures"])
    assert any("LPIPS" in n for n in rec["notes"]) or rec["pretrained_weights"]
    assert (tmp_path / "out" / "memorization__diffae__nearest_train.png").is_file()


def test_blocked_nearest_neighbour_search_equals_scipy_cdist_on_odd_sizes():
    """Blocks of the reference and chunks of the queries (sizes not multiples of either) change no answer."""
    from scipy.spatial.distance import cdist

    from diffae_bench.tasks.memorization import nearest_k

    rng = np.random.default_rng(5)
    q, r = rng.normal(size=(37, 3, 3, 3)), rng.normal(size=(1001, 3, 3, 3))
    full = cdist(q.reshape(37, -1), r.reshape(1001, -1), "sqeuclidean") / 27  # MSE per pair
    # budget 27 * 97 entries: 97 reference rows per block (11 blocks, the last of 31); chunks of 10 queries
    d, i = nearest_neighbours(torch.from_numpy(q), torch.from_numpy(r), chunk=10, budget=27 * 97)
    np.testing.assert_array_equal(i, full.argmin(1))
    np.testing.assert_allclose(d, full.min(1), rtol=1e-10, atol=1e-12)
    d5, cand = nearest_k(torch.from_numpy(q), torch.from_numpy(r), 5, chunk=10, budget=27 * 97)
    np.testing.assert_array_equal(cand.numpy(), np.argsort(full, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(d5.numpy(), np.sort(full, axis=1)[:, :5], rtol=1e-10, atol=1e-12)
    # pixel space: [-1, 1] inputs compared on [0, 1], as one unblocked search would
    x, t = torch.rand(9, 1, 4, 4) * 2 - 1, torch.rand(50, 1, 4, 4) * 2 - 1
    unit = lambda a: ((a.double() + 1) / 2).flatten(1).numpy()
    d_pix, i_pix = pixel_nearest(x, t)
    full_pix = cdist(unit(x), unit(t), "sqeuclidean") / 16
    np.testing.assert_array_equal(i_pix, full_pix.argmin(1))
    np.testing.assert_allclose(d_pix, full_pix.min(1), rtol=1e-10)


def test_nearest_neighbour_ties_keep_the_first_index_across_blocks():
    r = torch.zeros(10, 4)  # every reference row equally near: argmin's answer is row 0
    d, i = nearest_neighbours(torch.ones(3, 4), r, budget=4 * 3)
    np.testing.assert_array_equal(i, [0, 0, 0])
    np.testing.assert_allclose(d, 1.0)


def test_memorization_default_searches_the_whole_training_split(trained_diffae, tmp_path):
    """Default n_train: every training image of the split (here a 300-image shapes split) is searched, no departure."""
    out, _ = run(RunOptions(tasks=("memorization",), models=(str(trained_diffae["dir"]),), out=str(tmp_path / "out"),
                            device="cpu", cache_dir=str(tmp_path / "cache"), progress=False,
                            dataset_options={"n_train": 300, "n_test": 100},
                            task_options={"memorization": {"n_samples": 8, "T": 5, "T_latent": 5}}))
    rec = json.loads((out / "memorization__diffae__shapes.json").read_text())
    assert rec["task"]["version"] == 3 and rec["task"]["config"]["n_train"] is None
    assert rec["dataset"]["splits"]["train"]["n_used"] == rec["dataset"]["splits"]["train"]["n_total"] == 300
    assert rec["extra"]["n_train_searched"] == {"n": 300, "of": 300}
    assert not any("training images searched" in d for d in rec["extra"]["departures"])
    assert np.isfinite({m["key"]: m for m in rec["metrics"]}["copy_auc/space=z_mse"]["value"])
