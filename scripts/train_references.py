"""Train the reference models (issue 8): Diff-AE, DDIM baseline and DMZ-style, `small` preset,
on `shapes` and MNIST at 32 x 32, each for a wall-clock budget, then Diff-AE's latent DDIM.

All trainings run at once (one process each; on a GPU they share it, on a CPU give them
fewer at a time with --only). Each stops cleanly at its deadline (SIGINT: the trainer
finishes the step and saves), so the step count is what the budget bought; the manifest
records it and `bench train ... --steps N` with that N repeats the run. Then every run is
exported (EMA weights, float16 for large tensors) to <export>/<name>/ with a manifest.

    python scripts/train_references.py --seconds 420 --mnist-root ../shared/data/mnist
    python scripts/train_references.py --seconds 420 --init-from results/models   # a further leg of each
    python scripts/train_references.py --seconds 9000 --images 421824 --init-from DIR --only ddim-small-mnist
        # a leg that ends at the same total images as another model's (an equal-budget comparison)
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


def child(name: str, model: str, dataset: str, a: argparse.Namespace) -> None:
    """One training run (the same TrainOptions `bench train` builds), stopped at its deadline or image budget."""
    from diffae_bench.training.train import TrainOptions, train_autoencoder

    init_from = str(Path(a.init_from) / name) if a.init_from else None
    # --images: a budget over all legs (issue 21: equal budgets for models compared with each other)
    opts = TrainOptions(model=model, preset="small", dataset=dataset, data_root=a.mnist_root if dataset == "mnist" else None,
                        image_size=IMAGE_SIZE, steps=NO_LIMIT, images=a.images, seed=SEED, out=str(Path(a.root) / name),
                        ckpt_every=a.ckpt_every, device=a.device, progress=False, numeric_mode=a.numeric_mode,
                        batch_size=a.batch_size, lr=a.lr, diag_every=a.diag_every, max_seconds=a.seconds,
                        init_from=init_from, warmup_steps=a.warmup_steps, prediction=a.prediction)
    s = train_autoencoder(opts)
    print(json.dumps({"name": name, "step": s["step"], "loss_ema": s["loss_ema"], "images_per_s": s["images_per_s"],
                      "wall_s": s["wall_s"], "numeric_mode": a.numeric_mode, "x0_diagnostic": s.get("x0_diagnostic")}),
          flush=True)


def start_child(name: str, model: str, dataset: str, a: argparse.Namespace, seconds: float, mode: str, root: str):
    cmd = [sys.executable, __file__, "--seconds", f"{seconds:.1f}", "--root", root, "--device", a.device,
           "--numeric-mode", mode, "--diag-every", str(a.diag_every), "--ckpt-every", str(a.ckpt_every),
           "--child", name, model, dataset]
    cmd += ["--mnist-root", a.mnist_root] if a.mnist_root else []
    cmd += ["--batch-size", str(a.batch_size)] if a.batch_size else []
    cmd += ["--lr", str(a.lr)] if a.lr else []
    cmd += ["--init-from", a.init_from] if a.init_from else []
    cmd += ["--images", str(a.images)] if a.images else []
    cmd += ["--warmup-steps", str(a.warmup_steps)] if a.warmup_steps else []
    cmd += ["--prediction", a.prediction]
    log = open(Path(a.logs) / f"train-{name}.log", "a") if a.logs else None
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT if log else None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, required=True, help="wall-clock training budget per model")
    ap.add_argument("--root", default="runs/ref", help="run directories")
    ap.add_argument("--export", default="runs/ref-export", help="exported reference models + manifest.json")
    ap.add_argument("--mnist-root", default=None, help="folder with MNIST's IDX files")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", default=None, help="comma-separated names to train")
    ap.add_argument("--latent-steps", type=int, default=LATENT_STEPS, help="latent DDIM steps (Diff-AE)")
    ap.add_argument("--numeric-mode", default="fp32", help="network precision of the loss (bf16-cl: the GPU fast path)")
    ap.add_argument("--fallback-mode", default="fp32",
                    help="a run that fails in its first --fallback-window seconds restarts in this mode, in a new folder")
    ap.add_argument("--fallback-window", type=float, default=90.0)
    ap.add_argument("--batch-size", type=int, default=None, help="None: the preset's")
    ap.add_argument("--lr", type=float, default=None, help="None: the preset's")
    ap.add_argument("--diag-every", type=int, default=500, help="steps between high-t x0 checks")
    ap.add_argument("--ckpt-every", type=int, default=2000)
    ap.add_argument("--logs", default=None, help="each training's output to <logs>/train-<name>.log")
    ap.add_argument("--init-from", default=None,
                    help="a folder of exported models (<dir>/<name>, e.g. results/models): each run is a new leg "
                         "from that model's weights (diffae_bench/training/legs.py); the manifest lists every leg")
    ap.add_argument("--images", type=int, default=None,
                    help="stop each model at this many images over all its legs (with --init-from: the legs "
                         "before count); --seconds stays a cap. None: train until the deadline")
    ap.add_argument("--warmup-steps", type=int, default=0,
                    help="linear lr warm-up over each run's first N steps (a new --init-from leg restarts Adam)")
    ap.add_argument("--prediction", default="eps", choices=("eps", "v"),
                    help="what the image networks output: eps (the paper) or v (a departure; README \"Departures\")")
    ap.add_argument("--child", nargs=3, metavar=("NAME", "MODEL", "DATASET"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(*a.child, a)
        return

    from diffae_bench.device import describe_device, resolve_device
    from diffae_bench.training.export import export_run, update_manifest
    from diffae_bench.provenance import machine
    from diffae_bench.training.train import TrainOptions, train_latent

    wanted = [r for r in REFERENCES if a.only is None or r[0] in a.only.split(",")]
    t0 = time.time()
    deadline = t0 + a.seconds
    roots = {name: a.root for name, _, _ in wanted}
    procs = {name: start_child(name, model, data, a, a.seconds, a.numeric_mode, a.root) for name, model, data in wanted}
    fell_back = set()
    while any(p.poll() is None for p in procs.values()) or any(
            p.returncode != 0 and name not in fell_back and time.time() - t0 < a.fallback_window
            and a.fallback_mode != a.numeric_mode for name, p in procs.items()):
        for name, model, data in wanted:
            p = procs[name]
            if (p.poll() not in (None, 0) and name not in fell_back and time.time() - t0 < a.fallback_window
                    and a.fallback_mode != a.numeric_mode):
                # The fast mode failed on this machine early on: the same run, in the mode that always works.
                print(f"{name}: {a.numeric_mode} failed (exit {p.returncode}); restarting in {a.fallback_mode}", flush=True)
                fell_back.add(name)
                roots[name] = a.root + "-fallback"
                procs[name] = start_child(name, model, data, a, deadline - time.time(), a.fallback_mode, roots[name])
        if time.time() > deadline + 120:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)  # past the deadline: clean stop (finish the step, save)
        time.sleep(2)
    failed = [name for name, p in procs.items() if p.returncode != 0]
    for name in failed:
        print(f"training {name} failed (exit {procs[name].returncode})", flush=True)
    print(f"trainings done after {time.time() - t0:.0f} s", flush=True)
    where = {"device": describe_device(resolve_device(a.device)), **machine()}
    for name, model, dataset in wanted:
        if name in failed:
            continue
        run = Path(roots[name]) / name
        (run / "trained_on.json").write_text(json.dumps(where, indent=2))
        if model == "diffae":
            train_latent(TrainOptions(out=str(run), steps=a.latent_steps, seed=SEED, device=a.device, progress=False,
                                      data_root=a.mnist_root if dataset == "mnist" else None))
        entry = export_run(run, Path(a.export) / name, dtype="float16")
        update_manifest(Path(a.export) / "manifest.json", entry)
        print(f"{name}: step {entry['steps']}, {entry['images_seen']} images ({entry['images_seen_total']} over "
              f"{len(entry['legs'])} leg(s)), loss {entry['final_loss_ema']:.4f}, "
              f"files {sum(f['bytes'] for f in entry['files'].values()) / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
