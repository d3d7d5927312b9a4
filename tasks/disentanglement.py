"""disentanglement: DCI and MIG of each representation against the data's generative factors.

Data sets that declare generative factors (ImageDataset.factors: shapes' shape, colour,
size, x, y, rotation; dSprites' shape, scale, orientation, pos_x, pos_y) are scored;
elsewhere the task gives a note and no numbers. MNIST is not applicable: its digit is one
labelled factor of many unlabelled ones (slant, stroke width), and DCI's disentanglement is
undefined for a single factor (its entropy is taken to base K, the number of factors).

Factors are made discrete as disentanglement_lib's are: a factor with at most
`max_factor_classes` distinct values keeps its classes (shape, colour); any other is cut into
`factor_bins` equal-width bins of its training range (size, x, y, rotation; dSprites'
32 positions and 40 orientations). Rotation is unidentifiable for circles (a quarter of shapes).

DCI (Eastwood & Williams 2018, in disentanglement_lib's form). Per factor, a predictor of
the discretised factor from the standardised code, fitted on training images; importance
R[d, k] of code d for factor k; with P over factors of each code and over codes of each factor,
  disentanglement = sum_d rho_d (1 - H_K(P[d, :])),  rho_d = sum_k R[d, k] / sum R
  completeness    = sum_k w_k (1 - H_D(P[:, k])),    w_k = sum_d R[d, k] / sum R
  informativeness = mean over factors of held-out accuracy.
Departure: disentanglement_lib fits gradient-boosted trees (importance = their
feature_importances_); 100 boosting rounds per class on a 3072-d pixel code are hours on a CPU,
so here the predictor is multinomial logistic regression (L2, C = 10) and R[d, k] the mean
|weight| of code d over the factor's classes, each factor's column normalised to sum 1 as tree
importances do. Eastwood & Williams also used a linear (lasso) predictor. C = 10 rather than the
probes' 1: a linear softmax needs large weights to cut one dimension into 10 ordered bins, and
at C = 1 the factors themselves, as a code, reach only 0.80 informativeness (0.92 at C = 10).

MIG (Chen et al. 2018, disentanglement_lib's form): each code dimension cut into 20
equal-width bins (np.histogram), I(code_d; factor_k) from the joint counts (natural log, equal
to sklearn.metrics.mutual_info_score), and per factor the gap between the two most informative
codes over H(factor_k), averaged over factors. Computed on the training images (no fit is
involved, so any images will do; disentanglement_lib draws fresh ones).

CIs, over images: informativeness by the percentile bootstrap (stats.resample_indices). MIG, D
and C are plug-in information statistics whose bootstrap resamples are biased (duplicated images
inflate the mutual information of unrelated codes and let a refit lean on them) by about as much
as their spread: on the factors-as-codes oracle the percentile interval of MIG lay wholly below
the estimate, and a basic (bias-reflecting) interval wholly above it. A CI must hold the value
for the regression gate, so theirs is the resampling spread recentred on the estimate:
[v - (m - q2.5), v + (q97.5 - m)], m the resamples' mean. D and C need a refit per resample,
so their spread comes from only `dci_refits` refits (a rough interval).
Representations: every code the model
declares (ctx.codes), the inverted x_T at `T` steps, and the pixels (a floor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from diffae_bench.rng import derive_seed
from diffae_bench.metrics.stats import percentile_ci, resample_indices
from diffae_bench.harness.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class DisentanglementConfig:
    n_train: int = 1000  # training images: DCI's predictors are fitted on them; MIG is measured on them
    n_test: int = 500  # held-out images DCI's informativeness is measured on
    representations: tuple[str, ...] = ("codes", "x_T", "pixels")  # the model's codes, inverted x_T, raw pixels
    T: int = 10  # DDIM steps of the inversion for the x_T representation (the probes use 20; 10 halves the cost)
    mig_bins: int = 20  # equal-width bins per code dimension (disentanglement_lib's MIG default)
    max_factor_classes: int = 10  # a factor with more distinct values than this is binned
    factor_bins: int = 10  # equal-width bins of such a factor's training range
    C: float = 10.0  # inverse L2 strength of the DCI predictors (see the module doc for why not the probes' 1)
    max_iter: int = 500  # lbfgs iterations of each DCI predictor
    dci_refits: int = 10  # refits on resampled training images for the D and C intervals
    mig_candidates: int = 32  # per factor, the codes (most informative on all images) a MIG resample ranks


def recentred_ci(value: float, boot: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """The resamples' percentile interval moved so that their mean sits on the estimate (nan resamples ignored)."""
    b = np.asarray(boot, np.float64)
    b = b[np.isfinite(b)]
    if len(b) < 2 or not np.isfinite(value):
        return (float("nan"), float("nan"))
    lo, hi = percentile_ci(b, alpha)
    return (float(value - (b.mean() - lo)), float(value + (hi - b.mean())))


# -- factors --------------------------------------------------------------------------------
def discretize_factors(F_train: np.ndarray, F_test: np.ndarray | None = None, max_classes: int = 10,
                       bins: int = 10) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer labels 0.. of each factor column: its classes if it has <= max_classes values, else
    equal-width bins of its training range (test values outside it fall into the end bins)."""
    F_train = np.asarray(F_train, np.float64)
    out_tr = np.zeros(F_train.shape, np.int64)
    out_te = None if F_test is None else np.zeros(np.shape(F_test), np.int64)
    for k in range(F_train.shape[1]):
        values = np.unique(F_train[:, k])
        if len(values) <= max_classes:
            out_tr[:, k] = np.searchsorted(values, F_train[:, k])
            if out_te is not None:  # a class unseen in training gets the nearest label; accuracy counts it wrong
                out_te[:, k] = np.clip(np.searchsorted(values, F_test[:, k]), 0, len(values) - 1)
        else:
            inner = np.histogram_bin_edges(F_train[:, k], bins)[1:-1]
            out_tr[:, k] = np.digitize(F_train[:, k], inner)
            if out_te is not None:
                out_te[:, k] = np.digitize(np.asarray(F_test, np.float64)[:, k], inner)
    return out_tr, out_te


# -- MIG ----------------------------------------------------------------------------------------
def discretize_codes(X: np.ndarray, bins: int = 20) -> np.ndarray:
    """disentanglement_lib's _histogram_discretize: np.digitize against np.histogram's edges, per dimension (0-based)."""
    X = np.asarray(X, np.float64)
    out = np.zeros(X.shape, np.int64)
    for d in range(X.shape[1]):
        out[:, d] = np.digitize(X[:, d], np.histogram(X[:, d], bins)[1][:-1]) - 1
    return out


def _mi_columns(codes: np.ndarray, f: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    """I(codes[:, d]; f) for every column d and each row of weights (B, n): (B, D), natural log.

    Counts are weighted sums over items, so a bootstrap resample is its multiplicity vector.
    """
    n, D = codes.shape
    n_cls = int(f.max()) + 1
    cell = (np.arange(D)[None, :] * n_bins + codes) * n_cls + f[:, None]  # (n, D) flat joint-cell index
    out = np.zeros((len(weights), D))
    for b, w in enumerate(weights):
        joint = np.bincount(cell.ravel(), np.repeat(w, D), minlength=D * n_bins * n_cls).reshape(D, n_bins, n_cls)
        total = w.sum()
        p = joint / total
        pc, pf = p.sum(2, keepdims=True), p.sum(1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p / (pc * pf)), 0.0)
        out[b] = terms.sum((1, 2))
    return out


def _entropy(f: np.ndarray, weights: np.ndarray) -> np.ndarray:
    counts = np.stack([np.bincount(f, w, minlength=int(f.max()) + 1) for w in weights])
    p = counts / counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(1)


def mutual_info_matrix(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """(D, K) mutual information (nats) between discretised codes (0..n_bins-1) and factor labels."""
    w = np.ones((1, len(codes)))
    return np.stack([_mi_columns(codes, factors[:, k], w, n_bins)[0] for k in range(factors.shape[1])], 1)


def mig_score(X: np.ndarray, factors: np.ndarray, bins: int = 20, seed: int = 0, n_boot: int = 1000,
              candidates: int = 32) -> dict:
    """Pure core: MIG of a representation X (n, D) against integer factor labels (n, K), bootstrap over items.

    Returns {"mig": (value, ci), "per_factor": [(value, ci)], "mi": (D, K) matrix, "entropy": (K,)}.
    A resample ranks, per factor, only the `candidates` codes most informative on all items (the
    top two of a resample lie among them in practice); the point estimate ranks every code.
    """
    X, factors = np.asarray(X), np.asarray(factors, np.int64)
    if X.ndim != 2 or factors.ndim != 2 or len(X) != len(factors) or len(X) < 2:
        raise ValueError(f"MIG needs (n, D) codes and (n, K) factors of the same n >= 2, got {X.shape}, {factors.shape}")
    codes = discretize_codes(X, bins)
    mi = mutual_info_matrix(codes, factors, bins)
    ones = np.ones((1, len(X)))
    h = np.array([_entropy(factors[:, k], ones)[0] for k in range(factors.shape[1])])
    idx = resample_indices(len(X), n_boot=n_boot, seed=seed)
    weights = np.stack([np.bincount(r, minlength=len(X)) for r in idx]).astype(np.float64)
    per_factor, boot = [], []
    for k in range(factors.shape[1]):
        top = np.sort(mi[:, k])[::-1]
        second = top[1] if len(top) > 1 else 0.0
        value = (top[0] - second) / h[k] if h[k] > 0 else np.nan
        cand = np.argsort(mi[:, k])[::-1][:max(2, candidates)]
        mi_b = np.sort(_mi_columns(codes[:, cand], factors[:, k], weights, bins), 1)[:, ::-1]
        h_b = _entropy(factors[:, k], weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            gap_b = (mi_b[:, 0] - (mi_b[:, 1] if mi_b.shape[1] > 1 else 0.0)) / h_b
        per_factor.append((float(value), recentred_ci(value, gap_b)))
        boot.append(gap_b)
    mig = float(np.mean([v for v, _ in per_factor]))
    return {"mig": (mig, recentred_ci(mig, np.mean(boot, 0))),
            "per_factor": per_factor, "mi": mi, "entropy": h}


# -- DCI ----------------------------------------------------------------------------------------
def _entropy_base(P: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of a non-negative matrix (normalised to sum 1), to the given base."""
    P = P + 1e-11  # as disentanglement_lib, so all-zero rows are uniform
    P = P / P.sum(1, keepdims=True)
    return -(P * np.log(P)).sum(1) / np.log(base)


def dci_from_importance(R: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of an importance matrix R (codes D x factors K), disentanglement_lib's formulas."""
    R = np.abs(np.asarray(R, np.float64))
    D, K = R.shape
    weights = R if R.sum() > 0 else np.ones_like(R)
    d_per_code = 1 - _entropy_base(R, K) if K > 1 else np.ones(D)
    c_per_factor = 1 - _entropy_base(R.T, D) if D > 1 else np.ones(K)
    return (float((d_per_code * weights.sum(1) / weights.sum()).sum()),
            float((c_per_factor * weights.sum(0) / weights.sum()).sum()))


def fit_importance(X_tr: np.ndarray, F_tr: np.ndarray, X_te: np.ndarray, C: float = 10.0,
                   max_iter: int = 500) -> tuple[np.ndarray, np.ndarray, int]:
    """Per factor, logistic regression on the standardised codes: importance (D, K), each column summing to 1
    (all zero for a factor with one class), the held-out predictions (n_test, K) and how many fits
    stopped at max_iter (counted, not warned about: the record keeps the count)."""
    scaler = StandardScaler().fit(X_tr)
    Xs_tr, Xs_te = scaler.transform(X_tr), scaler.transform(X_te)
    R = np.zeros((X_tr.shape[1], F_tr.shape[1]))
    pred = np.zeros((len(X_te), F_tr.shape[1]), np.int64)
    unconverged = 0
    for k in range(F_tr.shape[1]):
        classes = np.unique(F_tr[:, k])
        if len(classes) < 2:
            pred[:, k] = classes[0]
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=C, max_iter=max_iter).fit(Xs_tr, F_tr[:, k])
        unconverged += int(np.max(clf.n_iter_) >= max_iter)
        imp = np.abs(clf.coef_).mean(0)
        R[:, k] = imp / imp.sum() if imp.sum() > 0 else imp
        pred[:, k] = clf.predict(Xs_te)
    return R, pred, unconverged


def dci_score(X_tr: np.ndarray, F_tr: np.ndarray, X_te: np.ndarray, F_te: np.ndarray, *, C: float = 10.0,
              max_iter: int = 500, refits: int = 10, seed: int = 0, n_boot: int = 1000) -> dict:
    """Pure core: DCI of codes X against integer factor labels F (train fit, test informativeness).

    Returns {"disentanglement", "completeness", "informativeness": (value, ci),
    "informativeness_per_factor": [(value, ci)], "importance": (D, K), "unconverged_fits": int}.
    """
    X_tr, X_te = np.asarray(X_tr, np.float64), np.asarray(X_te, np.float64)
    F_tr, F_te = np.asarray(F_tr, np.int64), np.asarray(F_te, np.int64)
    if X_tr.ndim != 2 or X_te.shape[1:] != X_tr.shape[1:] or len(X_tr) != len(F_tr) or len(X_te) != len(F_te):
        raise ValueError(f"DCI needs (n, D) codes with matching factor rows, got {X_tr.shape}/{F_tr.shape}, "
                         f"{X_te.shape}/{F_te.shape}")
    R, pred, unconverged = fit_importance(X_tr, F_tr, X_te, C, max_iter)
    d, c = dci_from_importance(R)
    d_refit, c_refit = [], []
    for r in range(refits):
        rows = np.random.default_rng(derive_seed(seed, "dci_refit", r)).integers(0, len(X_tr), len(X_tr))
        R_r, _, _ = fit_importance(X_tr[rows], F_tr[rows], X_te[:1], C, max_iter)
        d_r, c_r = dci_from_importance(R_r)
        d_refit.append(d_r)
        c_refit.append(c_r)
    correct = (pred == F_te).astype(np.float64)  # (n_test, K)
    idx = resample_indices(len(X_te), n_boot=n_boot, seed=seed)
    per_factor = [(float(correct[:, k].mean()), percentile_ci(correct[idx, k].mean(1))) for k in range(F_te.shape[1])]
    return {"disentanglement": (d, recentred_ci(d, np.array(d_refit))),
            "completeness": (c, recentred_ci(c, np.array(c_refit))),
            "informativeness": (float(correct.mean()), percentile_ci(correct[idx].mean((1, 2)))),
            "informativeness_per_factor": per_factor, "importance": R, "unconverged_fits": unconverged}


# Representations that do not depend on the model (raw pixels): their DCI fits (a third of the task's
# logistic regressions, on 3,072 inputs) are the same for every model, so one run scores them once.
MODEL_FREE = ("pixels",)


def pack_scores(dci: dict, mig: dict) -> dict[str, torch.Tensor]:
    """dci_score's and mig_score's outputs as float64 tensors (a cache entry); unpack_scores inverts it."""
    def rows(pairs):
        return torch.tensor([[v, *ci] for v, ci in pairs], dtype=torch.float64)

    return {"dci": rows([dci[f] for f in ("disentanglement", "completeness", "informativeness")]),
            "dci_per_factor": rows(dci["informativeness_per_factor"]),
            "importance": torch.from_numpy(np.asarray(dci["importance"], np.float64)),
            "unconverged": torch.tensor([dci["unconverged_fits"]], dtype=torch.float64),
            "mig": rows([mig["mig"]]), "mig_per_factor": rows(mig["per_factor"])}


def unpack_scores(t: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    def pairs(x):
        return [(float(v), (float(lo), float(hi))) for v, lo, hi in x.tolist()]

    d, c, i = pairs(t["dci"])
    dci = {"disentanglement": d, "completeness": c, "informativeness": i,
           "informativeness_per_factor": pairs(t["dci_per_factor"]), "importance": t["importance"].numpy(),
           "unconverged_fits": int(t["unconverged"][0])}
    return dci, {"mig": pairs(t["mig"])[0], "per_factor": pairs(t["mig_per_factor"])}


class Disentanglement(Task):
    name = "disentanglement"
    version = 1
    Config = DisentanglementConfig
    min_images = 20  # of train and of test
    description = "DCI (linear importance) and MIG of each representation against the data's generative factors"
    metrics = (
        Metric("mig", higher_is_better=True, main=True, description="mutual information gap (Chen et al. 2018), mean over factors"),
        Metric("dci_disentanglement", higher_is_better=True, main=True,
               description="DCI disentanglement: each code informs about one factor (Eastwood & Williams 2018)"),
        Metric("dci_completeness", higher_is_better=True, description="DCI completeness: each factor is held by one code"),
        Metric("dci_informativeness", higher_is_better=True,
               description="held-out accuracy of the per-factor linear predictors, mean over factors"),
        Metric("mig_factor", higher_is_better=True, description="MIG of one factor"),
        Metric("informativeness_factor", higher_is_better=True, description="held-out accuracy for one factor"),
    )

    def run(self, ctx, cfg: DisentanglementConfig) -> TaskResult:
        res = TaskResult()
        factors = tuple(ctx.dataset("train").factors)
        if not factors:
            res.notes.append(f"not applicable: data set {ctx.dataset_name} declares no generative factors "
                             "(a class label alone is not a set of factors), so DCI and MIG are not defined here")
            return res
        n_tr = ctx.n_images("train", cfg.n_train, minimum=self.min_images)
        n_te = ctx.n_images("test", cfg.n_test, minimum=self.min_images)
        F_raw_tr = ctx.attributes("train", n_tr)[list(factors)].to_numpy(np.float64)
        F_raw_te = ctx.attributes("test", n_te)[list(factors)].to_numpy(np.float64)
        F_tr, F_te = discretize_factors(F_raw_tr, F_raw_te, cfg.max_factor_classes, cfg.factor_bins)
        for rep, (X_tr, X_te) in self._representations(ctx, cfg, n_tr, n_te, res).items():
            def score(X_tr=X_tr, X_te=X_te):
                dci = dci_score(X_tr, F_tr, X_te, F_te, C=cfg.C, max_iter=cfg.max_iter, refits=cfg.dci_refits,
                                seed=ctx.seed)
                return pack_scores(dci, mig_score(X_tr, F_tr, cfg.mig_bins, seed=ctx.seed, candidates=cfg.mig_candidates))

            if rep in MODEL_FREE:  # the same numbers for every model: computed once per data set and config
                key = {"task": self.name, "version": self.version, "config": asdict(cfg), "seed": ctx.seed,
                       "n_train": n_tr, "n_test": n_te, "factors": factors, "rep": rep,
                       "data": [ctx.dataset(split).content_hash() for split in ("train", "test")],
                       "image_shape": list(ctx.dataset("train").image_shape)}
                dci, mig = unpack_scores(ctx.cache.get_or_compute("model_free_scores", key, score))
            else:
                dci, mig = unpack_scores(score())
            res.add("mig", *mig["mig"], n=n_tr, rep=rep)
            for family in ("disentanglement", "completeness", "informativeness"):
                res.add(f"dci_{family}", *dci[family], n=n_te if family == "informativeness" else n_tr, rep=rep)
            for k, name in enumerate(factors):
                res.add("mig_factor", *mig["per_factor"][k], n=n_tr, rep=rep, factor=name)
                res.add("informativeness_factor", *dci["informativeness_per_factor"][k], n=n_te, rep=rep, factor=name)
            res.extra.setdefault("importance_top_code", {})[rep] = {
                name: int(np.argmax(dci["importance"][:, k])) for k, name in enumerate(factors)}
            res.extra.setdefault("unconverged_fits", {})[rep] = dci["unconverged_fits"]
        res.extra["factors"] = {name: int(F_tr[:, k].max()) + 1 for k, name in enumerate(factors)}  # labels per factor
        res.extra["departures"] = ["DCI importance from L2 logistic regression, not gradient-boosted trees",
                                   f"D and C intervals: 2.5-97.5 % of {cfg.dci_refits} refits on resampled training images",
                                   f"{n_tr} train / {n_te} test images of {ctx.dataset_name}"]
        return res

    @staticmethod
    def _representations(ctx, cfg, n_tr: int, n_te: int, res: TaskResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if "codes" in cfg.representations and not ctx.model.codes:
            res.notes.append("the model declares no semantic code: only x_T and pixels are scored")
        return ctx.representation_arrays(cfg.representations, n_tr, n_te, cfg.T)

TASK = Disentanglement  # what the task registry lists under this name
