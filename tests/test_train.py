"""Training: the loss falls, the decoder uses z_sem, runs resume exactly, bad input fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from diffae_bench.checkpoint import load_checkpoint, save_checkpoint
from diffae_bench.data import load_dataset
from diffae_bench.models.diffae import DiffAE
from diffae_bench.errors import BenchError, CheckpointError, TrainingDiverged
from diffae_bench.models import load_model
from diffae_bench.training.train import TrainOptions, train_autoencoder


def test_loss_fell(trained_diffae):
    assert trained_diffae["loss_ema"] < 0.6 * trained_diffae["first_loss"], trained_diffae


def test_decoder_output_depends_on_z_sem(trained_diffae):
    """The known failure of diffusion autoencoders: a decoder that ignores z.

    On held-out images at mid-range t, the denoising error with each image's
    own z_sem must be lower than with another image's z_sem (paired test over
    images, z-score > 3), and decoding one x_T with swapped codes must change
    the images while identical codes give identical images.
    """
    from diffae_bench import diffusion as D

    model = load_model(trained_diffae["dir"])
    x = load_dataset("shapes", "test", image_size=16, limit=128).tensor()
    g = torch.Generator().manual_seed(1)
    t = torch.randint(50, 700, (len(x),), generator=g)
    noise = torch.randn(x.shape, generator=g)
    x_t = D.q_sample(x, t, noise, torch.from_numpy(D.alphas_cumprod(D.linear_betas())).float())
    with torch.no_grad():
        z = model.encode(x)
        err = lambda codes: (model.unet(x_t, t, codes) - noise).pow(2).flatten(1).mean(1)
        gap = err(z.roll(1, dims=0)) - err(z)
    zscore = gap.mean() / (gap.std() / len(gap) ** 0.5)
    assert zscore > 3, (gap.mean(), zscore)

    x_T = model.noise(16, torch.Generator().manual_seed(0))
    same, again = model.decode(z[:16], x_T, T=10), model.decode(z[:16], x_T, T=10)
    swapped = model.decode(z.roll(1, dims=0)[:16], x_T, T=10)
    assert torch.equal(same, again)
    assert (same - swapped).pow(2).mean() > 1e-3  # an untrained decoder (zero output convs) gives exactly 0


def test_latent_ddim_samples_are_unstandardised(trained_diffae):
    model = load_model(trained_diffae["dir"], require_latent=True)
    assert bool(model.prior.trained)
    z = model.sample_latent(256, T_latent=20, generator=torch.Generator().manual_seed(0))
    assert z.shape == (256, model.z_dim) and torch.isfinite(z).all()
    # Samples live where the training codes live (un-standardised), not around 0 / 1.
    rel = ((z.mean(0) - model.prior.z_mean).abs() / model.prior.z_std).mean()
    assert rel < 1.0, rel
    assert model.prior.z_std.min() > 0


def _opts(tmp_path, **kw):
    base = dict(model="diffae", preset="tiny", dataset="shapes", train_limit=64, batch_size=8, seed=3,
                out=str(tmp_path / "run"), ckpt_every=2, device="cpu", progress=False)
    return TrainOptions(**{**base, **kw})


@pytest.mark.slow  # trains
def test_resume_continues_exactly(tmp_path):
    assert train_autoencoder(_opts(tmp_path, out=str(tmp_path / "a"), steps=6))["step"] == 6  # straight through
    train_autoencoder(_opts(tmp_path, out=str(tmp_path / "b"), steps=4))
    resumed = train_autoencoder(_opts(tmp_path, out=str(tmp_path / "b"), steps=6))
    assert resumed["step"] == 6
    ta, _ = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    tb, mb = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert mb["step"] == 6 and mb["images_seen"] == 48
    for k in ta:
        if k.startswith("online."):
            torch.testing.assert_close(ta[k], tb[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow  # trains
def test_resume_refuses_a_different_run(tmp_path):
    train_autoencoder(_opts(tmp_path, steps=2))
    with pytest.raises(CheckpointError, match="differs in seed"):
        train_autoencoder(_opts(tmp_path, steps=4, seed=4))


@pytest.mark.slow  # trains
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = DiffAE.loss

    def flaky(self, x0, generator=None):
        calls["n"] += 1
        loss = real_loss(self, x0, generator)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(DiffAE, "loss", flaky)
    with pytest.raises(TrainingDiverged, match="step 3.*step 2"):
        train_autoencoder(_opts(tmp_path, steps=10))
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert meta["step"] == 2


def test_mismatched_and_corrupt_checkpoints_are_one_line_errors(trained_diffae, tmp_path):
    tensors, meta = load_checkpoint(trained_diffae["dir"] / "checkpoint.safetensors")
    meta["model_config"]["unet"]["base_channels"] = 32
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, tensors, meta)
    with pytest.raises(CheckpointError, match="does not match its config") as e:
        load_model(bad)
    assert "\n" not in str(e.value)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_model(garbage)


def bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "diffae_bench.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow  # starts a subprocess
@pytest.mark.parametrize("args,expect", [
    (["--dataset", "shapez"], "did you mean 'shapes'"),
    (["--preset", "smal"], "did you mean 'small'"),
    (["--kind", "difae"], "did you mean 'diffae'"),
    (["--image-size", "30"], "does not fit"),
    (["--threads", "0"], "threads must be >= 1"),
])
def test_train_cli_bad_input(tmp_path, args, expect):
    out = tmp_path / "run"
    r = bench("train", "--out", str(out), "--steps", "1", "--train-limit", "8", "--device", "cpu", *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing may be written on bad input"


@pytest.mark.slow  # starts a subprocess
def test_train_cli_writes_config_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    r = bench("train", "--out", str(out), "--steps", "2", "--train-limit", "16", "--batch-size", "4", "--device", "cpu",
              "--threads", "3")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "diffae" and cfg["dataset"]["name"] == "shapes" and cfg["dataset"]["n_images"] == 16
    # the pinned thread count is what ran and what the run records (a CPU run's bits depend on it)
    assert cfg["numerics"]["torch_threads"] == 3 and cfg["numerics"]["device"].endswith(" x3 threads")
    assert (out / "checkpoint.safetensors").is_file()


def test_warmup_lr_is_linear_to_lr_then_flat():
    from diffae_bench.training.train import warmup_lr

    assert warmup_lr(1e-3, 0) is None  # no warm-up: the optimiser's own lr, untouched
    at = warmup_lr(1e-3, 4)
    assert [at(k) for k in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    from diffae_bench.training.train import _run_identity

    # a run saved before the option existed resumes as a run without warm-up
    assert _run_identity({"lr": 1e-3}) == _run_identity({"lr": 1e-3, "warmup_steps": 0})


@pytest.mark.slow  # trains
def test_warmup_sets_each_steps_lr_is_recorded_and_is_part_of_the_run(tmp_path):
    """3 steps of a 4-step warm-up end at 3/4 of lr (the optimiser state saved after step 3); the manifest's
    recipe says so; resuming with another warm-up is refused; the latent stage refuses one."""
    from diffae_bench.training.train import train_latent

    lr = 1e-3
    train_autoencoder(_opts(tmp_path, steps=3, lr=lr, warmup_steps=4, ckpt_every=3))
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert [g["lr"] for g in meta["optim_groups"]] == pytest.approx([0.75 * lr])
    assert meta["warmup_steps"] == 4 and "lr warm-up over the first 4 steps" in meta["recipe_change"]
    with pytest.raises(CheckpointError, match="differs in warmup_steps"):
        train_autoencoder(_opts(tmp_path, steps=4, lr=lr, warmup_steps=8))
    train_autoencoder(_opts(tmp_path, out=str(tmp_path / "flat"), steps=3, lr=lr, ckpt_every=3))
    _, flat = load_checkpoint(tmp_path / "flat" / "checkpoint.safetensors")
    assert [g["lr"] for g in flat["optim_groups"]] == pytest.approx([lr])  # without warm-up: lr from step 1
    assert flat["warmup_steps"] == 0 and "warm-up" not in flat["recipe_change"]
    with pytest.raises(BenchError, match="latent stage has none"):
        train_latent(_opts(tmp_path, steps=2, warmup_steps=4))
    with pytest.raises(BenchError, match="--warmup-steps must be a positive integer"):
        train_autoencoder(_opts(tmp_path, out=str(tmp_path / "neg"), steps=2, warmup_steps=-1))
