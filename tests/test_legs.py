"""Training in legs (bench train --init-from): a new run from exported EMA weights, and the legs in the manifest."""

from __future__ import annotations

import pytest

from diffae_bench.errors import CheckpointError
from diffae_bench.training.export import export_run
from diffae_bench.training.train import TrainOptions, train_autoencoder

IMAGE_SIZE, TRAIN_IMAGES = 16, 512  # the trained fixtures' (conftest.py)
LEG_STEPS = 20


def _leg(out, init_from, model="diffae", **kw):
    opts = dict(model=model, preset="tiny", dataset="shapes", image_size=IMAGE_SIZE, steps=LEG_STEPS,
                train_limit=TRAIN_IMAGES, seed=0, out=str(out), ckpt_every=LEG_STEPS, device="cpu", progress=False,
                diag_every=0, init_from=str(init_from))
    return train_autoencoder(TrainOptions(**{**opts, **kw}))


def test_a_leg_starts_from_the_exported_weights_and_the_manifest_lists_every_leg(trained_diffae, tmp_path):
    export_run(trained_diffae["dir"], tmp_path / "leg1", name="leg1")
    leg2 = _leg(tmp_path / "run2", tmp_path / "leg1")
    # It starts where leg 1 ended, not from a fresh init: its first loss is near leg 1's last, far below leg 1's first.
    assert leg2["first_loss"] < 0.5 * trained_diffae["first_loss"]
    assert leg2["first_loss"] < 2 * trained_diffae["loss_ema"]
    entry = export_run(tmp_path / "run2", tmp_path / "leg2", name="leg2")
    first, second = entry["legs"]
    assert (first["step"], first["images_seen"]) == (trained_diffae["step"], trained_diffae["step"] * 32)
    assert first["command"].startswith("bench train --kind diffae") and "--init-from" not in first["command"]
    assert (second["step"], second["images_seen"]) == (LEG_STEPS, LEG_STEPS * 32)
    assert f"--init-from {tmp_path / 'leg1'}" in second["command"]
    assert second["command"] == entry["train_commands"][0]
    assert second["wall_s"] > 0 and second["machine"]
    assert entry["images_seen_total"] == first["images_seen"] + second["images_seen"]
    # A third leg from the second export carries both earlier legs.
    _leg(tmp_path / "run3", tmp_path / "leg2")
    assert [leg["step"] for leg in export_run(tmp_path / "run3", tmp_path / "leg3")["legs"]] == \
        [trained_diffae["step"], LEG_STEPS, LEG_STEPS]


def test_only_the_same_model_on_the_same_data_can_continue(trained_diffae, trained_ddim, tmp_path):
    with pytest.raises(CheckpointError, match="a different model kind"):
        _leg(tmp_path / "a", trained_ddim["dir"])
    with pytest.raises(CheckpointError, match="trained on other data"):
        _leg(tmp_path / "b", trained_diffae["dir"], train_limit=TRAIN_IMAGES // 2)
    _leg(tmp_path / "c", trained_diffae["dir"], steps=2, ckpt_every=2)
    with pytest.raises(CheckpointError, match="holds a different run"):  # resuming a leg needs its --init-from
        train_autoencoder(TrainOptions(model="diffae", preset="tiny", dataset="shapes", image_size=IMAGE_SIZE, steps=4,
                                       train_limit=TRAIN_IMAGES, seed=0, out=str(tmp_path / "c"), device="cpu",
                                       progress=False, diag_every=0))


def test_an_image_budget_over_all_legs_gives_the_steps_of_the_next_leg(trained_diffae, tmp_path):
    from diffae_bench.errors import BenchError
    from diffae_bench.training.legs import images_before, steps_to_total

    # issue 21's legs: an H200 leg of 638 steps at batch 256, then this CPU's batch 64, to the Diff-AE leg's 421,824
    assert steps_to_total(421_824, 638 * 256, 64) == 4039
    assert steps_to_total(421_824, 558 * 256, 64) == 4359
    assert steps_to_total(100, 0, 64) == 2  # not a whole number of batches: rounded up, never short of the budget
    assert steps_to_total(170, 160, 32) == 1  # less than a batch left: one step, not "nothing to train"
    with pytest.raises(BenchError, match="has seen 160 already"):
        steps_to_total(160, 160, 32)
    export_run(trained_diffae["dir"], tmp_path / "leg1", name="leg1")
    before = images_before(tmp_path / "leg1")
    assert before == trained_diffae["step"] * 32
    leg2 = _leg(tmp_path / "run2", tmp_path / "leg1", steps=steps_to_total(before + 64, before, 32), ckpt_every=1)
    assert leg2["step"] == 2 and images_before(tmp_path / "run2") == before + 64
    # The same budget as an option (bench train --images, scripts/train_references.py): the earlier legs count,
    # and the option's steps (here the default) do not.
    leg2b = _leg(tmp_path / "run2b", tmp_path / "leg1", images=before + 40, ckpt_every=1)
    assert leg2b["step"] == 2 and images_before(tmp_path / "run2b") == before + 64  # 40 images: 2 batches of 32
    with pytest.raises(BenchError, match="nothing to train"):
        _leg(tmp_path / "run2c", tmp_path / "leg1", images=before)


def test_the_three_models_of_a_data_set_must_be_at_one_image_budget():
    import json
    from pathlib import Path

    from diffae_bench.training.legs import unequal_budget

    def entry(total, batch):
        return {"images_seen_total": total, "legs": [{"batch_size": 256}, {"batch_size": batch}]}

    # a leg stops at the first step reaching the total: less than one batch of the last leg apart is one budget
    assert unequal_budget({"a": entry(700_416, 1024), "b": entry(700_928, 1024), "c": entry(701_439, 1024)}) is None
    why = unequal_budget({"a": entry(700_416, 1024), "b": entry(701_440, 1024), "c": entry(700_416, 1024)})
    assert why and "a 700,416" in why and "b 701,440" in why and "1,024" in why
    # the committed references: MNIST's three at 960,448 each; shapes' trained for a wall-clock budget (142k-165k)
    models = json.loads((Path(__file__).resolve().parent.parent / "results/models/manifest.json").read_text())["models"]
    assert unequal_budget({k: v for k, v in models.items() if k.endswith("-mnist")}) is None
    assert "not recorded" in unequal_budget({k: v for k, v in models.items() if k.endswith("-shapes")})
