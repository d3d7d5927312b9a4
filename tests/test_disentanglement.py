"""disentanglement: DCI and MIG cores against scipy / scikit-learn and on oracle codes, then the task end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import entropy
from sklearn.metrics import mutual_info_score

from diffae_bench.harness.cache import Cache
from diffae_bench.harness.context import EvalContext
from diffae_bench.data.shapes import draw_factors
from diffae_bench.models import build_model
from diffae_bench.presets import PRESETS
from diffae_bench.harness.task import get_task
from diffae_bench.tasks.disentanglement import (dci_from_importance, dci_score, discretize_codes, discretize_factors,
                                                mig_score, mutual_info_matrix, recentred_ci)

FACTORS = ["shape", "colour", "size", "x", "y", "rotation"]


@pytest.fixture(scope="module")
def shapes_factors():
    """Raw and discretised shapes factors: 1000 training rows, 500 held-out rows."""
    raw_tr = draw_factors(1000, 0, "train")[FACTORS].to_numpy(np.float64)
    raw_te = draw_factors(500, 0, "test")[FACTORS].to_numpy(np.float64)
    return raw_tr, raw_te, *discretize_factors(raw_tr, raw_te)


# -- building blocks against independent references -------------------------------------------
def test_mutual_information_equals_sklearn(shapes_factors):
    raw_tr, _, F_tr, _ = shapes_factors
    X = np.random.default_rng(0).normal(size=(1000, 4)) + raw_tr[:, [2, 3, 0, 5]]  # codes that know some factors
    codes = discretize_codes(X, 20)
    mi = mutual_info_matrix(codes, F_tr, 20)
    ref = np.array([[mutual_info_score(F_tr[:, k], codes[:, d]) for k in range(F_tr.shape[1])] for d in range(4)])
    np.testing.assert_allclose(mi, ref, atol=1e-12)
    assert mi[0, 2] > 0.05 and mi[0, 0] < mi[2, 0]  # size is in code 0, shape in code 2


def test_code_bins_are_disentanglement_libs_histogram_bins():
    x = np.random.default_rng(1).uniform(-3, 5, size=(300, 2))
    codes = discretize_codes(x, 20)
    for d in range(2):
        edges = np.histogram(x[:, d], 20)[1]
        np.testing.assert_array_equal(codes[:, d], np.digitize(x[:, d], edges[:-1]) - 1)
    assert codes.min() == 0 and codes.max() == 19


def test_factors_keep_their_classes_or_are_binned_by_the_training_range(shapes_factors):
    raw_tr, raw_te, F_tr, F_te = shapes_factors
    assert [len(np.unique(F_tr[:, k])) for k in range(6)] == [4, 6, 10, 10, 10, 10]
    np.testing.assert_array_equal(F_tr[:, 0], raw_tr[:, 0])  # shape ids 0..3 stay as they are
    _, te = discretize_factors(raw_tr[:, 2:3], np.array([[-1.0], [10.0]]))  # outside the training range
    assert te.ravel().tolist() == [0, 9]


def test_dci_formulas_match_disentanglement_libs_entropy_form():
    R = np.random.default_rng(2).uniform(size=(7, 3))
    d, c = dci_from_importance(R)
    # disentanglement_lib: scipy.stats.entropy(importance.T + 1e-11, base=K) per code, weighted by code importance
    d_ref = ((1 - entropy(R.T + 1e-11, base=3)) * R.sum(1) / R.sum()).sum()
    c_ref = ((1 - entropy(R + 1e-11, base=7)) * R.sum(0) / R.sum()).sum()
    assert d == pytest.approx(d_ref, abs=1e-9) and c == pytest.approx(c_ref, abs=1e-9)
    assert dci_from_importance(np.eye(4)[[2, 0, 3, 1]]) == pytest.approx((1.0, 1.0))  # one code per factor
    assert dci_from_importance(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-9)


def test_recentred_interval_holds_the_estimate():
    boot = np.random.default_rng(3).normal(0.8, 0.01, 1000)  # resamples biased 0.1 below the estimate
    lo, hi = recentred_ci(0.9, boot)
    assert lo < 0.9 < hi and hi - lo == pytest.approx(np.subtract(*np.quantile(boot, [0.975, 0.025])), rel=1e-9)


# -- oracles: the factors, a rotation of them, noise ------------------------------------------
def _scores(X_tr, X_te, shapes_factors):
    _, _, F_tr, F_te = shapes_factors
    return dci_score(X_tr, F_tr, X_te, F_te, refits=2), mig_score(X_tr, F_tr, n_boot=200)


def test_the_factors_themselves_score_near_one(shapes_factors):
    raw_tr, raw_te = shapes_factors[:2]
    dci, mig = _scores(raw_tr, raw_te, shapes_factors)
    for key in ("disentanglement", "completeness", "informativeness"):
        value, (lo, hi) = dci[key]
        assert value > 0.88 and lo <= value <= hi, (key, dci[key])
    assert mig["mig"][0] > 0.93 and mig["mig"][1][0] <= mig["mig"][0] <= mig["mig"][1][1]
    assert all(v > 0.9 for v, _ in mig["per_factor"])
    assert np.argmax(dci["importance"], 0).tolist() == list(range(6))  # code k is found for factor k


def test_a_rotation_of_the_factors_keeps_information_but_not_disentanglement(shapes_factors):
    raw_tr, raw_te = shapes_factors[:2]
    mu, sd = raw_tr.mean(0), raw_tr.std(0)
    Q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(6, 6)))
    dci, mig = _scores((raw_tr - mu) / sd @ Q, (raw_te - mu) / sd @ Q, shapes_factors)
    assert dci["informativeness"][0] > 0.8  # still linearly decodable
    assert dci["disentanglement"][0] < 0.3 and dci["completeness"][0] < 0.3 and mig["mig"][0] < 0.3


def test_noise_scores_near_zero(shapes_factors):
    rng = np.random.default_rng(5)
    dci, mig = _scores(rng.normal(size=(1000, 8)), rng.normal(size=(500, 8)), shapes_factors)
    assert dci["disentanglement"][0] < 0.06 and dci["completeness"][0] < 0.06 and mig["mig"][0] < 0.02
    chance = np.mean([1 / 4, 1 / 6] + [1 / 10] * 4)
    assert dci["informativeness"][0] < chance + 0.05
    assert mig["mig"][1][0] < 0.01  # the interval reaches down to no information


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        mig_score(np.ones((5, 2)), np.ones((4, 1), int))
    with pytest.raises(ValueError):
        dci_score(np.ones((5, 2)), np.ones((5, 1), int), np.ones((3, 3)), np.ones((3, 1), int))


# -- the task on a tiny untrained model --------------------------------------------------------
def _ctx(model, tmp_path):
    return EvalContext(model=model, dataset_name="shapes", cache=Cache(tmp_path / "cache"), progress=False, batch_size=32)


def test_task_scores_every_representation_with_cis(tmp_path):
    model = build_model("diffae", PRESETS.get("tiny").for_data(3, 16)).eval()
    task = get_task("disentanglement")
    cfg = task.make_config({"n_train": 60, "n_test": 30, "T": 5, "dci_refits": 2, "max_iter": 100})
    res = task().run(_ctx(model, tmp_path), cfg)
    vals = {v.key: v for v in res.values}
    for rep in ("z_sem", "x_T", "pixels"):
        for fam in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
            v = vals[f"{fam}/rep={rep}"]
            assert v.ci_low <= v.value <= v.ci_high, v
        assert vals[f"mig_factor/rep={rep}/factor=rotation"].n == 60
    assert res.extra["factors"] == {"shape": 4, "colour": 6, "size": 10, "x": 10, "y": 10, "rotation": 10}


def test_pixel_scores_are_computed_once_per_data_set_and_equal_a_fresh_computation(tmp_path):
    """Raw pixels do not depend on the model: a second model reads the first one's pixel scores from the cache."""
    task = get_task("disentanglement")
    cfg = task.make_config({"n_train": 60, "n_test": 30, "T": 5, "dci_refits": 2, "max_iter": 100,
                            "representations": ("pixels",)})
    ctx_a = _ctx(build_model("diffae", PRESETS.get("tiny").for_data(3, 16)).eval(), tmp_path)
    a = task().run(ctx_a, cfg)
    misses = ctx_a.cache.misses
    ctx_b = EvalContext(model=build_model("ddim", PRESETS.get("tiny").for_data(3, 16)).eval(), dataset_name="shapes",
                        cache=ctx_a.cache, progress=False, batch_size=32)
    b = task().run(ctx_b, cfg)
    assert ctx_b.cache.misses == misses and ctx_b.cache.hits > 0  # nothing recomputed
    fresh = task().run(_ctx(ctx_b.model, tmp_path / "fresh"), cfg)
    for other in (b, fresh):
        assert [(v.key, v.value, v.ci_low, v.ci_high, v.n) for v in other.values] == \
            [(v.key, v.value, v.ci_low, v.ci_high, v.n) for v in a.values]
    assert a.extra["unconverged_fits"] == b.extra["unconverged_fits"]


def test_data_without_factors_gets_a_note_and_no_numbers(tmp_path):
    model = build_model("ddim", PRESETS.get("tiny").for_data(3, 16)).eval()
    ctx = _ctx(model, tmp_path)
    ctx._data[("train", 16)] = dataclasses.replace(ctx.dataset("train"), factors=())
    res = get_task("disentanglement")().run(ctx, get_task("disentanglement").make_config({}))
    assert res.values == [] and "not applicable" in res.notes[0]
