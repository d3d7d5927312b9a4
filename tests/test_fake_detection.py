"""fake_detection: the real-vs-sample classifier at chance on real-vs-real, near 1 on broken samples, end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import diffae_bench.tasks.fake_detection as FD  # self-registers the task
from diffae_bench.data import load_dataset
from diffae_bench.errors import DataError
from diffae_bench.harness.runner import RunOptions, run
from diffae_bench.harness.task import get_task

QUICK = dataclasses.replace(FD.FakeDetectionConfig(), epochs=5)


@pytest.fixture(scope="module")
def shapes_test():
    return load_dataset("shapes", "test", image_size=16, limit=400).tensor()


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat([0, 1], 100)
    s = FD.stratified_split(labels, seed=3)
    assert [len(s[k]) for k in ("train", "test", "val")] == [140, 40, 20]
    for k in s:  # each part holds both classes equally
        assert labels[s[k]].sum() * 2 == len(s[k])
    assert len(np.unique(np.concatenate(list(s.values())))) == 200
    assert all((FD.stratified_split(labels, seed=3)[k] == s[k]).all() for k in s)
    assert not (FD.stratified_split(labels, seed=4)["test"] == s["test"]).all()


def test_real_vs_real_is_at_chance(shapes_test):
    # two disjoint halves of the same split: nothing to detect
    out = FD.detection_scores(shapes_test[:200], shapes_test[200:400], QUICK, seed=0)
    assert out["n_test"] == 80 and out["n_train"] == 280 and out["n_val"] == 40
    for family in ("accuracy", "auroc"):
        value, (lo, hi) = out[family]
        assert lo <= value <= hi
        assert lo <= 0.5 <= hi or abs(value - 0.5) < 0.12, (family, value, lo, hi)


@pytest.mark.parametrize("broken", ["uniform_noise", "all_grey"])
def test_obviously_broken_samples_are_detected(shapes_test, broken):
    real = shapes_test[:100]
    g = torch.Generator().manual_seed(0)
    fake = torch.rand(real.shape, generator=g) * 2 - 1 if broken == "uniform_noise" else torch.zeros_like(real)
    out = FD.detection_scores(real, fake, QUICK, seed=0)
    assert out["accuracy"][0] > 0.95 and out["auroc"][0] > 0.95, out


def test_deterministic_for_a_seed_and_leaves_global_rng_alone(shapes_test):
    real, fake = shapes_test[:60], shapes_test[60:120].flip(3)  # mirrored images: a mild, learnable difference
    cfg = dataclasses.replace(QUICK, epochs=2)
    state = torch.get_rng_state()
    a = FD.detection_scores(real, fake, cfg, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = FD.detection_scores(real, fake, cfg, seed=1)
    assert a["accuracy"] == b["accuracy"] and a["auroc"] == b["auroc"] and a["history"] == b["history"]


def test_best_val_epoch_is_kept(shapes_test):
    out = FD.detection_scores(shapes_test[:60], torch.zeros(60, 3, 16, 16), dataclasses.replace(QUICK, epochs=3), seed=0)
    hist = out["history"]
    assert len(hist) == 3 and out["val_accuracy"] == max(h["val_accuracy"] for h in hist)
    assert hist[out["best_epoch"] - 1]["val_accuracy"] == out["val_accuracy"]


def test_small_cnn_takes_any_channels_and_size():
    for shape in [(2, 1, 28, 28), (2, 3, 16, 16), (2, 3, 64, 48)]:
        assert FD.SmallCNN(shape[1])(torch.zeros(shape)).shape == (2,)


def test_bad_inputs_are_one_line_errors(shapes_test, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="balanced"):
        FD.detection_scores(shapes_test[:20], shapes_test[20:30], QUICK)
    with pytest.raises(DataError, match="shape"):
        FD.detection_scores(shapes_test[:20], torch.zeros(20, 1, 16, 16), QUICK)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # no weights there
    with pytest.raises(DataError, match="resnet50.*cannot be downloaded"):
        FD.make_backbone("resnet50", 3)
    with pytest.raises(DataError, match="unknown"):
        FD.make_backbone("vgg", 3)


def test_task_declares_lower_detectability_as_better():
    cls = get_task("fake_detection")
    assert cls is FD.FakeDetection and cls.version == 3
    assert cls.metric("auroc").main and not cls.metric("auroc").higher_is_better
    assert not cls.metric("accuracy").higher_is_better
    cfg = cls.make_config({"T": 10})
    assert cfg.T == (10,) and cfg.backbone == "small_cnn" and cfg.n_per_class == 500
    # v3: sample_fid's T_latent, so both tasks read the same cached samples
    assert cfg.T_latent == get_task("sample_fid").make_config({}).T_latent


def test_end_to_end_on_the_tiny_diffae(trained_diffae, tmp_path):
    opts = RunOptions(tasks=("fake_detection",), models=(str(trained_diffae["dir"]),), out=str(tmp_path / "run"),
                      device="cpu", cache_dir=str(tmp_path / "cache"), progress=False,
                      task_options={"fake_detection": {"n_per_class": 40, "T": (10, 20), "epochs": 2}})
    out, records = run(opts)
    rec = json.loads((out / "fake_detection__diffae__shapes.json").read_text())
    assert rec["task"]["name"] == "fake_detection" and rec["task"]["config"]["T"] == [10, 20]
    by_key = {m["key"]: m for m in rec["metrics"]}
    assert set(by_key) == {"accuracy/T=10", "auroc/T=10", "accuracy/T=20", "auroc/T=20"}
    for m in by_key.values():
        assert 0 <= m["value"] <= 1 and m["ci_low"] <= m["value"] <= m["ci_high"] and m["n"] == 16
    assert rec["dataset"]["splits"]["test"]["n_used"] == 40
    assert rec["extra"]["backbone"] == "small_cnn" and rec["pretrained_weights"] == {}
    assert (out / "fake_detection__diffae__real_vs_samples.png").is_file()
    assert (out / "fake_detection__diffae__detectability_vs_T.png").is_file()


def test_resnet50_backbone_wiring_with_a_locally_saved_state_dict(tmp_path, monkeypatch):
    """Wiring only: a randomly initialised ResNet-50 saved where torchvision's weights would be."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), folder / FD.RESNET50_FILES[0])
    cfg = dataclasses.replace(FD.FakeDetectionConfig(), backbone="resnet50", epochs=1, batch_size=16)
    real = torch.rand(20, 1, 32, 32) * 2 - 1  # grey images are expanded to the ImageNet stem's 3 channels
    out = FD.detection_scores(real, torch.zeros(20, 1, 32, 32), cfg, seed=0)
    assert out["n_test"] == 8 and 0.0 <= out["accuracy"][0] <= 1.0
