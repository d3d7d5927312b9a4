"""`bench demo`: the README's first command until reference models are committed.

Trains a tiny Diff-AE (autoencoder, then its latent DDIM) on the built-in
`shapes` data set for a few minutes of CPU, then shows what it learned: a
grid of unconditional samples, and `bench run` of the reconstruction and
linear-probe tasks on held-out images (records, table and figures in the run
directory). Re-running resumes training where it stopped and serves the
evaluation from the cache.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .device import resolve_device
from .figures import save_image_rows
from .checkpoint import file_sha256, load_checkpoint
from .models import CHECKPOINT, LATENT_CHECKPOINT, load_model
from .harness.records import record_rows
from .harness.runner import RunOptions, run
from .reporting.tables import render, rows_frame
from .training.train import TrainOptions, train_autoencoder, train_latent


def run_demo(preset: str = "tiny", steps: int = 1500, latent_steps: int = 1000, out: str = "runs/demo",
             device: str = "auto") -> Path:
    out_dir = Path(out)
    model_dir = out_dir / "diffae"
    print(f"[1/3] training a {preset} Diff-AE on shapes for {steps} steps -> {model_dir}")
    ae = TrainOptions(model="diffae", preset=preset, dataset="shapes", steps=steps, out=str(model_dir),
                      ckpt_every=max(100, steps // 5), device=device)
    summary = train_autoencoder(ae)
    if summary["interrupted"]:
        print("interrupted: run the same command to resume")
        return out_dir
    print(f"[2/3] training its latent DDIM for {latent_steps} steps")
    latent = model_dir / LATENT_CHECKPOINT
    if latent.is_file() and load_checkpoint(latent)[1].get("autoencoder_sha256") != file_sha256(model_dir / CHECKPOINT):
        latent.unlink()  # the autoencoder trained on (e.g. a larger --steps): its old latent DDIM no longer fits it
    train_latent(TrainOptions(**{**ae.__dict__, "steps": latent_steps, "ckpt_every": latent_steps}))

    model = load_model(model_dir, device=resolve_device(device), require_latent=True)
    samples = model.sample(16, T=20, T_latent=20, generator=torch.Generator().manual_seed(0))
    grid = save_image_rows(out_dir / "samples.png", [samples[:8], samples[8:]], ["samples T=20", ""])

    print("[3/3] evaluating: reconstruction and linear probes on held-out images")
    run_dir, records = run(RunOptions(
        tasks=("reconstruction", "linear_probe"), models=(str(model_dir),), out=str(out_dir / "eval"), device=device,
        task_options={"reconstruction": {"n_images": 64, "T": (10, 20, 50)},
                      "linear_probe": {"n_train": 1000, "n_test": 500, "T": 10}}))
    print()
    print(render(rows_frame([r for rec in records for r in record_rows(rec)]), "terminal", main_only=True))
    for rec in records:
        for note in rec["notes"]:
            print(f"note: {note}")
    print(f"samples: {grid}")
    print(f"figures and records: {run_dir}  (all metrics: bench table {run_dir})")
    print("This is a few minutes of CPU training: expect blurry samples; the numbers are real measurements of it.")
    return out_dir
