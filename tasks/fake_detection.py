"""fake_detection: how easily a classifier tells the model's samples from real images.

The Diff-AE paper's fake-detection experiment (PROTOCOL "Metrics, exactly":
Fake detection): a classifier is trained to separate real images from
unconditional samples, on class-balanced data split 0.7 / 0.2 / 0.1 (train /
test / val); the paper reports ~0.95 accuracy, falling as the number of
sampling steps T grows (T = 100, 200, 500). Lower detectability means samples
closer to the data, so for the model under test accuracy and AUROC are
lower-is-better (0.5 = indistinguishable).

Procedure per T in `T`: n_per_class real test-split images and n_per_class
samples (ctx.samples: z from the latent DDIM with T_latent steps, x_T ~ N(0, I),
T-step decoding); a seeded split stratified by class; a classifier trained from
scratch with Adam; the epoch with the best validation accuracy kept (early
stopping on val); test accuracy (threshold 0.5) and AUROC of P(fake) with
bootstrap CIs over test images.

Departures (recorded in the result): the paper fine-tunes an ImageNet-pretrained
ResNet-50, whose weights cannot be downloaded on these machines; the default
backbone is a small CNN trained from scratch, and "resnet50" is allowed only
when torchvision's weights file is already in torch.hub's checkpoint folder.
The CPU defaults use T = 10, 20, 50 and 500 images per class.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from diffae_bench.errors import DataError
from diffae_bench.metrics.stats import auroc_rows, percentile_ci, resample_indices
from diffae_bench.harness.task import Metric, Task, TaskResult

SPLIT_FRACTIONS = (0.7, 0.2, 0.1)  # train / test / val, as in the paper (PROTOCOL)
# torchvision's ImageNet ResNet-50 weight files (IMAGENET1K_V1, IMAGENET1K_V2), looked up, never downloaded.
RESNET50_FILES = ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth")
Backbone = Literal["small_cnn", "resnet50"]
BACKBONES = get_args(Backbone)


@dataclass(frozen=True)
class FakeDetectionConfig:
    T: tuple[int, ...] = (10, 20, 50)  # sampling T (the paper: 100, 200, 500; CPU default, recorded)
    n_per_class: int = 500  # real test-split images and generated samples, each (class-balanced)
    T_latent: int = 50  # steps of the latent DDIM that draws z_sem (Diff-AE; ignored by models without one); sample_fid's,
    #                     so the detector sees the very samples sample_fid scores (read from the cache, not redrawn)
    epochs: int = 10  # training epochs; the epoch with the best val accuracy is kept
    batch_size: int = 64  # classifier minibatch
    lr: float = 1e-3  # Adam learning rate
    backbone: Backbone = "small_cnn"  # "small_cnn" (from scratch) or "resnet50" (ImageNet weights, only if on disk)
    quantize: bool = True  # round samples to 8-bit levels, as saved images are, so the classifier cannot key on it
    split: str = "test"  # split the real images come from (held-out, never what the model trained on)
    grid_images: int = 8  # real / fake images shown per row in the figure


# -- classifier -------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """3 conv blocks (GroupNorm, ReLU, 2x pooling) + global average pool + linear: one logit, any C / H / W."""

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        layers, c = [], in_channels
        for i, w in enumerate((width, 2 * width, 4 * width)):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.GroupNorm(8, w), nn.ReLU()]
            if i < 2:  # two poolings keep 4x4 maps at 16 px; the global pool takes any remaining size
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3))).squeeze(1)


class ResNet50Detector(nn.Module):
    """torchvision ResNet-50 with ImageNet weights from a local file, a fresh 1-logit head (the paper's backbone)."""

    def __init__(self, weights_path: Path):
        super().__init__()
        from torchvision.models import resnet50

        self.net = resnet50()
        self.net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.net.fc = nn.Linear(self.net.fc.in_features, 1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:  # grey data sets: the ImageNet stem takes 3 channels
            x = x.expand(-1, 3, -1, -1)
        return self.net(((x + 1) / 2 - self.mean) / self.std).squeeze(1)


def resnet50_weights_path() -> Path:
    """torchvision's ResNet-50 ImageNet weights in torch.hub's checkpoint folder; a one-line DataError if absent."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = next((folder / f for f in RESNET50_FILES if (folder / f).is_file()), None)
    if path is None:
        raise DataError(f"backbone resnet50 needs torchvision's ImageNet weights ({' or '.join(RESNET50_FILES)}) "
                        f"in {folder}; they cannot be downloaded here (use backbone=small_cnn)")
    return path


def make_backbone(name: str, in_channels: int) -> nn.Module:
    if name == "small_cnn":
        return SmallCNN(in_channels)
    if name == "resnet50":
        return ResNet50Detector(resnet50_weights_path())
    raise DataError(f"unknown fake_detection backbone '{name}' (one of: {', '.join(BACKBONES)})")


# -- pure core --------------------------------------------------------------------------


def stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Indices of train / test / val (0.7 / 0.2 / 0.1 of each class), from a seeded permutation per class."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "test": [], "val": []}
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_train = int(round(SPLIT_FRACTIONS[0] * len(idx)))
        n_test = int(round(SPLIT_FRACTIONS[1] * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["test"].append(idx[n_train:n_train + n_test])
        parts["val"].append(idx[n_train + n_test:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


@torch.no_grad()
def _logits(net: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[s:s + batch_size].to(device)).float().cpu() for s in range(0, len(x), batch_size)])


def train_detector(x: torch.Tensor, y: torch.Tensor, splits: dict[str, np.ndarray], cfg, seed: int,
                   device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Train the backbone on splits['train'] with Adam; keep the epoch with the best val accuracy.

    Ties in val accuracy (frequent on a small val set) go to the lower val loss, then the earlier epoch.
    All randomness (init, batch order) comes from `seed`; the global RNG state is restored afterwards.
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_backbone(cfg.backbone, x.shape[1]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    g = torch.Generator().manual_seed(seed)
    tr, va = torch.as_tensor(splits["train"]), torch.as_tensor(splits["val"])
    best, best_key, history = None, None, []
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        for s in range(0, len(order), cfg.batch_size):
            b = order[s:s + cfg.batch_size]
            loss = loss_fn(net(x[b].to(device)), y[b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val_logits = _logits(net, x[va], cfg.batch_size, device)
        val_acc = float(((val_logits > 0).float() == y[va]).float().mean())
        val_loss = float(loss_fn(val_logits, y[va]))
        history.append({"epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss})
        key = (val_acc, -val_loss)
        if best_key is None or key > best_key:
            best_key, best = key, {"epoch": epoch, "state": copy.deepcopy(net.state_dict())}
    net.load_state_dict(best["state"])
    return net, {"best_epoch": best["epoch"], "val_accuracy": best_key[0], "history": history}


def score_detection(labels: np.ndarray, p_fake: np.ndarray, seed: int = 0) -> dict[str, tuple[float, tuple[float, float]]]:
    """Test accuracy (threshold 0.5) and AUROC of P(fake), each with a bootstrap CI over test images."""
    idx = resample_indices(len(labels), seed=seed)
    correct = (p_fake >= 0.5) == labels.astype(bool)
    acc = (float(correct.mean()), percentile_ci(correct[idx].mean(1)))
    auc_boot = auroc_rows(labels[idx], p_fake[idx])
    auc = (float(auroc_rows(labels, p_fake)[0]), percentile_ci(auc_boot))
    return {"accuracy": acc, "auroc": auc}


def detection_scores(real: torch.Tensor, fake: torch.Tensor, cfg, seed: int = 0,
                     device: torch.device | str = "cpu") -> dict:
    """Pure core: train a real-vs-fake classifier on images in [-1, 1] (N each) and score it on the test split.

    Returns {"accuracy": (value, ci), "auroc": (value, ci), "n_test", "n_train", "n_val", "best_epoch",
    "val_accuracy", "history"}; fake is label 1, so AUROC is of P(fake).
    """
    if real.shape[1:] != fake.shape[1:]:
        raise DataError(f"real images {tuple(real.shape[1:])} and samples {tuple(fake.shape[1:])} differ in shape")
    if len(real) != len(fake):
        raise DataError(f"fake detection wants balanced classes, got {len(real)} real and {len(fake)} fake")
    x = torch.cat([real, fake]).float()
    y = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))])
    splits = stratified_split(y.numpy(), seed)
    if min(len(v) for v in splits.values()) < 2:
        raise DataError(f"{len(real)} images per class leave a split with fewer than 2 images; use at least 10")
    net, fit = train_detector(x, y, splits, cfg, seed, device)
    te = splits["test"]
    p_fake = torch.sigmoid(_logits(net, x[te], cfg.batch_size, torch.device(device))).numpy().astype(np.float64)
    out = score_detection(y[te].numpy(), p_fake, seed=seed)
    return {**out, "n_test": len(te), "n_train": len(splits["train"]), "n_val": len(splits["val"]), **fit}


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images rounded to the 256 levels a saved PNG holds (real data arrive quantized)."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


# -- task ---------------------------------------------------------------------------------


class FakeDetection(Task):
    name = "fake_detection"
    # 2: per-item seeds (diffae_bench.rng): noise and samples no longer depend on n or the batch size
    # 3: T_latent 20 -> 50, sample_fid's: Diff-AE's samples change (DDIM and DMZ-style results do not: no latent sampler)
    version = 3
    Config = FakeDetectionConfig
    min_images = 10  # per class: 0.7 / 0.2 / 0.1 of each class must leave every split non-empty
    description = "accuracy / AUROC of a classifier telling real test images from samples at each T (lower is better)"
    metrics = (
        Metric("auroc", higher_is_better=False, main=True,
               description="test AUROC of a real-vs-sample classifier; lower = samples harder to detect (0.5 ideal)"),
        Metric("accuracy", higher_is_better=False,
               description="test accuracy of a real-vs-sample classifier; lower = harder to detect (0.5 ideal)"),
    )

    def run(self, ctx, cfg: FakeDetectionConfig) -> TaskResult:
        res = TaskResult()
        if cfg.backbone not in BACKBONES:
            raise DataError(f"unknown fake_detection backbone '{cfg.backbone}' (one of: {', '.join(BACKBONES)})")
        if cfg.backbone == "resnet50":
            from diffae_bench.checkpoint import file_sha256

            path = resnet50_weights_path()  # fails here, before any sampling, when the file is absent
            res.pretrained_weights["fake_detection_resnet50"] = {"path": str(path), "sha256": file_sha256(path)}
        n = ctx.n_images(cfg.split, cfg.n_per_class, minimum=self.min_images)
        real = ctx.images(cfg.split, n)
        fakes, per_T = {}, {}
        for T in cfg.T:
            fake = ctx.samples(n, T, cfg.T_latent)
            if not torch.isfinite(fake).all():
                res.notes.append(f"T={T}: samples hold non-finite values; not scored")
                continue
            fakes[T] = quantize_8bit(fake) if cfg.quantize else fake
            scores = detection_scores(real, fakes[T], cfg, seed=ctx.seed, device=ctx.device)
            for family in ("accuracy", "auroc"):
                value, ci = scores[family]
                res.add(family, value, ci, n=scores["n_test"], T=T)
            per_T[T] = {k: scores[k] for k in ("n_train", "n_val", "n_test", "best_epoch", "val_accuracy", "history")}
        res.extra.update({
            "backbone": cfg.backbone, "n_per_class": n, "split_fractions": dict(zip(("train", "test", "val"), SPLIT_FRACTIONS)),
            "per_T": per_T,
            "departures": [f"{cfg.backbone} backbone" + (" trained from scratch" if cfg.backbone == "small_cnn" else "")
                           + " (paper: ImageNet-pretrained ResNet-50)",
                           f"{n} images per class of {ctx.dataset_name}, T in {list(cfg.T)} (paper: T = 100, 200, 500)"],
        })
        self._figures(ctx, cfg, real, fakes, res)
        return res

    @staticmethod
    def _figures(ctx, cfg, real, fakes, res: TaskResult) -> None:
        from diffae_bench.figures import save_image_rows, save_metric_plot

        path = ctx.figure_path("real_vs_samples.png")
        if path is None or not fakes:
            return
        k = min(cfg.grid_images, len(real))
        res.figures.append(save_image_rows(path, [real[:k]] + [f[:k] for f in fakes.values()],
                                           ["real"] + [f"sample T={T}" for T in fakes]).name)
        if len(fakes) > 1:
            Ts = list(fakes)
            series = {fam: (Ts, [next(v.value for v in res.values if v.family == fam and v.params["T"] == T) for T in Ts])
                      for fam in ("accuracy", "auroc")}
            p = save_metric_plot(ctx.figure_path("detectability_vs_T.png"), series, "T (DDIM steps)", "test score",
                                 "real-vs-sample detection (0.5 = indistinguishable)")
            res.figures.append(p.name)


TASK = FakeDetection  # what the task registry lists under this name
