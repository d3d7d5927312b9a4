"""Suite profiles (diffae_bench.harness.profiles): smaller sizes applied openly, overridable, never mistaken for defaults."""

from __future__ import annotations

import pytest

from diffae_bench.errors import BenchError
from diffae_bench.harness.profiles import PROFILES
from diffae_bench.harness.records import config_hash
from diffae_bench.harness.runner import RunOptions, _resolve_configs
from diffae_bench.harness.task import get_task, task_names


def _configs(**kw):
    return {cls.name: cfg for cls, cfg in _resolve_configs(RunOptions(tasks=tuple(task_names()), models=("m",), **kw))}


def test_quick_profile_shrinks_each_listed_field_and_names_only_real_tasks_and_fields():
    default, quick = _configs(), _configs(profile="quick")
    for task, fields in PROFILES["quick"].items():
        assert task in task_names()
        for name, value in fields.items():
            assert getattr(quick[task], name) == value
    assert quick["sample_fid"].n_samples < default["sample_fid"].n_samples
    assert max(quick["reconstruction"].T) < max(default["reconstruction"].T)
    # prior_fid's rows compare with sample_fid's at the same n and T, in the quick profile as by default
    for cfgs in (default, quick):
        assert cfgs["prior_fid"].n_samples == cfgs["sample_fid"].n_samples
        assert set(cfgs["prior_fid"].T) <= set(cfgs["sample_fid"].T)
        assert cfgs["prior_fid"].T_latent == cfgs["sample_fid"].T_latent


def test_set_overrides_the_profile_and_the_config_hash_tells_the_two_apart():
    quick = _configs(profile="quick", task_options={"sample_fid": {"n_samples": "300"}})
    assert quick["sample_fid"].n_samples == 300 and quick["sample_fid"].T == (10, 20, 50)

    def hashed(cfg):
        from dataclasses import asdict
        return config_hash({"task": {"name": "sample_fid", "version": get_task("sample_fid").version,
                                     "config": asdict(cfg)}})

    assert hashed(quick["sample_fid"]) != hashed(_configs()["sample_fid"])  # bench compare refuses to mix them


def test_unknown_profile_is_a_one_line_error_listing_the_profiles():
    with pytest.raises(BenchError, match="unknown profile 'quik'; profiles: quick"):
        _configs(profile="quik")
