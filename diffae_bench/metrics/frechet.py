"""Frechet distances between image sets, computed by torch-fidelity.

Two feature spaces, never confused with each other (PROTOCOL "FID and LPIPS offline"):
  fid     torch-fidelity's InceptionV3 ("inception-v3-compat", 2048-d pool features): the
          real FID, computed only where torch-fidelity's published file (checked by its sha256,
          diffae_bench.metrics.weights) is in $TORCH_HOME/hub/checkpoints/ or given by --inception-weights.
  fd_cnn  the penultimate features of a small CNN the suite trains on the data set's own
          labels (class column + binary attributes), the usual practice for MNIST-like data.
          Trained deterministically from a seed, cached by the data's content hash and the
          network config; every record carries its sha256 and test accuracy. Its numbers
          are comparable only between records with the same network hash and data set.

Both are torch-fidelity feature extractors (FeatureExtractorBase, registered by name);
the mean/covariance statistics and the distance are torch-fidelity's own
(fid_featuresdict_to_statistics, fid_statistics_to_metric), fed float64 features so the
whole computation runs in float64.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_featuresdict_to_statistics, fid_statistics_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torch_fidelity.utils import create_feature_extractor
from tqdm import tqdm

from ..checkpoint import state_dict_sha256
from ..data import ImageDataset, unit_to_uint8
from ..errors import DataError
from . import weights as W

if TYPE_CHECKING:  # the cache imports this module (for its weights file names)
    from ..harness.cache import Cache

INCEPTION_FILE = W.KNOWN["inception"].file  # torch-fidelity's converted TF InceptionV3
CNN_EXTRACTOR = "diffae-bench-cnn"  # our extractor's name in torch-fidelity's registry
FEATURE_NET_VERSION = 1  # bump when the architecture or training recipe changes


@dataclass(frozen=True)
class FeatureNetConfig:
    width: int = 16  # channels at full resolution; 2x at 1/2, 4x at 1/4 and 1/8 of the side
    feature_dim: int = 128  # penultimate width: the space fd_cnn is measured in
    steps: int = 600  # optimisation steps (Adam): ~4 epochs of 20k images at batch 128
    batch_size: int = 128  # images per step
    lr: float = 2e-3  # Adam learning rate, constant (a cosine decay over so few steps learned less)
    n_train: int = 20_000  # first n images of the train split used to fit it
    n_test: int = 2_000  # first n test images its recorded accuracy is measured on
    seed: int = 0  # initialisation and batch order


class SmallCNN(nn.Module):
    """Conv stages at 1, 1/2, 1/4, 1/8 of the side (GroupNorm, SiLU) -> global pool -> feature_dim -> heads.

    Narrow at full resolution so that fitting it costs about a minute of CPU.
    GroupNorm rather than BatchNorm: an image's features never depend on the
    other images in its batch, so statistics do not depend on batch size.
    """

    def __init__(self, in_ch: int, n_classes: int, n_binary: int, cfg: FeatureNetConfig):
        super().__init__()
        w = cfg.width

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(8, o), nn.SiLU()]

        self.body = nn.Sequential(*block(in_ch, w), nn.AvgPool2d(2),
                                  *block(w, 2 * w), *block(2 * w, 2 * w), nn.AvgPool2d(2),
                                  *block(2 * w, 4 * w), nn.AvgPool2d(2),
                                  *block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(4 * w, cfg.feature_dim), nn.SiLU())
        self.class_head = nn.Linear(cfg.feature_dim, n_classes) if n_classes else None
        self.binary_head = nn.Linear(cfg.feature_dim, n_binary) if n_binary else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _labels(ds: ImageDataset) -> tuple[np.ndarray | None, np.ndarray | None, list]:
    """(class ids 0..K-1 or None, binary attribute matrix or None, class values)."""
    cls, classes = None, []
    if ds.class_column:
        classes = sorted(ds.attributes[ds.class_column].unique().tolist())
        cls = ds.attributes[ds.class_column].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    binary = ds.attributes[list(ds.binary_attributes)].to_numpy(np.float32) if ds.binary_attributes else None
    return cls, binary, classes


def train_feature_net(train: ImageDataset, test: ImageDataset, cfg: FeatureNetConfig,
                      progress: bool = True) -> tuple[SmallCNN, dict]:
    """Fit SmallCNN on the train split's labels; returns the net (eval mode, CPU) and its test accuracy."""
    cls, binary, classes = _labels(train)
    if cls is None and binary is None:
        raise DataError(f"data set {train.name} has no labels (class column or binary attributes): "
                        "no feature network for fd_cnn can be trained on it")
    torch.manual_seed(cfg.seed)
    n = min(cfg.n_train, len(train))
    net = SmallCNN(train.image_shape[0], len(classes), 0 if binary is None else binary.shape[1], cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = np.random.default_rng(cfg.seed)
    x_all = train.uint8(np.arange(n))
    net.train()
    for _ in tqdm(range(cfg.steps), desc=f"feature net {train.name}", disable=not progress, leave=False):
        idx = gen.integers(0, n, cfg.batch_size)
        x = torch.from_numpy(x_all[idx]).float().div(127.5).sub(1)
        f = net.features(x)
        loss = 0.0
        if net.class_head is not None:
            loss = loss + F.cross_entropy(net.class_head(f), torch.from_numpy(cls[idx]))
        if net.binary_head is not None:
            loss = loss + F.binary_cross_entropy_with_logits(net.binary_head(f), torch.from_numpy(binary[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval().requires_grad_(False)
    return net, _accuracy(net, test, cfg, classes)


@torch.no_grad()
def _accuracy(net: SmallCNN, test: ImageDataset, cfg: FeatureNetConfig, train_classes: list) -> dict:
    """Held-out accuracy of the class head (argmax) and of the binary heads (logit > 0, mean over attributes)."""
    _, binary, _ = _labels(test)
    m = min(cfg.n_test, len(test))
    f = torch.cat([net.features(x) for x in test.batches(256, limit=m)])
    out = {"n_test": m}
    if net.class_head is not None:
        ids = {c: i for i, c in enumerate(train_classes)}
        truth = test.attributes[test.class_column].iloc[:m].map(ids).fillna(-1).to_numpy(np.int64)
        out["class_accuracy"] = float((net.class_head(f).argmax(1).numpy() == truth).mean())
    if net.binary_head is not None:
        out["binary_accuracy"] = float(((net.binary_head(f) > 0).numpy() == (binary[:m] > 0.5)).mean())
    return out


# Committed feature networks (issue 13): fd_cnn is the same network on every machine. Training is
# seeded, but its float arithmetic differs between CPU kernel families and GPUs, so a network
# retrained elsewhere has other weights and moves every fd_cnn (the naive few-shot FD by 12 %).
COMMITTED_DIR = Path(__file__).resolve().parents[2] / "results" / "feature_nets"


def _feature_net_key(train: ImageDataset, test: ImageDataset, cfg: FeatureNetConfig) -> dict:
    return {"train": train.content_hash(), "test": test.content_hash(), "config": asdict(cfg),
            "version": FEATURE_NET_VERSION}


def committed_feature_net_path(train: ImageDataset, test: ImageDataset, cfg: FeatureNetConfig) -> Path:
    """Where the committed network for this data and config lives (whether or not it exists)."""
    digest = hashlib.sha256(json.dumps(_feature_net_key(train, test, cfg), sort_keys=True).encode()).hexdigest()[:16]
    return COMMITTED_DIR / f"{train.name}-{digest}.safetensors"


def _net_tensors(net: SmallCNN, acc: dict) -> dict[str, torch.Tensor]:
    return {**net.state_dict(), "_accuracy": torch.tensor([acc.get("class_accuracy") or -1.0,
                                                           acc.get("binary_accuracy") or -1.0, acc["n_test"]])}


def commit_feature_net(train: ImageDataset, test: ImageDataset, cfg: FeatureNetConfig, progress: bool = True) -> Path:
    """Train the network here and write it to results/feature_nets (python -m diffae_bench.references feature-nets)."""
    from safetensors.torch import save_file

    from ..checkpoint import atomic_write_bytes

    net, acc = train_feature_net(train, test, cfg, progress)
    path = committed_feature_net_path(train, test, cfg)
    meta = {"key": json.dumps(_feature_net_key(train, test, cfg), sort_keys=True), "sha256": state_dict_sha256(net)}
    atomic_write_bytes(path, lambda tmp: save_file(_net_tensors(net, acc), tmp, metadata=meta))
    return path


def cached_feature_net(train: ImageDataset, test: ImageDataset, cfg: FeatureNetConfig, cache: Cache,
                       progress: bool = True) -> tuple[SmallCNN, dict]:
    """The feature net for this data (content hash) and config.

    The committed network (results/feature_nets) where one exists for exactly
    this data and config, so every machine measures fd_cnn in the same space;
    otherwise trained here once and served from the cache, and the record says so.
    """
    from safetensors.torch import load_file

    cls, binary, classes = _labels(train)
    committed = committed_feature_net_path(train, test, cfg)
    if committed.is_file():
        state, source = load_file(str(committed)), f"committed: results/feature_nets/{committed.name}"
    else:
        state = cache.get_or_compute("feature_net", _feature_net_key(train, test, cfg),
                                     lambda: _net_tensors(*train_feature_net(train, test, cfg, progress)))
        source = "trained on this machine (no committed network for this data and config)"
    state = dict(state)
    acc_t = state.pop("_accuracy").tolist()
    net = SmallCNN(train.image_shape[0], len(classes), 0 if binary is None else binary.shape[1], cfg)
    net.load_state_dict(state)
    net.eval().requires_grad_(False)
    info = {"network": "SmallCNN", "sha256": state_dict_sha256(net), "config": asdict(cfg), "version": FEATURE_NET_VERSION,
            "trained_on": f"{train.name}/train first {min(cfg.n_train, len(train))} (hash {train.content_hash()[:12]})",
            "class_accuracy": acc_t[0] if acc_t[0] >= 0 else None,
            "binary_accuracy": acc_t[1] if acc_t[1] >= 0 else None, "n_test": int(acc_t[2]), "source": source}
    return net, info


# -- torch-fidelity feature extractors ----------------------------------------------------
class CNNFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity adapter for SmallCNN: uint8 (B, C, H, W) in, float64 penultimate features out."""

    def __init__(self, name, features_list, feature_net: SmallCNN | None = None, **kwargs):
        super().__init__(name, features_list)
        if feature_net is None:
            raise ValueError("CNNFeatureExtractor needs feature_net=")
        self.net = feature_net

    @staticmethod
    def get_provided_features_list():
        return ("penultimate",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "penultimate"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, x):
        return (self.net.features(x.float().div(127.5).sub(1)).double(),)


if CNN_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(CNN_EXTRACTOR, CNNFeatureExtractor)


def inception_unavailable_reason() -> str | None:
    """None when FID can be computed here (torch-fidelity's published file is found), else one line saying why not."""
    return W.unavailable_reason("inception")


@dataclass
class FeatureSpace:
    """A torch-fidelity extractor plus what a record must say about it."""

    metric: str  # metric family: "fid" or "fd_cnn"
    extractor: FeatureExtractorBase
    layer: str  # the feature the distance is measured on
    info: dict  # network, sha256 of its weights, accuracy where known
    channels: int  # channels the extractor takes (grey images are repeated to 3 for Inception)

    @property
    def id(self) -> str:
        return f"{self.metric}:{self.info['sha256']}"


def cnn_space(net: SmallCNN, info: dict, device: torch.device) -> FeatureSpace:
    ext = create_feature_extractor(CNN_EXTRACTOR, ["penultimate"], cuda=False, feature_net=net, verbose=False)
    return FeatureSpace("fd_cnn", ext.to(device), "penultimate", info, net.body[0].in_channels)


def inception_space(device: torch.device) -> FeatureSpace:
    """torch-fidelity's InceptionV3 from the verified local file (FileNotFoundError with the reason when there is none)."""
    path = W.verified_path("inception")
    ext = create_feature_extractor("inception-v3-compat", ["2048"], cuda=False, verbose=False,
                                   feature_extractor_weights_path=str(path))
    return FeatureSpace("fid", ext.to(device), "2048",
                        {"network": "InceptionV3 (torch-fidelity)", "path": str(path), "sha256": W.cached_sha256(path)}, 3)


@torch.no_grad()
def extract(space: FeatureSpace, images: torch.Tensor, batch_size: int = 128, progress: bool = False,
            desc: str = "features") -> torch.Tensor:
    """Features (n, D) float64 on the CPU of images in [-1, 1], quantised to uint8 as torch-fidelity expects."""
    dev = next(iter(space.extractor.parameters()), torch.empty(0)).device
    outs = []
    for s in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        x = torch.from_numpy(unit_to_uint8(images[s:s + batch_size]))
        if x.shape[1] == 1 and space.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        feats = space.extractor.convert_features_tuple_to_dict(space.extractor(x.to(dev)))
        outs.append(feats[space.layer].double().cpu())
    return torch.cat(outs)


def statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    """torch-fidelity's mean and covariance of float64 features (n, D)."""
    if len(features) < 2:
        raise ValueError(f"Frechet statistics need at least 2 images, got {len(features)}")
    return fid_featuresdict_to_statistics({"f": features.double()}, "f")


def frechet_distance(stats_a: dict, stats_b: dict) -> float:
    """torch-fidelity's ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    return float(fid_statistics_to_metric(stats_a, stats_b, verbose=False)[KEY_METRIC_FID])


def features_distance(fa: torch.Tensor, fb: torch.Tensor) -> float:
    """Frechet distance between two feature sets."""
    return frechet_distance(statistics(fa), statistics(fb))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def features_distance_ci(fa: torch.Tensor, fb: torch.Tensor, *, n_boot: int = 200, seed: int = 0,
                         alpha: float = 0.05) -> tuple[float, float]:
    """Basic (reverse-percentile) bootstrap CI of the Frechet distance, resampling the rows of fa (generated images).

    fb (the real images, the same for every model) is held fixed, so the interval
    is the sampling noise of the model's own images, what the gate must not
    mistake for a change. The basic interval [2 FD - q_hi, 2 FD - q_lo] rather
    than the percentile one, because FD is biased upward and more so on a
    resample (repeated rows shrink the covariance's rank): percentiles would sit
    above the estimate and let an equal value pass for "better". Each resample uses Tr((S_a S_b)^(1/2)) = sum of the
    square roots of the eigenvalues of S_b^(1/2) S_a S_b^(1/2) (a symmetric PSD
    matrix), with S_b^(1/2) computed once: one eigvalsh per resample instead of a
    general sqrtm. The identity is checked against torch-fidelity in the tests.
    """
    from .stats import percentile_ci, resample_indices

    a = fa.double().numpy()
    sb = statistics(fb)
    mu_b, root_b = sb["mu"], _psd_sqrt(sb["sigma"])
    tr_b = float(np.trace(sb["sigma"]))
    out = np.empty(n_boot)
    for i, idx in enumerate(resample_indices(len(a), n_boot=n_boot, seed=seed)):
        x = a[idx]
        mu_a = x.mean(0)
        sa = np.cov(x, rowvar=False)
        eig = np.linalg.eigvalsh(root_b @ sa @ root_b)
        out[i] = float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + tr_b - 2 * np.sqrt(np.clip(eig, 0, None)).sum())
    q_lo, q_hi = percentile_ci(out, alpha)
    fd = features_distance(fa, fb)
    return (max(0.0, 2 * fd - q_hi), 2 * fd - q_lo)


def add_sample_distances(result, spaces, images: torch.Tensor, real: dict, *, batch_size: int, n_boot: int,
                         seed: int, n: int, **params) -> None:
    """Into result (a TaskResult): each space's Frechet distance of `images` to `real[space.metric]` (the real
    images' features), with the bootstrap CI over the generated images, keyed by the space's metric and params."""
    for space in spaces:
        fake = extract(space, images, batch_size)
        ci = features_distance_ci(fake, real[space.metric], n_boot=n_boot, seed=seed)
        result.add(space.metric, features_distance(fake, real[space.metric]), ci, n=n, **params)


def frechet_distance_eig(fa: torch.Tensor, fb: torch.Tensor) -> float:
    """The Frechet distance by the eigenvalue identity of features_distance_ci (for its test)."""
    a, sb = statistics(fa), statistics(fb)
    root_b = _psd_sqrt(sb["sigma"])
    eig = np.linalg.eigvalsh(root_b @ a["sigma"] @ root_b)
    return float(((a["mu"] - sb["mu"]) ** 2).sum() + np.trace(a["sigma"]) + np.trace(sb["sigma"])
                 - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def feature_spaces(ctx, feature_net: FeatureNetConfig, result, inception: bool = True) -> list[FeatureSpace]:
    """fd_cnn (always; its net trained once per data set and config) and FID where InceptionV3 exists.

    ctx: the task's EvalContext (data, cache, device). The networks' hashes
    and accuracy go into result.pretrained_weights; a missing InceptionV3 into result.notes.
    """
    net, info = cached_feature_net(ctx.dataset("train"), ctx.dataset("test"), feature_net, ctx.cache, ctx.progress)
    spaces = [cnn_space(net, info, ctx.device)]
    result.pretrained_weights[f"fd_cnn_{ctx.dataset_name}"] = info
    if inception:
        reason = inception_unavailable_reason()
        if reason:
            result.notes.append(reason)
        else:
            space = inception_space(ctx.device)
            result.pretrained_weights["fid_inception_v3"] = space.info
            spaces.append(space)
    return spaces
