"""attribute_manipulation: the edit and scoring cores on known answers, then the task on tiny untrained models."""

from __future__ import annotations

import numpy as np
import pytest

from diffae_bench.harness.cache import Cache
from diffae_bench.harness.context import EvalContext
from diffae_bench.models import build_model
from diffae_bench.presets import PRESETS
from diffae_bench.harness.task import get_task
from diffae_bench.tasks.attribute_manipulation import (bit_ranking, edit_direction, score_edits, set_bits,
                                                       shift_codes)


# -- edit cores ------------------------------------------------------------------------------------
def _separable(n=2000, d=6, seed=0):
    """Codes whose attribute is the sign of one known direction, dimensions on different scales."""
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 10.0, 0.1, 3.0, 1.0, 5.0])[:d]
    Z = rng.normal(size=(n, d)) * scale + 7.0
    u = np.zeros(d)
    u[[0, 3]] = 1 / np.sqrt(2)  # in standardised units
    y = (((Z - 7.0) / scale) @ u > 0).astype(int)
    return Z, y, u


def test_the_direction_is_the_classifiers_normal_in_standardised_units():
    Z, y, u = _separable()
    d = edit_direction(Z, y)
    assert abs(d["normal"] @ u) > 0.98 and np.linalg.norm(d["normal"]) == pytest.approx(1.0)
    Zs = (Z - Z.mean(0)) / Z.std(0)
    assert d["sigma"] == pytest.approx((Zs @ d["normal"]).std(), rel=1e-9)


def test_a_step_moves_the_projection_by_step_sigmas_toward_the_target_and_nothing_else():
    Z, y, _ = _separable()
    d = edit_direction(Z, y)
    targets = 1 - y[:10]
    moved = shift_codes(Z[:10], d, targets, [0.0, 1.5])
    np.testing.assert_allclose(moved[0], Z[:10], atol=1e-9)  # step 0 is the code itself
    proj = lambda z: ((z - d["mean"]) / d["scale"]) @ d["normal"]
    delta = proj(moved[1]) - proj(Z[:10])
    np.testing.assert_allclose(delta, 1.5 * d["sigma"] * np.where(targets == 1, 1, -1), atol=1e-9)
    rest = lambda z: (z - d["mean"]) / d["scale"] - np.outer(proj(z), d["normal"])
    np.testing.assert_allclose(rest(moved[1]), rest(Z[:10]), atol=1e-9)  # the orthogonal part is kept


def test_moving_far_enough_crosses_the_classifiers_boundary():
    Z, y, u = _separable()
    d = edit_direction(Z, y)
    moved = shift_codes(Z[:200], d, 1 - y[:200], [4.0])[0]
    assert ((((moved - 7.0) / Z.std(0)) @ u > 0).astype(int) == 1 - y[:200]).mean() > 0.9


def test_bits_are_ranked_by_correlation_and_set_to_the_targets_values():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    B = rng.integers(0, 2, (500, 5)).astype(float)
    B[:, 3] = y  # perfectly correlated
    B[:, 1] = 1 - y  # perfectly anti-correlated
    B[:, 4] = 1.0  # constant: never chosen first
    order, sign = bit_ranking(B, y)
    ref = np.array([np.corrcoef(B[:, j], y)[0, 1] if B[:, j].std() else 0.0 for j in range(5)])
    np.testing.assert_array_equal(sign, np.sign(ref))
    assert set(order[:2]) == {1, 3} and order[-1] == 4
    codes = B[:4]
    edited = set_bits(codes, order, sign, np.array([1, 0, 1, 0]), [2])[0]
    np.testing.assert_array_equal(edited[:, 3], [1, 0, 1, 0])  # goes with the target
    np.testing.assert_array_equal(edited[:, 1], [0, 1, 0, 1])  # anti-correlated: the opposite
    np.testing.assert_array_equal(edited[:, [0, 2, 4]], codes[:, [0, 2, 4]])  # other bits untouched


# -- scoring ----------------------------------------------------------------------------------------
def test_the_summary_is_the_best_success_among_steps_that_keep_the_other_attributes():
    n = 100
    succ = np.zeros((n, 4))
    succ[:30, 1], succ[:70, 2], succ[:95, 3] = 1, 1, 1  # success 0, 0.3, 0.7, 0.95
    flip = np.zeros((n, 4))
    flip[:, 3] = 0.5  # the largest step ruins the other attributes
    out = score_edits(succ, np.ones((n, 4)), flip, ssim_min=0.0, max_other_flip=0.2)
    assert out["summary"][0] == pytest.approx(0.7) and out["summary_step"] == 2
    lo, hi = out["summary"][1]
    assert lo < 0.7 < hi and hi < 0.95
    assert [v for v, _ in out["success"]] == pytest.approx([0, 0.3, 0.7, 0.95])
    # an SSIM floor excludes steps too, and step 0 always qualifies
    low_ssim = np.ones((n, 4))
    low_ssim[:, 1:] = 0.2
    assert score_edits(succ, low_ssim, flip, ssim_min=0.5, max_other_flip=0.2)["summary"][0] == 0.0


def test_ties_pick_the_smallest_step_and_bad_input_is_refused():
    succ = np.ones((10, 3))
    out = score_edits(succ, np.ones((10, 3)), np.zeros((10, 3)), 0.0, 0.2)
    assert out["summary_step"] == 0 and out["summary"][0] == 1.0
    with pytest.raises(ValueError):
        score_edits(np.ones((10, 3)), np.ones((10, 2)), np.zeros((10, 3)), 0.0, 0.2)


# -- the task on tiny untrained models ------------------------------------------------------------
SMALL = {"n_train": 40, "n_images": 4, "edit_sizes": "2.0", "bit_counts": "2", "T": "5", "n_judge_test": 50,
         "figure_images": 2, "feature_net.steps": 3, "feature_net.n_train": 100, "feature_net.n_test": 50}


def _run(kind, tmp_path, out_dir=None):
    model = build_model(kind, PRESETS.get("tiny").for_data(3, 16)).eval()
    ctx = EvalContext(model=model, dataset_name="shapes", cache=Cache(tmp_path / "cache"), progress=False,
                      batch_size=16, out_dir=out_dir, figure_prefix=f"{kind}__")
    task = get_task("attribute_manipulation")
    return task().run(ctx, task.make_config(SMALL))


@pytest.mark.parametrize("kind,param,param0", [("diffae", "size=2.0", "size=0.0"), ("dmz", "bits=2", "bits=0")])
def test_task_edits_each_attribute_and_draws_the_figure(kind, param, param0, tmp_path):
    res = _run(kind, tmp_path, out_dir=tmp_path / "out")
    vals = {v.key: v for v in res.values}
    for attr in ("is_circle", "is_large", "is_left", "is_top", "is_warm"):
        assert f"success/T=5/attr={attr}/{param}" in vals
        assert vals[f"ssim_to_recon/T=5/attr={attr}/{param0}"].value == 1.0  # step 0 is the reconstruction
        v = vals[f"attr_edit_success/T=5/attr={attr}"]
        assert v.ci_low <= v.value <= v.ci_high and v.n == 4
    assert 0 <= vals["edit_success/T=5"].value <= 1
    assert set(res.extra["judge_accuracy"]) >= {"is_circle", "is_warm"}
    assert res.figures == [f"{kind}__edits.png"] and (tmp_path / "out" / res.figures[0]).is_file()


def test_a_model_without_a_code_gets_a_note(tmp_path):
    res = _run("ddim", tmp_path)
    assert res.values == [] and "no semantic code" in res.notes[0]
