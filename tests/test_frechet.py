"""Frechet distances (diffae_bench.metrics.frechet) and the two tasks built on them: sample_fid, fewshot_fid.

Cores against independent references (scipy's sqrtm, scipy's t interval,
numerical integration) and oracles (a set against itself ~ 0, halves of one
set small, different classes large); torch-fidelity's InceptionV3 path wired
with a randomly initialised state dict (its numbers are never reported);
then both tasks end to end on the tiny trained models.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import integrate, stats as sps

from diffae_bench.harness.cache import Cache
from diffae_bench.harness.context import EvalContext
from diffae_bench.data import ImageDataset, load_dataset
from diffae_bench.metrics.frechet import (INCEPTION_FILE, FeatureNetConfig, cached_feature_net, cnn_space, feature_spaces,
                                  committed_feature_net_path, extract,
                                  features_distance_ci, frechet_distance_eig,
                                  features_distance, inception_space, inception_unavailable_reason, statistics)
from diffae_bench.models import load_model
from diffae_bench.harness.runner import RunOptions, run
from diffae_bench.harness.task import TaskResult
from diffae_bench.tasks.fewshot_fid import FewShotConfig, labelled_set, rejection_sample, repeat_interval

MNIST = "../shared/data/mnist"
FAST_NET = FeatureNetConfig(steps=200, n_train=10_000, n_test=1000)  # ~92% digit accuracy in ~20 s


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Independent reference: the Frechet distance with scipy.linalg.sqrtm."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_torch_fidelity_distance_equals_scipy_reference_in_float64():
    g = np.random.default_rng(0)
    a = g.normal(size=(400, 16))
    b = g.normal(size=(300, 16)) @ g.normal(size=(16, 16)) * 0.5 + 1.0
    st = statistics(torch.from_numpy(a))
    assert st["mu"].dtype == np.float64 and st["sigma"].dtype == np.float64
    assert features_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(scipy_frechet(a, b), rel=1e-7)
    assert features_distance(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0.0, abs=1e-8)


def test_bootstrap_ci_of_the_distance_uses_the_same_distance_and_shrinks_with_n():
    g = np.random.default_rng(1)
    real = torch.from_numpy(g.normal(size=(2000, 8)))
    shifted = lambda n: torch.from_numpy(g.normal(size=(n, 8)) + 0.3)
    a = shifted(400)
    # the eigenvalue identity each resample uses equals torch-fidelity's distance
    assert frechet_distance_eig(a, real) == pytest.approx(features_distance(a, real), rel=1e-7)
    lo, hi = features_distance_ci(a, real, n_boot=200)
    assert lo <= features_distance(a, real) <= hi
    small, large = features_distance_ci(shifted(100), real), features_distance_ci(shifted(1600), real)
    assert (small[1] - small[0]) > 2 * (large[1] - large[0])
    # a set against itself: an interval at ~0
    assert features_distance_ci(real, real)[0] == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def mnist_space(tmp_path_factory):
    train = load_dataset("mnist", "train", root=MNIST, image_size=32)
    test = load_dataset("mnist", "test", root=MNIST, image_size=32)
    cache = Cache(tmp_path_factory.mktemp("fdcache"))
    net, info = cached_feature_net(train, test, FAST_NET, cache, progress=False)
    return train, test, cache, net, info


@pytest.mark.slow  # trains the feature network (mnist_space)
@pytest.mark.parametrize("dataset, root", [("shapes", None), ("mnist", MNIST)])
def test_reference_data_sets_use_the_committed_feature_networks(dataset, root, tmp_path):
    """fd_cnn is the same network on every machine (issue 13): loaded from results/feature_nets, never retrained."""
    from safetensors import safe_open

    train, test = (load_dataset(dataset, s, root=root, image_size=32) for s in ("train", "test"))
    path = committed_feature_net_path(train, test, FeatureNetConfig())
    assert path.is_file(), f"commit it: python -m diffae_bench.references feature-nets ({path.name})"
    cache = Cache(tmp_path)
    net, info = cached_feature_net(train, test, FeatureNetConfig(), cache, progress=False)
    with safe_open(str(path), "pt") as f:
        assert info["sha256"] == f.metadata()["sha256"]
    assert info["source"].startswith("committed") and (cache.hits, cache.misses) == (0, 0)
    assert (info["class_accuracy"] or info["binary_accuracy"]) > 0.9


def test_feature_net_is_accurate_and_recorded(mnist_space):
    _, _, _, _, info = mnist_space
    assert info["class_accuracy"] > 0.9 and info["n_test"] == 1000
    assert len(info["sha256"]) == 64 and info["config"]["steps"] == 200


@pytest.mark.slow  # trains the feature network (mnist_space)
def test_fd_oracles_self_halves_and_classes(mnist_space):
    _, test, _, net, info = mnist_space
    space = cnn_space(net, info, torch.device("cpu"))
    x, digit = test.tensor(np.arange(2000)), test.attributes["digit"].to_numpy()[:2000]
    f = extract(space, x)
    assert f.dtype == torch.float64 and f.shape == (2000, FAST_NET.feature_dim)
    self_fd = features_distance(f, f)
    halves = features_distance(f[:1000], f[1000:])
    classes = features_distance(f[digit == 0], f[digit == 1])
    assert abs(self_fd) < 1e-6
    assert classes > 20 * halves, (halves, classes)


@pytest.mark.slow  # trains the feature network (mnist_space)
def test_feature_net_is_cached_by_content_and_deterministic(mnist_space):
    train, test, cache, _, info = mnist_space
    hits = cache.hits
    _, again = cached_feature_net(train, test, FAST_NET, cache, progress=False)
    assert cache.hits == hits + 1 and again["sha256"] == info["sha256"]
    # the same recipe trained afresh (no cache) gives the same weights on this machine
    small = replace(FAST_NET, steps=5, n_train=512, n_test=64)
    _, a = cached_feature_net(train, test, small, Cache(enabled=False), progress=False)
    _, b = cached_feature_net(train, test, small, Cache(enabled=False), progress=False)
    assert a["sha256"] == b["sha256"]
    _, c = cached_feature_net(train, test, replace(small, seed=1), Cache(enabled=False), progress=False)
    assert c["sha256"] != a["sha256"]


@pytest.mark.slow  # builds, saves and runs InceptionV3 at 299 px: tens of seconds on 2 shared cores
def test_inception_path_runs_end_to_end_with_a_local_state_dict(tmp_path, monkeypatch):
    """Wiring only: a randomly initialised InceptionV3 saved where torch-fidelity's file would be."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert INCEPTION_FILE in inception_unavailable_reason()
    with monkeypatch.context() as m:  # build the architecture without its download
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        random_net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    import dataclasses
    import hashlib

    from diffae_bench.metrics import weights as W

    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(random_net.state_dict(), tmp_path / "hub" / "checkpoints" / INCEPTION_FILE)
    assert "refused" in inception_unavailable_reason()  # not the published file
    blob = (tmp_path / "hub" / "checkpoints" / INCEPTION_FILE).read_bytes()  # this test alone accepts it, for wiring
    monkeypatch.setitem(W.KNOWN, "inception", dataclasses.replace(W.KNOWN["inception"], size=len(blob),
                                                                  sha256=hashlib.sha256(blob).hexdigest()))
    assert inception_unavailable_reason() is None
    space = inception_space(torch.device("cpu"))
    assert space.metric == "fid" and len(space.info["sha256"]) == 64
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(6, 1, 16, 16, generator=g) * 2 - 1  # grey images are repeated to RGB
    f = extract(space, grey)
    assert f.shape == (6, 2048) and f.dtype == torch.float64 and torch.isfinite(f).all()
    assert np.isfinite(features_distance(f[:3], f[3:]))


# -- few-shot cores ---------------------------------------------------------------------
def test_rejection_sampler_acceptance_rate_matches_integral():
    """z ~ N(0, 1), p(c|z) = sigmoid(2z): accepted fraction = int_0^inf sigmoid(2z) phi(z) dz."""
    rng = np.random.default_rng(0)
    sig = lambda z: 1 / (1 + np.exp(-2 * z))
    expected = integrate.quad(lambda z: sig(z) * sps.norm.pdf(z), 0, np.inf)[0]
    z, drawn = rejection_sample(lambda m: rng.normal(size=(m, 1)), lambda z: sig(z[:, 0]), 20_000, rng)
    assert z.shape == (20_000, 1) and (z > 0).all()  # p < 0.5 is never accepted
    assert 20_000 / drawn == pytest.approx(expected, abs=0.01)


def test_rejection_sampler_class_balance_on_a_known_mixture():
    """Classes +-1.5 with unit noise, prob = the true posterior: P(c=1 | accepted) has a closed integral."""
    rng = np.random.default_rng(1)
    post = lambda z: 1 / (1 + np.exp(-3 * z))  # p(c=1|z) for N(+-1.5, 1), equal priors

    def draw(m):
        c = rng.integers(0, 2, m)
        return np.stack([rng.normal(size=m) + np.where(c == 1, 1.5, -1.5), c], 1)

    marg = lambda z: 0.5 * (sps.norm.pdf(z, 1.5) + sps.norm.pdf(z, -1.5))
    num = integrate.quad(lambda z: post(z) ** 2 * marg(z), 0, np.inf)[0]
    den = integrate.quad(lambda z: post(z) * marg(z), 0, np.inf)[0]
    z, _ = rejection_sample(draw, lambda z: post(z[:, 0]), 20_000, rng)
    assert z[:, 1].mean() == pytest.approx(num / den, abs=0.01)


def test_rejection_sampler_gives_up_when_the_class_is_absent():
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="short of"):
        rejection_sample(lambda m: np.zeros((m, 2)), lambda z: np.zeros(len(z)), 10, rng, batch=100, max_draws=1000)


def test_labelled_sets_follow_the_d2c_protocol():
    positive = np.zeros(12_000, bool)
    positive[::4] = True
    cfg, rng = FewShotConfig(), np.random.default_rng(0)
    idx, y = labelled_set(positive, "binary", cfg, rng)
    assert (y == 1).sum() == 50 and (y == 0).sum() == 50 and len(set(idx)) == 100
    assert positive[idx[y == 1]].all() and not positive[idx[y == 0]].any()
    idx, y = labelled_set(positive, "pu", cfg, rng)
    pos_rows = idx[y == 1]
    assert len(set(pos_rows)) == 100 and (y == 1).sum() == (y == 0).sum() == 10_000  # oversampled to balance
    assert positive[pos_rows].all() and 0.15 < positive[idx[y == 0]].mean() < 0.35  # unlabeled holds positives
    with pytest.raises(Exception, match="needs 50 positives"):
        labelled_set(positive[:120], "binary", cfg, rng)


def test_repeat_interval_is_scipys_t_interval():
    v = [10.0, 12.5, 11.0]
    lo, hi = repeat_interval(v)
    ref = sps.t.interval(0.95, 2, loc=np.mean(v), scale=sps.sem(v))
    assert (lo, hi) == pytest.approx(ref)


# -- end to end ----------------------------------------------------------------------------
NET_OPTS = {"feature_net.steps": 40, "feature_net.n_train": 2000, "feature_net.n_test": 200}


def _run(tmp_path, task, models, options, cache="cache"):
    out, _ = run(RunOptions(tasks=(task,), models=tuple(str(m) for m in models), out=str(tmp_path / f"out_{task}"),
                            device="cpu", cache_dir=str(tmp_path / cache), progress=False, task_options={task: options}))
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "run.json"}


def test_sample_fid_end_to_end_with_cached_real_statistics(trained_diffae, trained_ddim, tmp_path):
    opts = {"n_samples": 24, "T": (10, 20), "T_latent": 10, **NET_OPTS}
    recs = _run(tmp_path, "sample_fid", [trained_diffae["dir"], trained_ddim["dir"]], opts)
    diffae, ddim = recs["sample_fid__diffae__shapes.json"], recs["sample_fid__ddim__shapes.json"]
    keys = {m["key"] for m in diffae["metrics"]}
    rows = [(T, z) for T in (10, 20) for z in ("prior", "autoencoding")]
    assert keys == ({f"fd_cnn/T={T}/z={z}" for T, z in rows} | {f"corner_gap/T={T}/z={z}" for T, z in rows}
                    | {"fd_cnn_floor"})
    assert {m["key"] for m in ddim["metrics"]} == {"fd_cnn/T=10/z=prior", "fd_cnn/T=20/z=prior", "fd_cnn_floor",
                                                   "corner_gap/T=10/z=prior", "corner_gap/T=20/z=prior"}
    for m in diffae["metrics"] + ddim["metrics"]:
        assert m["value"] >= 0 and m["n"] == 24
        assert m["ci_low"] <= m["value"] <= m["ci_high"]  # every main metric carries a CI (issue 13)
    fd = {m["key"]: m["value"] for m in diffae["metrics"]}
    # the floor does not depend on the model, and real images beat a barely trained model's samples
    assert fd["fd_cnn_floor"] == {m["key"]: m["value"] for m in ddim["metrics"]}["fd_cnn_floor"]
    assert fd["fd_cnn_floor"] < fd["fd_cnn/T=20/z=prior"]
    net = diffae["pretrained_weights"]["fd_cnn_shapes"]
    assert len(net["sha256"]) == 64 and 0 < net["class_accuracy"] <= 1
    assert any("FID not computed" in n for n in diffae["notes"])  # no InceptionV3 here: said, not faked
    # a second run is served every real-feature set, sample and the feature net from the cache
    again = _run(tmp_path, "sample_fid", [trained_diffae["dir"]], opts)["sample_fid__diffae__shapes.json"]
    assert again["cache"]["misses"] == 0
    assert [m["value"] for m in again["metrics"]] == [m["value"] for m in diffae["metrics"]]


def test_real_features_are_invalidated_when_the_data_changes(trained_diffae, tmp_path):
    cfg = FeatureNetConfig(steps=5, n_train=256, n_test=32)
    ctx = EvalContext(load_model(trained_diffae["dir"]), "shapes", cache=Cache(tmp_path), progress=False)
    space = feature_spaces(ctx, cfg, TaskResult())[0]
    a = ctx.real_features(space, "train", 32)
    misses = ctx.cache.misses
    assert torch.equal(ctx.real_features(space, "train", 32), a) and ctx.cache.misses == misses
    ds = ctx.dataset("train")
    changed = ds.uint8().copy()
    changed[0] = 255 - changed[0]  # one image differs
    ctx2 = EvalContext(ctx.model, "shapes", cache=ctx.cache, progress=False)
    ctx2._data[("train", ds.image_shape[1])] = ImageDataset(ds.name, ds.split, ds.attributes, ds.image_shape, changed,
                                                            binary_attributes=ds.binary_attributes,
                                                            class_column=ds.class_column)
    space2 = feature_spaces(ctx2, cfg, TaskResult())[0]  # the feature net is retrained on the changed data
    b = ctx2.real_features(space2, "train", 32)
    assert ctx2.cache.misses >= misses + 2 and space2.info["sha256"] != space.info["sha256"]
    assert not torch.equal(a, b)


def test_fewshot_fid_end_to_end(trained_diffae, trained_ddim, tmp_path):
    opts = {"attributes": ("is_circle",), "n_binary": 8, "n_pu_positive": 10, "n_pu_unlabeled": 100, "n_pool": 200,
            "n_samples": 16, "repeats": 2, "T": 10, "T_latent": 10, **NET_OPTS}
    recs = _run(tmp_path, "fewshot_fid", [trained_diffae["dir"], trained_ddim["dir"]], opts)
    rec = recs["fewshot_fid__diffae__shapes.json"]
    values = {m["key"]: m for m in rec["metrics"]}
    assert rec["task"]["version"] == 3
    assert set(values) == {f"fd_cnn/attr=is_circle/method={m}" for m in ("naive", "unconditional", "binary", "pu")} | {
        f"acceptance_rate/attr=is_circle/method={m}" for m in ("binary", "pu")}
    # the control: the prior's samples without rejection, at the conditional scores' n, with a bootstrap CI
    u = values["fd_cnn/attr=is_circle/method=unconditional"]
    assert np.isfinite(u["value"]) and u["value"] > 0 and u["ci_low"] <= u["value"] <= u["ci_high"] and u["n"] == 16
    for method in ("binary", "pu"):
        v = values[f"fd_cnn/attr=is_circle/method={method}"]
        assert v["value"] > 0 and v["ci_low"] <= v["value"] <= v["ci_high"] and v["n"] == 16
        assert 0 < values[f"acceptance_rate/attr=is_circle/method={method}"]["value"] <= 1
        assert len(rec["extra"]["per_repeat"][f"fd_cnn/is_circle/{method}"]["per_repeat"]) == 2
    ddim = recs["fewshot_fid__ddim__shapes.json"]
    assert ddim["metrics"] == [] and any("not applicable" in n for n in ddim["notes"])
