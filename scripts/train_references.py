"""Train the reference models (issue 8): Diff-AE, DDIM baseline and DMZ-style, `small` preset,
on `shapes` and MNIST at 32 x 32, each for a wall-clock budget, then Diff-AE's latent DDIM.

All trainings run at once (one process each; on a GPU they share it, on a CPU give them
fewer at a time with --only). Each stops cleanly at its deadline (SIGINT: the trainer
finishes the step and saves), so the step count is what the budget bought; the manifest
records it and `bench train ... --steps N` with that N repeats the run. Then every run is
exported (EMA weights, float16 for large tensors) to <export>/<name>/ with a manifest.

    python scripts/train_references.py --seconds 420 --mnist-root ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench.references import REFERENCES  # noqa: E402  (name, model, dataset): the six reference models
IMAGE_SIZE = 32  # MNIST's 28 px are padded to 32 by its loader
SEED = 0
LATENT_STEPS = 5000  # latent DDIM steps (batch 256): an MLP, seconds on a GPU, minutes on a CPU
NO_LIMIT = 10**9  # "train until the deadline"


def child(name: str, model: str, dataset: str, root: str, data_root: str | None, device: str) -> None:
    """One training run (the same TrainOptions `bench train` builds), stopped by SIGINT."""
    from diffae_bench.train import TrainOptions, train_autoencoder

    opts = TrainOptions(model=model, preset="small", dataset=dataset, data_root=data_root, image_size=IMAGE_SIZE,
                        steps=NO_LIMIT, seed=SEED, out=str(Path(root) / name), ckpt_every=2000, device=device,
                        progress=False)
    s = train_autoencoder(opts)
    print(json.dumps({"name": name, "step": s["step"], "loss_ema": s["loss_ema"], "images_per_s": s["images_per_s"],
                      "wall_s": s["wall_s"]}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, required=True, help="wall-clock training budget per model")
    ap.add_argument("--root", default="runs/ref", help="run directories")
    ap.add_argument("--export", default="runs/ref-export", help="exported reference models + manifest.json")
    ap.add_argument("--mnist-root", default=None, help="folder with MNIST's IDX files")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", default=None, help="comma-separated names to train")
    ap.add_argument("--latent-steps", type=int, default=LATENT_STEPS, help="latent DDIM steps (Diff-AE)")
    ap.add_argument("--child", nargs=3, metavar=("NAME", "MODEL", "DATASET"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        name, model, dataset = a.child
        child(name, model, dataset, a.root, a.mnist_root if dataset == "mnist" else None, a.device)
        return

    from diffae_bench.device import describe_device, resolve_device
    from diffae_bench.export import export_run, update_manifest
    from diffae_bench.provenance import machine
    from diffae_bench.train import TrainOptions, train_latent

    wanted = [r for r in REFERENCES if a.only is None or r[0] in a.only.split(",")]
    procs = []
    for name, model, dataset in wanted:
        cmd = [sys.executable, __file__, "--seconds", str(a.seconds), "--root", a.root, "--device", a.device,
               "--child", name, model, dataset] + (["--mnist-root", a.mnist_root] if a.mnist_root else [])
        procs.append((name, subprocess.Popen(cmd, cwd=ROOT)))
    deadline = time.time() + a.seconds
    while time.time() < deadline and any(p.poll() is None for _, p in procs):
        time.sleep(2)
    for _, p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # clean stop: finish the step, save
    for name, p in procs:
        if p.wait() != 0:
            raise SystemExit(f"training {name} failed (exit {p.returncode})")
    where = {"device": describe_device(resolve_device(a.device)), **machine()}
    for name, model, dataset in wanted:
        run = Path(a.root) / name
        (run / "trained_on.json").write_text(json.dumps(where, indent=2))
        if model == "diffae":
            train_latent(TrainOptions(out=str(run), steps=a.latent_steps, seed=SEED, device=a.device, progress=False,
                                      data_root=a.mnist_root if dataset == "mnist" else None))
        entry = export_run(run, Path(a.export) / name, dtype="float16")
        update_manifest(Path(a.export) / "manifest.json", entry)
        print(f"{name}: step {entry['steps']}, {entry['images_seen']} images, loss {entry['final_loss_ema']:.4f}, "
              f"files {sum(f['bytes'] for f in entry['files'].values()) / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
