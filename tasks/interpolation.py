"""interpolation: how smooth and faithful decoded paths between two held-out images are.

PROTOCOL ("Metrics, exactly", Interpolation): lerp on z_sem, slerp on x_T
(flattened, angle from cosine similarity); smoothness is measured, not
eyeballed. Pair i joins test image i to test image n_pairs + i. Each image is
encoded (z = encode(); x_T = DDIM inversion with T steps, conditioned on z),
the codes are walked in n_points steps (ends included) and every point is
decoded with decode(z, x_T, T). Paths, by model:
  Diff-AE   "z_lerp+xT_slerp"       model.latent_paths on encode() codes (paper Sec. 5.1)
  DMZ       "z_hamming+xT_slerp"    bit flips between the hard bits (latent_paths on
            "z_lerp+xT_slerp"       the SOFT codes, as baselines/dmz.py asks), and the
                                    continuous lerp of the soft codes
  DDIM      "xT_slerp"              no semantic latent: x_T is the only code
Per pair (pure core `path_stats`, pixel distances on [0, 1] images):
  step_mse      mean MSE between consecutive frames
  path_length   sum of consecutive RMS distances (RMS = sqrt(MSE), a true metric,
                so a straight pixel blend has length = RMS(a, b))
  step_ratio    max step / mean step (RMS): 1 = perfectly even, higher = one
                jump carries the change (the main score, lower is better)
  endpoint_mse  MSE of the first / last frame against the inputs, averaged
LPIPS variants of step and ratio are added where its weights exist. Values are
means over pairs with a bootstrap CI over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffae_bench.metrics import image as M
from diffae_bench.metrics.stats import mean_ci
from diffae_bench.metrics.lpips_metric import lpips_scorer
from diffae_bench.harness.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class InterpolationConfig:
    n_pairs: int = 16  # pairs of held-out images (pair i: image i -> image n_pairs + i)
    n_points: int = 9  # frames per path, both ends included
    T: int = 20  # DDIM steps for the inversion and for every decoding
    split: str = "test"  # held-out images, never the training set
    lpips: bool = True  # also measure steps with LPIPS where the AlexNet weights exist
    figure_pairs: int = 3  # pairs shown in the interpolation strip figure (one row per pair and path)


# -- pure cores -----------------------------------------------------------------------
def slerp(a: torch.Tensor, b: torch.Tensor, n_points: int) -> torch.Tensor:
    """Spherical interpolation of each row pair a[i] -> b[i] (any trailing shape, flattened for the angle).

    Returns (n_points, *a.shape), ends exact. The angle comes from the cosine
    similarity of the flattened vectors; nearly parallel pairs fall back to
    lerp (sin(theta) -> 0). Computed in float64: for unit vectors every point
    stays on the unit sphere to ~1e-12.
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
    A, B = a.double().flatten(1), b.double().flatten(1)  # (P, D)
    cos = (A * B).sum(1) / (A.norm(dim=1) * B.norm(dim=1)).clamp_min(1e-300)
    theta = torch.arccos(cos.clamp(-1, 1)).view(1, -1, 1)  # (1, P, 1)
    w = torch.linspace(0, 1, n_points, dtype=torch.float64).view(-1, 1, 1)  # (K, 1, 1)
    sin_t = torch.sin(theta)
    parallel = sin_t.abs() < 1e-8
    safe = torch.where(parallel, torch.ones_like(sin_t), sin_t)
    wa = torch.where(parallel, 1 - w, torch.sin((1 - w) * theta) / safe)
    wb = torch.where(parallel, w, torch.sin(w * theta) / safe)
    out = wa * A + wb * B  # (K, P, D)
    out[0], out[-1] = A, B  # exact ends (sin() rounding would leave ~1e-16 otherwise)
    return out.view(n_points, *a.shape).to(a.dtype)


def path_stats(frames: torch.Tensor, a: torch.Tensor, b: torch.Tensor, lpips_fn=None) -> dict[str, np.ndarray]:
    """Pure core: per-pair smoothness and fidelity of decoded paths, images in [-1, 1].

    frames (P, K, C, H, W): path p goes from frames[p, 0] (should be a[p]) to
    frames[p, -1] (should be b[p]). Returns arrays of shape (P,): step_mse,
    path_length, step_ratio, endpoint_mse, and with lpips_fn also step_lpips
    and lpips_step_ratio.
    """
    P, K = frames.shape[:2]
    if K < 2:
        raise ValueError(f"a path needs at least 2 frames, got {K}")
    first, second = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
    step_mse = M.mse(first, second).view(P, K - 1).numpy()
    step_rms = np.sqrt(step_mse)
    out = {"step_mse": step_mse.mean(1), "path_length": step_rms.sum(1), "step_ratio": _max_over_mean(step_rms),
           "endpoint_mse": 0.5 * (M.mse(frames[:, 0], a).numpy() + M.mse(frames[:, -1], b).numpy())}
    if lpips_fn is not None:
        step_lpips = lpips_fn(first, second).view(P, K - 1).numpy()
        out["step_lpips"] = step_lpips.mean(1)
        out["lpips_step_ratio"] = _max_over_mean(step_lpips)
    return out


def _max_over_mean(steps: np.ndarray) -> np.ndarray:
    """max / mean of each row; a path that never moves is perfectly even (1), not undefined."""
    mean = steps.mean(1)
    ratio = np.ones_like(mean)
    moving = mean > 0
    ratio[moving] = steps[moving].max(1) / mean[moving]
    return ratio


# -- task ------------------------------------------------------------------------
class Interpolation(Task):
    name = "interpolation"
    version = 1
    Config = InterpolationConfig
    min_images = 4  # at least 2 pairs for a CI
    description = "decoded paths between held-out pairs (lerp z_sem, slerp x_T): step uniformity, length, endpoints"
    metrics = (
        Metric("step_ratio", higher_is_better=False, main=True,
               description="max / mean consecutive-frame RMS pixel distance (1 = evenly paced path)"),
        Metric("step_mse", higher_is_better=False, description="mean pixel MSE between consecutive frames"),
        Metric("path_length", higher_is_better=False,
               description="sum of consecutive RMS pixel distances (straight blend = RMS(a, b))"),
        Metric("endpoint_mse", higher_is_better=False, description="MSE of the path's ends against the two inputs"),
        Metric("step_lpips", higher_is_better=False, description="mean LPIPS between consecutive frames"),
        Metric("lpips_step_ratio", higher_is_better=False, description="max / mean consecutive-frame LPIPS"),
    )

    def run(self, ctx, cfg: InterpolationConfig) -> TaskResult:
        res = TaskResult()
        n = ctx.n_images(cfg.split, 2 * cfg.n_pairs, minimum=self.min_images)
        P = n // 2
        ctx.used[cfg.split] = 2 * P  # an odd n leaves its last image out of every pair: record what was used
        x = ctx.images(cfg.split, 2 * P)
        a, b = x[:P], x[P:2 * P]
        lpips_fn = lpips_scorer(ctx.device, res) if cfg.lpips else None
        paths = self._code_paths(ctx, cfg, 2 * P)
        strips: dict[str, torch.Tensor] = {}
        for name, (z_path, xT_path) in paths.items():
            # Decoding K frames per pair is the expensive part: cached by content like every model output.
            key = ctx.cache_key(cfg.split, 2 * P, T=cfg.T, path=name, n_points=cfg.n_points)
            frames = ctx.cache.get_or_compute(
                "interpolation", key, lambda: {"frames": self._decode_path(ctx, z_path, xT_path, cfg.T)})["frames"]
            strips[name] = frames[:cfg.figure_pairs]
            for family, values in path_stats(frames, a, b, lpips_fn).items():
                res.add(family, float(values.mean()), mean_ci(values, seed=ctx.seed), n=P, path=name)
        if P < cfg.n_pairs:
            res.notes.append(f"{P} pairs (asked for {cfg.n_pairs}): capped by --limit or the split's size")
        res.extra["paths"] = list(paths)
        self._figure(ctx, a, b, strips, res)
        return res

    @staticmethod
    def _code_paths(ctx, cfg, n: int) -> dict[str, tuple[torch.Tensor | None, torch.Tensor]]:
        """name -> (z path (K, P, d) or None, x_T path (K, P, C, H, W)) for the first n = 2P images."""
        P, K = n // 2, cfg.n_points
        x_T = ctx.x_T(cfg.split, n, cfg.T)  # inverted with z = encode() where the model has one
        xT_path = slerp(x_T[:P], x_T[P:], K)
        if not ctx.model.has_semantic_latent:
            return {"xT_slerp": (None, xT_path)}
        # The code the model declares for paths (Diff-AE: z_sem; the DMZ-style
        # model: its soft code, which its Hamming path binarises).
        z = ctx.path_code(cfg.split, n)
        with torch.no_grad():
            z_paths = ctx.model.latent_paths(z[:P].to(ctx.device), z[P:].to(ctx.device), K)
        return {f"z_{kind}+xT_slerp": (zp.cpu(), xT_path) for kind, zp in z_paths.items()}

    @staticmethod
    def _decode_path(ctx, z_path: torch.Tensor | None, xT_path: torch.Tensor, T: int) -> torch.Tensor:
        """decode(z, x_T, T) of every path point, in batches of ctx.batch_size; returns (P, K, C, H, W)."""
        K, P = xT_path.shape[:2]
        xT_flat = xT_path.flatten(0, 1)  # (K*P, C, H, W), frame-major
        z_flat = None if z_path is None else z_path.flatten(0, 1)
        frames = ctx.decode(z_flat, xT_flat, T, desc="decode path")
        return frames.view(K, P, *xT_path.shape[2:]).transpose(0, 1)

    @staticmethod
    def _figure(ctx, a, b, strips: dict[str, torch.Tensor], res: TaskResult) -> None:
        from diffae_bench.figures import save_image_rows

        path = ctx.figure_path("interpolations.png")
        if path is None or not strips:
            return
        rows, labels = [], []
        for p in range(len(next(iter(strips.values())))):
            for name, frames in strips.items():
                # input a | decoded path | input b: the ends show endpoint fidelity at a glance
                rows.append(torch.cat([a[p:p + 1], frames[p], b[p:p + 1]]))
                labels.append(f"pair {p} {name}")
        res.figures.append(save_image_rows(path, rows, labels, label_width=150).name)


TASK = Interpolation  # what the task registry lists under this name
