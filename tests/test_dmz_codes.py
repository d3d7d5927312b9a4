"""scripts/dmz_codes.py, the diagnostic of results/diagnostics/2026-11-28_dmz_hard_codes: its code sets are what
its docstring says (oracles: torch's own BatchNorm1d, per-bit counts), and the page quotes its table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from diffae_bench.baselines import DMZ, dmz_config_from_preset
from diffae_bench.presets import PRESETS
from diffae_bench.reporting.page_blocks import arguments, blocks

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "results" / "diagnostics" / "2026-11-28_dmz_hard_codes"


def _script():
    spec = importlib.util.spec_from_file_location("dmz_codes", ROOT / "scripts" / "dmz_codes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shuffle_keeps_each_bits_frequency_and_breaks_the_joint_structure():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(400, 1, generator=g) > 0.5).float()
    codes = torch.cat([a, a, 1 - a, (torch.rand(400, 1, generator=g) > 0.9).float()], 1)  # bits 0-2: copies
    out = _script().shuffle_bits(codes, torch.Generator().manual_seed(1))
    assert torch.equal(out.sum(0), codes.sum(0))  # every bit's count of ones
    assert torch.equal(out.sort(0).values, codes.sort(0).values)
    assert (out[:, 0] == out[:, 1]).float().mean() < 0.7  # the copy is gone (anti-oracle: ~0.5 for independent bits)


def test_own_stats_logits_is_batchnorm_in_training_mode():
    bn = torch.nn.BatchNorm1d(6)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.0, -0.3, 0.2, 0.0, 1.0]))
        bn.running_mean.fill_(5.0)  # far from the data: eval mode would differ
    raw = torch.randn(64, 6, generator=torch.Generator().manual_seed(0)) * 0.05 + 0.3
    expected = bn.train()(raw).detach()
    assert torch.allclose(_script().own_stats_logits(raw, bn.eval()).detach(), expected, atol=1e-5)


def test_code_sets_of_a_dmz_model():
    torch.manual_seed(0)
    model = DMZ(dmz_config_from_preset(PRESETS.get("tiny").for_data(3, 16))).eval()
    x = torch.rand(32, 3, 16, 16) * 2 - 1
    s = _script()
    with torch.no_grad():  # running statistics set to these images' own: hard_own is hard (oracle)
        raw = model.encoder(x)
        model.logit_norm.running_mean.copy_(raw.mean(0))
        model.logit_norm.running_var.copy_(raw.var(0, unbiased=False))
    sets, facts = s.code_sets(model, x, torch.Generator().manual_seed(0))
    assert tuple(sets) == s.CODE_SETS
    assert torch.equal(sets["hard"], model.encode(x))
    assert torch.equal(sets["hard_own"], sets["hard"]) and facts["bits_differing_from_hard_own"] == 0.0
    assert torch.equal(sets["soft"], torch.sigmoid(model.logits(x)))
    assert all(((z >= 0) & (z <= 1)).all() for z in sets.values())
    assert set(sets["bernoulli"].unique().tolist()) <= {0.0, 1.0}
    with torch.no_grad():  # anti-oracle: statistics of other images move the thresholds
        model.logit_norm.running_mean.add_(raw.std(0))
    sets, facts = s.code_sets(model, x, torch.Generator().manual_seed(0))
    assert facts["bits_differing_from_hard_own"] > 0.1 and facts["median_mean_shift_over_std"] > 0.9


def test_the_page_quotes_the_generated_table_and_its_figures():
    s = _script()
    text = (PAGE / "README.md").read_text()
    found = blocks(text, "dmz-codes")
    assert found, "the page quotes no dmz-codes table"
    for spec, quoted in found:
        files = [ROOT / f for f in arguments(spec)]
        assert quoted == s.table(files), "regenerate with scripts/dmz_codes.py rewrite"
    flat = " ".join(text.split())
    for f in sorted(PAGE.glob("codes-*.json")):
        d = json.loads(f.read_text())
        assert d["n"] == 500 and d["T"] == 20, f
        r = {k: v["fd_cnn"] for k, v in d["rows"].items()}
        if d["dataset"] == "shapes" and d["bn"]["logit_norm"] == "batch":
            # the page's reading: relaxed and soft codes decode best, hard real codes worst but shuffled
            assert min(r["relaxed"], r["soft"]) < r["bernoulli"] < r["hard"], f
            assert abs(r["hard_own"] - r["hard"]) < 0.25 * r["hard"], f  # the BatchNorm is not the cause
        assert f"{d['label']}" in flat
    # The figures the prose cites.
    rows = {n: json.loads((PAGE / f"codes-{n}.json").read_text()) for n in ("v-64k", "v-128k", "mnist-reference")}
    fd = {n: {k: v["fd_cnn"] for k, v in d["rows"].items()} for n, d in rows.items()}
    differ = {n: 100 * d["bn"]["bits_differing_from_hard_own"] for n, d in rows.items()}
    assert f"changes {differ['v-128k']:.1f} to {differ['v-64k']:.1f} % of the v model's bits" in flat
    moved = max(abs(fd[n]["hard_own"] - fd[n]["hard"]) for n in ("v-64k", "v-128k"))
    assert (f"moves fd_cnn by at most {moved:.1f} ({fd['v-128k']['hard']:.1f} to {fd['v-128k']['hard_own']:.1f} "
            f"at 128,000 images)") in flat
    assert (f"changes {differ['mnist-reference']:.1f} % of the bits and fd_cnn by "
            f"{abs(fd['mnist-reference']['hard'] - fd['mnist-reference']['hard_own']):.1f}") in flat
    for n in fd:  # "better than their hard bits and better than fair bits"
        assert max(fd[n]["relaxed"], fd[n]["soft"]) < min(fd[n]["hard"], fd[n]["bernoulli"]), n
    assert (f"score {fd['v-64k']['hard']:.1f} and {fd['v-128k']['hard']:.1f} at the two steps, against "
            f"{fd['v-64k']['relaxed']:.1f} and {fd['v-128k']['relaxed']:.1f} with relaxed codes") in flat
    m = fd["mnist-reference"]
    assert f"about {m['hard'] / m['relaxed']:.0f}x better ({m['relaxed']:.1f} against {m['hard']:.1f})" in flat
    assert (f"scored {fd['v-64k']['shuffled']:.1f} at 64,000 images and {fd['v-128k']['shuffled']:.1f} at 128,000"
            in flat)
    # The MNIST reference's hard row is its committed autoencoding record: the same codes and noise.
    record = json.loads((ROOT / "results" / "records" / "mnist" / "two-legs_960k_2026-11-27" / "dmz-small-mnist"
                         / "sample_fid__dmz-small-mnist__mnist.json").read_text())
    value = next(x["value"] for x in record["metrics"] if x["key"] == "fd_cnn/T=20/z=autoencoding")
    assert rows["mnist-reference"]["checkpoint_sha256"] == record["model"]["checkpoint_sha256"]
    assert abs(m["hard"] - value) < 1e-4 * value and f"committed record's {value:.3f}" in flat
