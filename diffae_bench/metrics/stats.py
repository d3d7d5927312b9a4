"""Bootstrap confidence intervals (percentile method, resampling items with replacement).

Every metric value in a record carries one, so that the regression gate can
tell a real change from resampling noise. Statistics are recomputed on a
(n_boot, n) matrix of resampled item indices, vectorised: means of per-image
values, and AUROC of scores against labels (rank form, one ranking for all
resamples).
"""

from __future__ import annotations

import numpy as np

N_BOOT = 1000  # resamples (enough for a 95% percentile interval to ~0.01 of its width)
ALPHA = 0.05  # two-sided: a 95% interval


def mean_ci(values: np.ndarray, *, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-item values (vectorised)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return (float("nan"), float("nan"))
    return percentile_ci(v[resample_indices(len(v), n_boot=n_boot, seed=seed)].mean(1), alpha)


def resample_indices(n: int, *, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n) bootstrap resamples of range(n); share one matrix to bootstrap several statistics jointly."""
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def percentile_ci(stats: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """Percentile interval of bootstrap statistics, ignoring undefined (nan) resamples."""
    s = np.asarray(stats, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < 2:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def auroc_rows(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of each row of (B, n) binary labels and scores: the Mann-Whitney U statistic
    from average ranks (ties count one half), nan for a row holding one class.

    Vectorised so that 1000 bootstrap resamples cost one ranking; equals
    sklearn.metrics.roc_auc_score row by row (tested).
    """
    from scipy.stats import rankdata

    y = np.atleast_2d(y).astype(bool)
    ranks = rankdata(np.atleast_2d(scores), axis=1)
    n_pos = y.sum(1)
    n_neg = y.shape[1] - n_pos
    u = (ranks * y).sum(1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc
