"""Why shapes samples keep grey backgrounds (issue 21): a tiny-model diagnostic that runs on the CPU.

Trains (or reads) tiny DDIM baselines at 16 px on data variants that differ in one thing, and prints
per model: the samples' background (the four 4x4 corners, in [0, 1]; real images: ~0), the x0 it
implies at high t on noised real images, and its eps error at high t next to that of a predictor
that knows only the data's mean image, eps = (x_t - sqrt(ab) * mean) / sqrt(1 - ab).

  data:  shapes (colour, 3 channels); shapes_grey3 (its luminance, in 3 equal channels);
         shapes_grey1 (the same luminance as 1 channel); mnist (1 channel)
  --param v: the same network read as v, eps = sqrt(1 - ab) x_t + sqrt(ab) v, trained on v's MSE
         (L_simple / ab); v-simple: read as v, trained on the paper's L_simple (MSE on eps) unchanged.
         Recipe experiments, NOT the paper's: Diff-AE's network predicts eps.

  python scripts/background_probe.py train RUN --data shapes_grey3 [--param v] [--steps 3000] [--seed 0]
  python scripts/background_probe.py probe RUN [RUN ...]
  python scripts/background_probe.py table RECORD [...]     # the page's small-preset table from sample_fid records
  python scripts/background_probe.py grid RUN OUT.png        # 32 samples at T = 100, seed 0, 4x nearest;
                                                             # RUN may be any trained model folder

The variants and the v reading exist only in this script's process (registered and patched here);
`train` runs `bench train --kind ddim --preset tiny --image-size 16 --seed SEED --threads 1` in-process
and writes the script's options to RUN/probe.json, which `probe` reads back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench import diffusion as D  # noqa: E402
from diffae_bench.data import DATASETS, load_dataset  # noqa: E402
from diffae_bench.metrics.image import corner_means  # noqa: E402

SIZE = 16
ALPHA_BAR = torch.from_numpy(D.alphas_cumprod(D.linear_betas())).float()
HIGH_T = (999, 900, 800, 600, 300)


def _grey(split: str = "train", channels: int = 3, **kw):
    ds = load_dataset("shapes", split, **kw)
    lum = ds.images.astype(np.float32).mean(1, keepdims=True).round().astype(np.uint8)
    images = np.repeat(lum, channels, 1)
    return dataclasses.replace(ds, images=images, name=f"shapes_grey{channels}",
                               image_shape=(channels, *ds.image_shape[1:]), _hash=None)


DATASETS.add("shapes_grey3", lambda split="train", **kw: _grey(split, 3, **kw))
DATASETS.add("shapes_grey1", lambda split="train", **kw: _grey(split, 1, **kw))


def read_as_v(v_loss: bool = True) -> None:
    """Patch this process: every UNet output is v; with v_loss, the training loss is v's MSE (L_simple / ab_t per
    sample), else L_simple as it is (the eps the v reading gives, against the true eps)."""
    from diffae_bench.models import loss as L
    from diffae_bench.nets.unet import UNet

    eps_forward = UNet.forward

    def v_forward(self, x, t, z=None):
        return D.eps_from_v(x, eps_forward(self, x, t, z), ALPHA_BAR.to(x.device)[t])

    def v_mse(self, eps_fn, x0, generator=None):
        b, where = x0.shape[0], L.draw_device(generator)
        t = L.sharded(lambda n: torch.randint(0, D.T_TRAIN, (n,), generator=generator, device=where), b).to(x0.device)
        noise = L.sharded(lambda n: torch.randn((n, *x0.shape[1:]), generator=generator, device=where), b).to(x0.device)
        x_t = D.q_sample(x0, t, noise, self.alpha_bar_on(x0.device))
        ab = ALPHA_BAR.to(x0.device)[t].reshape(-1, *([1] * (x0.ndim - 1)))
        return ((eps_fn(x_t, t).float() - noise.float()) ** 2 / ab).mean()  # = MSE(v_hat, v)

    UNet.forward = v_forward
    if v_loss:
        L.DiffusionLoss.__call__ = v_mse


@torch.no_grad()
def probe(run: Path) -> dict:
    from diffae_bench.models import load_model

    opts = json.loads((run / "probe.json").read_text())
    model = load_model(run, "cpu")
    real = load_dataset(opts["data"], "train", image_size=SIZE)
    x0 = torch.from_numpy(real.uint8(np.arange(256))).float() / 127.5 - 1
    out = {"run": run.name, "data": opts["data"], "param": opts["param"], "seed": opts.get("seed", 0),
           "images": opts["steps"] * opts["batch"],
           "real corner": corner_means(x0).mean().item()}
    for T in (20, 100):
        c = corner_means(model.sample(128, T, generator=torch.Generator().manual_seed(0)))
        out[f"samples T={T}: corner"] = c.mean().item()
        out[f"samples T={T}: black"] = (c < 0.05).float().mean().item()
    g = torch.Generator().manual_seed(3)
    mean_image = x0.mean(0, keepdim=True)
    for t in HIGH_T:
        ab = ALPHA_BAR[t]
        noise = torch.randn(x0.shape, generator=g)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        eps = model.denoise(x_t, torch.full((len(x0),), t), None)
        out[f"t={t}: x0 corner"] = corner_means(D.x0_from_eps(x_t, eps, ab).clamp(-1, 1)).mean().item()
        out[f"t={t}: eps mse"] = ((eps - noise) ** 2).mean().item()
        out[f"t={t}: eps mse, mean image"] = ((D.eps_from_x0(x_t, mean_image, ab) - noise) ** 2).mean().item()
    return out


@torch.no_grad()
def grid(run: Path, out: Path) -> int:
    from diffae_bench.models import load_model
    from torchvision.utils import make_grid
    from PIL import Image

    # A run of this script reads its output as its probe.json says; any other model (a reference, or one
    # trained with `bench train --prediction v`) as its stored config says (UNetConfig.prediction).
    probe_json = run / "probe.json"
    if probe_json.is_file() and json.loads(probe_json.read_text())["param"] != "eps":
        read_as_v()
    samples = load_model(run, "cpu").sample(32, 100, generator=torch.Generator().manual_seed(0))
    g = make_grid((samples.clamp(-1, 1) + 1) / 2, nrow=16, padding=1)
    img = Image.fromarray((g.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    img.resize((img.width * 4, img.height * 4), Image.NEAREST).save(out)
    return 0


SMALL_T = (10, 20, 50, 100)  # sample_fid's T grid


def small_preset_table(records: list[Path]) -> str:
    """The page's small-preset table, from sample_fid records (one row per record; values as recorded, 3 digits)."""
    head = ("| model | reading | images | corner gap T = 10 / 20 / 50 / 100 | corner gap T = 100 [95 % CI] "
            "| fd_cnn T = 10 / 20 / 50 / 100 | fd_cnn T = 100 [95 % CI] | fd_cnn floor |\n|" + "---|" * 8)
    lines = [head]
    for path in records:
        rec = json.loads(Path(path).read_text())
        m = {x["key"]: x for x in rec["metrics"]}
        unet = rec["model"]["describe"]["config"]["unet"]
        images = rec["model"]["train"].get("images_seen_total") or rec["model"]["train"]["images_seen"]
        ci = lambda k: f"{m[k]['value']:.3g} [{m[k]['ci_low']:.3g}, {m[k]['ci_high']:.3g}]"
        lines.append(" | ".join([
            f"| {rec['model']['label']}", unet.get("prediction", "eps"), f"{images:,}",
            " / ".join(f"{m[f'corner_gap/T={T}/z=prior']['value']:.3g}" for T in SMALL_T), ci("corner_gap/T=100/z=prior"),
            " / ".join(f"{m[f'fd_cnn/T={T}/z=prior']['value']:.3g}" for T in SMALL_T), ci("fd_cnn/T=100/z=prior"),
            f"{m['fd_cnn_floor']['value']:.3g} |"]))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("run", type=Path)
    t.add_argument("--data", required=True, choices=["shapes", "shapes_grey3", "shapes_grey1", "mnist"])
    t.add_argument("--param", default="eps", choices=["eps", "v", "v-simple"])
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("probe")
    p.add_argument("runs", type=Path, nargs="+")
    gr = sub.add_parser("grid")
    gr.add_argument("run", type=Path)
    gr.add_argument("out", type=Path)
    tb = sub.add_parser("table")
    tb.add_argument("records", type=Path, nargs="+")
    a = ap.parse_args()
    if a.cmd == "table":
        print(small_preset_table(a.records))
        return 0
    torch.set_num_threads(1)
    if a.cmd == "grid":
        return grid(a.run, a.out)
    if a.cmd == "train":
        if a.param != "eps":
            read_as_v(v_loss=a.param == "v")
        from diffae_bench.cli import main as bench

        sys.argv = ["bench", "train", "--kind", "ddim", "--preset", "tiny", "--dataset", a.data, "--image-size", str(SIZE),
                    "--steps", str(a.steps), "--seed", str(a.seed), "--threads", "1", "--out", str(a.run), "--quiet"]
        try:
            bench()
        except SystemExit as e:
            if e.code:
                return int(e.code)
        (a.run / "probe.json").write_text(json.dumps({"data": a.data, "param": a.param, "steps": a.steps, "batch": 32, "seed": a.seed}))
        return 0
    readings = {"eps" if json.loads((run / "probe.json").read_text())["param"] == "eps" else "v" for run in a.runs}
    if len(readings) > 1:
        print("error: probe eps runs and v runs in separate calls (the v reading patches the process)", file=sys.stderr)
        return 2
    if readings == {"v"}:
        read_as_v()  # the reading is all that sampling and probing need (the loss is not used)
    rows = [probe(run) for run in a.runs]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
