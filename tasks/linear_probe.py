"""linear_probe: how linearly decodable the data's attributes are from a representation.

For each binary attribute: standardise the representation with training-set
statistics, fit a logistic regression (scikit-learn) on training images and
report accuracy and AUROC on held-out test images; the mean AUROC over
attributes is the common figure across diffusion-autoencoder papers (Diff-AE
Table 4 reports it on CelebA). Representations, for every model alike:
  the model's own codes (Diff-AE z_sem; DMZ soft and hard bits),
  x_T       DDIM-inverted x_T (flattened): the DDIM baseline's representation,
  pixels    the raw image (a floor any learned code should beat),
  random_proj  pixels through a fixed random Gaussian projection to the code's
               width: a control for dimensionality alone.
A few-label setting fits the probe on k labelled images per class (mean over
`few_shot_draws` random draws).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from diffae_bench.errors import DataError
from diffae_bench.rng import derive_seed
from diffae_bench.metrics.stats import auroc_rows, percentile_ci, resample_indices
from diffae_bench.harness.task import Metric, Task, TaskResult


Representation = Literal["codes", "x_T", "pixels", "random_proj"]


@dataclass(frozen=True)
class LinearProbeConfig:
    n_train: int = 2000  # labelled training images (train split)
    n_test: int = 1000  # held-out images the probe is scored on (test split)
    attributes: tuple[str, ...] = ()  # binary attributes to probe; () = all of the data set's
    representations: tuple[Representation, ...] = ("codes", "x_T", "pixels", "random_proj")  # see module doc
    T: int = 20  # DDIM steps of the inversion for the x_T representation
    few_shot_k: tuple[int, ...] = (10,)  # labelled images per class in the few-label setting
    few_shot_draws: int = 5  # random labelled sets averaged in the few-label setting
    max_iter: int = 2000  # logistic-regression iterations (lbfgs)
    C: float = 1.0  # inverse L2 strength (scikit-learn's default)


# Decimals the probe's test logits are rounded to before the sigmoid (v3). Binary codes (DMZ hard
# bits) have twin bits, equal on every training image, whose weights come out exactly equal; two test
# images that differ only in which twin is set then score equal in exact arithmetic, yet summation
# order splits them by an ulp, one way or the other depending on the BLAS kernels (OpenBLAS picks them
# by CPU). Ranked, such a split moves AUROC: the reference subset's few-label hard-bit AUROC read
# 0.66428 with OpenBLAS's Haswell kernels, 0.66399 with SkylakeX and 0.66425 with Prescott. Rounded,
# those ties stay ties (credited 1/2, as exact arithmetic would) on every kernel: 0.66417 on all five
# tried. 1e-10 is ~4 orders above the splits (~1e-14) and far below the gaps between distinct scores.
PROBE_LOGIT_DECIMALS = 10


def fit_probe(train_X: np.ndarray, train_y: np.ndarray, test_X: np.ndarray, *, C: float = 1.0,
              max_iter: int = 2000) -> np.ndarray:
    """Pure core: standardise with training statistics, fit logistic regression, P(y=1) on the test set.

    P(y=1) is the sigmoid of the decision value (what predict_proba returns for two classes),
    rounded to PROBE_LOGIT_DECIMALS first so that equal scores stay equal on every BLAS.
    """
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(train_X, train_y)
    return expit(np.round(clf.decision_function(test_X), PROBE_LOGIT_DECIMALS))


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def score_probe(test_y: np.ndarray, probs: np.ndarray, seed: int = 0) -> dict[str, tuple[float, tuple[float, float]]]:
    """Pure core: accuracy (threshold 0.5) and AUROC of test probabilities, each with a bootstrap CI.

    probs may be (n,) or (draws, n): then each statistic is the mean over draws.
    """
    P = np.atleast_2d(probs)
    idx = resample_indices(len(test_y), seed=seed)
    acc = np.mean([((p >= 0.5) == test_y).mean() for p in P])
    acc_boot = np.mean([((p[idx] >= 0.5) == test_y[idx]).mean(1) for p in P], axis=0)
    auc = np.mean([_auroc(test_y, p) for p in P])
    auc_boot = np.mean([auroc_rows(test_y[idx], p[idx]) for p in P], axis=0)
    return {"accuracy": (float(acc), percentile_ci(acc_boot)), "auroc": (float(auc), percentile_ci(auc_boot))}


def mean_auroc(test_Y: np.ndarray, probs_by_attr: list[np.ndarray], seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean AUROC over attributes, bootstrapping test images jointly (one resample for all attributes).

    Each entry of probs_by_attr is (n,) or (draws, n); several draws are averaged as AUROCs, not as probabilities.
    """
    P = [np.atleast_2d(p) for p in probs_by_attr]
    idx = resample_indices(len(test_Y), seed=seed)
    value = np.mean([np.mean([_auroc(test_Y[:, a], d) for d in p]) for a, p in enumerate(P)])
    boot = np.mean([np.mean([auroc_rows(test_Y[idx, a], d[idx]) for d in p], axis=0) for a, p in enumerate(P)], axis=0)
    return float(value), percentile_ci(boot)


def few_label_indices(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray | None:
    """k random indices of each class, or None if a class has fewer than k."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) < k or len(neg) < k:
        return None
    return np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, k, replace=False)])


class LinearProbe(Task):
    name = "linear_probe"
    # 2: few-label draws seeded per (seed, attribute, k, draw), no longer one stream across representations
    # 3: test logits rounded (PROBE_LOGIT_DECIMALS): exact ties between binary codes' scores no longer depend on the BLAS
    version = 3
    Config = LinearProbeConfig
    needs_attributes = True
    min_images = 20  # of train and of test: fewer leave attributes with one class
    description = "logistic-regression probes per binary attribute: accuracy, AUROC, mean AUROC (held-out split)"
    metrics = (
        Metric("mean_auroc", higher_is_better=True, main=True, description="mean test AUROC over attributes"),
        Metric("auroc", higher_is_better=True, description="test AUROC of one attribute"),
        Metric("accuracy", higher_is_better=True, description="test accuracy of one attribute (threshold 0.5)"),
        Metric("fewshot_mean_auroc", higher_is_better=True, description="mean AUROC with k labels per class"),
    )

    def run(self, ctx, cfg: LinearProbeConfig) -> TaskResult:
        res = TaskResult()
        attrs = self._attributes(ctx, cfg)
        n_tr = ctx.n_images("train", cfg.n_train, minimum=self.min_images)
        n_te = ctx.n_images("test", cfg.n_test, minimum=self.min_images)
        Y_tr = ctx.attributes("train", n_tr)[list(attrs)].to_numpy().astype(np.int64)
        Y_te = ctx.attributes("test", n_te)[list(attrs)].to_numpy().astype(np.int64)
        reps = self._representations(ctx, cfg, n_tr, n_te, res)
        for rep, (X_tr, X_te) in reps.items():
            probs = []
            for a, attr in enumerate(attrs):
                if len(np.unique(Y_tr[:, a])) < 2:
                    raise DataError(f"attribute {attr} has one class among the {n_tr} training images; raise --limit")
                p = fit_probe(X_tr, Y_tr[:, a], X_te, C=cfg.C, max_iter=cfg.max_iter)
                probs.append(p)
                for family, (value, ci) in score_probe(Y_te[:, a], p, seed=ctx.seed).items():
                    res.add(family, value, ci, n=n_te, rep=rep, attr=attr)
            value, ci = mean_auroc(Y_te, probs, seed=ctx.seed)
            res.add("mean_auroc", value, ci, n=n_te, rep=rep)
            for k in cfg.few_shot_k:
                self._few_shot(rep, X_tr, X_te, Y_tr, Y_te, attrs, k, cfg, ctx.seed, res)
        res.extra["attributes"] = list(attrs)
        res.extra["positive_rate_test"] = {a: float(Y_te[:, i].mean()) for i, a in enumerate(attrs)}
        return res

    @staticmethod
    def _attributes(ctx, cfg) -> tuple[str, ...]:
        available = ctx.dataset("train").binary_attributes
        if not available:
            raise DataError(f"data set {ctx.dataset_name} has no binary attributes for linear probes")
        wanted = cfg.attributes or tuple(available)
        missing = [a for a in wanted if a not in available]
        if missing:
            raise DataError(f"data set {ctx.dataset_name} has no binary attribute(s) {missing} (has: {', '.join(available)})")
        return wanted

    @staticmethod
    def _representations(ctx, cfg, n_tr: int, n_te: int, res: TaskResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if "codes" in cfg.representations and not ctx.model.codes:
            res.notes.append(f"no semantic code: the {ctx.model.kind} model's representation is its inverted x_T")
        return ctx.representation_arrays(cfg.representations, n_tr, n_te, cfg.T)

    @staticmethod
    def _few_shot(rep, X_tr, X_te, Y_tr, Y_te, attrs, k, cfg, seed, res: TaskResult) -> None:
        probs_by_attr = []
        for a, attr in enumerate(attrs):
            draws = []
            for d in range(cfg.few_shot_draws):
                # Seeded per (seed, attribute, k, draw), not per representation: every representation
                # is probed on the same labelled images, and adding one changes no other's draws.
                rng = np.random.default_rng(derive_seed(seed, "few_shot", attr, k, d))
                idx = few_label_indices(Y_tr[:, a], k, rng)
                if idx is None:
                    res.notes.append(f"few-label k={k}: attribute {attr} has fewer than {k} examples of a class")
                    return
                draws.append(fit_probe(X_tr[idx], Y_tr[idx, a], X_te, C=cfg.C, max_iter=cfg.max_iter))
            probs_by_attr.append(np.stack(draws))
        value, ci = mean_auroc(Y_te, probs_by_attr, seed=seed)
        res.add("fewshot_mean_auroc", value, ci, n=len(Y_te), rep=rep, k=k)


TASK = LinearProbe  # what the task registry lists under this name
