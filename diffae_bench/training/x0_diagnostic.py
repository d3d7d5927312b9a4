"""High-t x0 diagnostic, logged during `bench train` (issue 21).

A sample from pure noise gets its layout and background in the first DDIM
steps, from the x0 the model implies at high t. With eps-prediction that x0
is x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t) (Ho et al. eq. 4 solved
for x0), so an eps error becomes an x0 error times sqrt((1 - a_t) / a_t),
about 157 at t = 999: high-t x0 accuracy is learnt last, and a short budget
leaves it wrong (the issue's DDIM baseline on shapes: background of x0_hat
0.01 at t = 300 but 0.42 at t = 999). This check shows every run whether its
budget reaches it.

Every `diag_every` steps, on a few fixed images of the data set's test split
(the first n; the train split where there is no test split), each noised with
one fixed noise draw at t in TIMESTEPS: the mean |x0_hat - x0| / 2, i.e. in
[0, 1] pixel units, with x0_hat clipped to [-1, 1] as the DDIM sampler clips
it (diffusion._x0_and_eps). Models with a semantic code are conditioned on
their own images' codes (encode(x0), what reconstruction uses) and, as a
control, on the next image's code: at t where the two agree the decoder
ignores z there. Uses the EMA weights (what every evaluation uses), float32.
Written to <run>/x0_diagnostic.jsonl, one line per check (out=None: returned only,
as scripts/x0_table.py --measure uses it on a finished model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from .. import diffusion as D
from ..data import load_dataset
from ..errors import DataError

TIMESTEPS = (300, 600, 800, 900, 999)  # the high-t grid (t = 999: x_t is almost pure noise)
N_IMAGES = 16  # fixed images per check: 5 network calls of 16 images, negligible next to training
NOISE_SEED = 0  # one noise draw for the whole run (CPU generator: the same on every device)
LOG_NAME = "x0_diagnostic.jsonl"


@torch.no_grad()
def x0_errors(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor, noise: torch.Tensor,
              timesteps: tuple[int, ...], alpha_bar: torch.Tensor) -> dict[int, float]:
    """Mean |clip(x0_hat) - x0| / 2 at each t (in [0, 1] pixel units): the pure core.

    eps_fn(x_t, t) -> eps_hat with t a (B,) long tensor; x0 in [-1, 1];
    noise the fixed eps (same shape); alpha_bar float64 over 0..999.
    """
    out = {}
    for t in timesteps:
        tt = torch.full((len(x0),), t, dtype=torch.long, device=x0.device)
        x_t = D.q_sample(x0, tt, noise, alpha_bar)
        x0_hat, _ = D._x0_and_eps(eps_fn, x_t, t, alpha_bar[t].to(x0.device), clip=True)
        out[t] = float((x0_hat - x0).abs().mean()) / 2
    return out


class X0Diagnostic:
    """The check of one training run: fixed images and noise, and its log."""

    def __init__(self, dataset: str, root: str | None, image_size: int, out: Path | None, device: torch.device,
                 n_images: int = N_IMAGES, timesteps: tuple[int, ...] = TIMESTEPS):
        try:
            data, split = load_dataset(dataset, "test", root=root, image_size=image_size, limit=n_images), "test"
        except DataError:
            data, split = load_dataset(dataset, "train", root=root, image_size=image_size, limit=n_images), "train"
        self.split, self.timesteps = split, tuple(timesteps)
        self.path = Path(out) / LOG_NAME if out is not None else None
        self.x0 = data.tensor().to(device)
        self.noise = torch.randn(self.x0.shape, generator=torch.Generator().manual_seed(NOISE_SEED)).to(device)
        self.alpha_bar = D.image_alpha_bar(torch.device(device))
        self.last: dict | None = None  # the latest record (printed in the training summary)

    @torch.no_grad()
    def __call__(self, model, step: int, images_seen: int) -> dict | None:
        """Check `model` (the EMA copy, eval mode) and append a line to the log."""
        x0 = self.x0
        z = model.encode(x0) if model.has_semantic_latent else None
        own = x0_errors(lambda x, t: model.denoise(x, t, z), x0, self.noise, self.timesteps, self.alpha_bar)
        rec = {"step": step, "images_seen": images_seen, "weights": "ema", "split": self.split, "n_images": len(x0),
               "x0_mae": {str(t): round(v, 5) for t, v in own.items()}}
        if z is not None and len(x0) > 1:
            other = z.roll(1, dims=0)  # each image decoded with the next image's code
            rec["x0_mae_other_z"] = {str(t): round(v, 5) for t, v in x0_errors(
                lambda x, t: model.denoise(x, t, other), x0, self.noise, self.timesteps, self.alpha_bar).items()}
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        self.last = rec
        return rec


def summary_lines(rec: dict | None) -> list[str]:
    """The training summary's lines for the latest check."""
    if rec is None:
        return []
    fmt = lambda d: ", ".join(f"t={t} {v:.3f}" for t, v in d.items())
    lines = [f"high-t x0 error (EMA, mean |x0_hat - x0| in [0, 1], {rec['n_images']} {rec['split']} images, "
             f"step {rec['step']}): {fmt(rec['x0_mae'])}"]
    if "x0_mae_other_z" in rec:
        lines.append(f"  with another image's code: {fmt(rec['x0_mae_other_z'])}")
    return lines
