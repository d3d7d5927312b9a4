"""Named suite profiles: smaller task sizes for a quicker, noisier run (`bench run --profile quick`).

The tasks' defaults are the suite's numbers: the references' records, the leaderboard and the CI
gate use them. On a 2-core CPU the default suite costs hours per data set (issue 19:
results/perf/suite_cost_cpu_shapes_counts.md), so a profile trades CI width for time, openly:
its options go into every record's task config, so its records have another config_hash, and
`bench compare` refuses to set them against default-size baselines. `--set` still overrides a
profile field. What the quick profile costs and saves, measured on the shapes references, is in
results/perf/suite_profile_quick_shapes.md.
"""

from __future__ import annotations

from ..errors import BenchError

# name -> {task: {config field: value}}; a task not listed keeps its defaults.
PROFILES: dict[str, dict[str, dict]] = {
    # ~4x fewer network evaluations than the defaults (exact counts in the file above). The largest
    # sampling T goes from sample_fid, reconstruction and fake_detection (T = 100 is 100 of sample_fid's
    # 180 steps per row); every n is cut by 2-5x, so CIs widen by about sqrt of that.
    "quick": {
        "sample_fid": {"n_samples": 200, "T": (10, 20, 50)},
        "prior_fid": {"n_samples": 200},  # sample_fid's n, so its Bernoulli row is sample_fid's z=prior row (cached)
        "fake_detection": {"n_per_class": 200},  # the same 200 samples per T as sample_fid, read from the cache
        "linear_probe": {"n_train": 500, "n_test": 300},
        "reconstruction": {"n_images": 40, "T": (10, 20, 50)},
        # 3 repeats, as the default: its CI is a t-interval over repeats, and 2 (one degree of freedom) made the
        # intervals 0-18x the default's width on shapes.
        "fewshot_fid": {"n_samples": 70},
        "disentanglement": {"n_train": 500, "n_test": 250},
        "attribute_manipulation": {"n_images": 12},
        "interpolation": {"n_pairs": 8},
        "z_usage": {"n_images": 128},
        "memorization": {"n_samples": 200},  # the default already; its search over the training set stays whole
    },
}


def profile_options(name: str | None) -> dict[str, dict]:
    """The task-option overrides of a profile ({} for None); a one-line error naming the profiles otherwise."""
    if name is None:
        return {}
    if name not in PROFILES:
        raise BenchError(f"unknown profile '{name}'; profiles: {', '.join(sorted(PROFILES))} (or leave --profile out)")
    return PROFILES[name]
