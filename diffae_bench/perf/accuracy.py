"""`bench perf --accuracy`: the metric deltas that decide each path's numeric mode, and the cost slopes.

On a tiny Diff-AE trained briefly on `shapes` at 16 px (a fresh model decodes
nothing worth comparing: its output convs are zero-initialised), each
candidate mode is swapped into ONE path at a time, everything else in fp32:

  decode  reconstruction of fp32-inverted x_T decoded in the mode
  invert  x_T inverted in the mode, decoded in fp32
  encode  mean probe AUROC over the data set's binary attributes on codes encoded in the mode

and the deltas against all-fp32 are checked against numerics.TOLERANCES
(SSIM within 0.002, MSE within 2 %, AUROC within 0.005): PASS / FAIL. The
train path (issue 21): bench train's loss and gradient in the mode against
fp32 on the same batches, t and noise (loss within 1 %, gradient cosine >=
0.99); `--run DIR` checks only that, on a trained run of any preset. Scores
come from the tasks' own pure cores (reconstruction's score_reconstruction,
linear_probe's fit_probe / mean_auroc).

Slopes: decode wall time for n in {64, 128, 256} images (T = 10) and for T in
{10, 20, 40} (n = 64), streamed in batches as EvalContext does; time per
image and per image-step should be flat (linear cost), and peak memory flat in n.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..data import load_dataset
from ..device import resolve_device
from ..models import load_model
from ..numerics import TOLERANCES, PathModes, apply_numeric_modes, get_mode, runs_natively
from .throughput import PeakMemory, machine_line
from ..training.train import TrainOptions, train_autoencoder
from ..training.step import BatchSource, StepSetup, make_loss_fn


def _batched(fn, *xs: torch.Tensor, bs: int = 64) -> torch.Tensor:
    dev = xs[0].device if xs else "cpu"
    return torch.cat([fn(*[x[s:s + bs].to(dev) for x in xs]).float() for s in range(0, len(xs[0]), bs)])


def _recon_scores(x: torch.Tensor, rec: torch.Tensor) -> tuple[float, float]:
    from ..tasks.reconstruction import score_reconstruction

    s = score_reconstruction(x.cpu(), rec.cpu())
    return float(s["ssim"].mean()), float(s["mse"].mean())


def _probe_auroc(z_tr: torch.Tensor, y_tr: np.ndarray, z_te: torch.Tensor, y_te: np.ndarray) -> float:
    from ..tasks.linear_probe import fit_probe, mean_auroc

    probs = [fit_probe(z_tr.cpu().numpy(), y_tr[:, a], z_te.cpu().numpy()) for a in range(y_tr.shape[1])]
    return mean_auroc(y_te, probs)[0]


def train_loss_agreement(model, data, mode: str, device: torch.device, batch_size: int = 64, n_batches: int = 4,
                         seed: int = 0) -> dict:
    """The training loss and its gradient in `mode` against fp32, on the same batches, t and noise.

    Dropout off (eval mode) so that the two passes compute the same function;
    the batches come from bench train's own BatchSource and loss (train_step).
    Returns the largest relative loss difference and the smallest cosine
    between the two gradients (all parameters the loss reaches, concatenated).
    """
    was_training = model.training
    model.eval()
    rel, cos = [], []
    for b in range(n_batches):
        got = {}
        for m in ("fp32", mode):
            setup = StepSetup(numeric_mode=m)
            model.to(memory_format=torch.channels_last if get_mode(m).channels_last else torch.contiguous_format)
            gen = torch.Generator().manual_seed(seed + b)
            loss_fn = make_loss_fn(model, BatchSource(data, batch_size, device, gen, setup), gen, setup, device)
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = loss_fn()
                loss.backward()
            grads = [p.grad.flatten().double() for p in model.parameters() if p.grad is not None]
            got[m] = (float(loss.detach()), torch.cat(grads))
        rel.append(abs(got[mode][0] - got["fp32"][0]) / abs(got["fp32"][0]))
        cos.append(float(torch.nn.functional.cosine_similarity(got[mode][1], got["fp32"][1], dim=0)))
    model.zero_grad(set_to_none=True)
    model.to(memory_format=torch.contiguous_format).train(was_training)
    return {"mode": mode, "loss_rel_diff_max": max(rel), "grad_cosine_min": min(cos), "n_batches": n_batches,
            "batch_size": batch_size,
            "pass": max(rel) <= TOLERANCES["train_loss_rel"] and min(cos) >= TOLERANCES["train_grad_cos"]}


def train_agreement_report(run_dir: str, modes: list[str], device: str = "auto", batch_size: int = 64,
                           n_batches: int = 4) -> list[dict]:
    """`bench perf --accuracy --run DIR`: train_loss_agreement of each mode on a trained run's EMA weights."""
    dev = resolve_device(device)
    model = load_model(run_dir, dev).requires_grad_(True)
    dm = model.train_meta["dataset"]
    data = load_dataset(dm["name"], "train", root=dm.get("root"), image_size=dm["image_shape"][-1], limit=4096)
    print(machine_line(dev))
    print(f"train path, {run_dir} (step {model.train_meta['step']}), {n_batches} batches of {batch_size}: "
          f"tolerances loss within {TOLERANCES['train_loss_rel']:.0%}, gradient cosine >= {TOLERANCES['train_grad_cos']}")
    rows = []
    for name in modes:
        r = train_loss_agreement(model, data, get_mode(name).name, dev, batch_size, n_batches)
        rows.append(r)
        print(f"train   {name:8s} max |dloss|/loss {r['loss_rel_diff_max']:.5f}  min grad cosine "
              f"{r['grad_cosine_min']:.5f}  {'PASS' if r['pass'] else 'FAIL'}", flush=True)
    return rows


def train_tiny(out: Path, steps: int, device: str) -> None:
    train_autoencoder(TrainOptions(model="diffae", preset="tiny", dataset="shapes", image_size=16, steps=steps,
                                   out=str(out), ckpt_every=steps, device=device, progress=False, seed=0))


def accuracy(modes: list[str], device: str = "auto", steps: int = 300, n: int = 64, n_probe: int = 256,
             Ts: tuple[int, ...] = (10, 20), run_dir: str | None = None) -> list[dict]:
    dev = resolve_device(device)
    print(machine_line(dev))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(run_dir or tmp) / "tiny16"
        t0 = time.perf_counter()
        if not (out / "checkpoint.safetensors").exists():
            train_tiny(out, steps, device)
        model = load_model(out, dev).eval()
        print(f"model: tiny Diff-AE, 16 px, trained {steps} steps on shapes ({time.perf_counter() - t0:.0f} s)")
        test, train = (load_dataset("shapes", s, image_size=16) for s in ("test", "train"))
        x = test.tensor(np.arange(n)).to(dev)
        attrs = list(train.binary_attributes)
        x_tr, x_te = train.tensor(np.arange(n_probe)).to(dev), test.tensor(np.arange(n_probe // 2)).to(dev)
        y_tr = train.attributes.iloc[:n_probe][attrs].to_numpy().astype(np.int64)
        y_te = test.attributes.iloc[:n_probe // 2][attrs].to_numpy().astype(np.int64)

        def scores(m: PathModes) -> dict:
            apply_numeric_modes(model, m)
            r = {"auroc": _probe_auroc(_batched(model.encode, x_tr), y_tr, _batched(model.encode, x_te), y_te)}
            apply_numeric_modes(model, PathModes(decode=m.decode, invert=m.invert))  # z for decoding: fp32 (encode judged by probes)
            z = _batched(model.encode, x)
            for T in Ts:
                xT = _batched(lambda a, b: model.encode_stochastic(a, T, b), x, z)
                r[f"ssim@{T}"], r[f"mse@{T}"] = _recon_scores(x, _batched(lambda a, b: model.decode(a, b, T), z, xT))
            return r

        ref = scores(PathModes())
        print("fp32 reference: " + ", ".join(f"{k} {v:.4f}" for k, v in ref.items()))
        print(f"tolerances: |dSSIM| <= {TOLERANCES['ssim_abs']}, |dMSE| <= {TOLERANCES['mse_rel']:.0%}, "
              f"|dAUROC| <= {TOLERANCES['auroc_abs']}")
        print(f"{'path':7s} {'mode':8s} {'max |dSSIM|':>11s} {'max dMSE %':>10s} {'|dAUROC|':>9s}  verdict")
        rows = []
        for name in modes:
            get_mode(name)
            if not runs_natively(name, dev):
                print(f"(note: {name} is not native on {dev}; measured anyway, slowly)")
            for path in ("decode", "invert", "encode"):
                r = scores(PathModes(**{path: name}))
                d_ssim = max(abs(r[f"ssim@{T}"] - ref[f"ssim@{T}"]) for T in Ts)
                d_mse = max(abs(r[f"mse@{T}"] - ref[f"mse@{T}"]) / ref[f"mse@{T}"] for T in Ts)
                d_auc = abs(r["auroc"] - ref["auroc"])
                checks = ([d_auc <= TOLERANCES["auroc_abs"]] if path == "encode"
                          else [d_ssim <= TOLERANCES["ssim_abs"], d_mse <= TOLERANCES["mse_rel"]])
                ok = all(checks)
                rows.append({"path": path, "mode": name, "d_ssim": d_ssim, "d_mse_rel": d_mse, "d_auroc": d_auc, "pass": ok})
                ssim_s, mse_s = (f"{'-':>11s}", f"{'-':>10s}") if path == "encode" else (f"{d_ssim:11.5f}", f"{100 * d_mse:10.2f}")
                auc_s = f"{d_auc:9.4f}" if path == "encode" else f"{'-':>9s}"
                print(f"{path:7s} {name:8s} {ssim_s} {mse_s} {auc_s}  {'PASS' if ok else 'FAIL'}", flush=True)
        apply_numeric_modes(model, PathModes())
        train16 = load_dataset("shapes", "train", image_size=16, limit=1024)
        for name in modes:
            r = train_loss_agreement(model.requires_grad_(True), train16, get_mode(name).name, dev)
            rows.append({"path": "train", **r})
            print(f"train   {name:8s} max |dloss|/loss {r['loss_rel_diff_max']:.5f}  min grad cosine "
                  f"{r['grad_cosine_min']:.5f}  {'PASS' if r['pass'] else 'FAIL'}", flush=True)
        model.requires_grad_(False).eval()
        slopes(model, x, dev)
    return rows


def slopes(model, x: torch.Tensor, dev: torch.device, ns=(64, 128, 256), Ts=(10, 20, 40), bs: int = 32) -> None:
    """Decode cost vs n and vs T (streamed in batches of bs), with peak memory vs n."""
    z1 = model.encode(x[:1])

    def decode(n: int, T: int) -> tuple[float, float | None]:
        g = torch.Generator().manual_seed(0)
        with PeakMemory(dev) as mem:
            t0 = time.perf_counter()
            for s in range(0, n, bs):
                b = min(bs, n - s)
                model.decode(z1.expand(b, -1), torch.randn((b, *model.image_shape), generator=g).to(dev), T).cpu()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
        return wall, mem.mib

    decode(bs, 10)  # warm-up
    print(f"cost slopes (tiny, 16 px, decode, batches of {bs}):")
    for n in ns:
        wall, mib = decode(n, 10)
        print(f"  n {n:4d}  T 10: {1000 * wall:7.0f} ms, {1000 * wall / n:5.0f} ms/image, "
              f"peak {mib if mib is None else round(mib)} MiB")
    for T in Ts:
        wall, _ = decode(ns[0], T)
        print(f"  n {ns[0]:4d}  T {T:2d}: {1000 * wall:7.0f} ms, {1000 * wall / (ns[0] * T):5.1f} ms/image-step")
