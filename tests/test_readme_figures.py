"""Figures typed into the README's prose are the committed files', not typed from memory.

The Speed section's whole-suite and CPU-training figures are read or derived from the results/perf files
they cite; the reference-results sentences from results/leaderboard.csv. So re-measuring or refreshing a
record without updating the README, or a slip in the arithmetic, fails.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "results" / "perf"


def _cells(text: str) -> list[list[str]]:
    """The cells of every Markdown table line in text (header included; the |---| line has no '| ' start)."""
    return [[c.strip() for c in l.strip("|").split("|")] for l in text.splitlines() if l.startswith("| ")]


def _table(name: str) -> tuple[int, list[dict]]:
    """(whole-suite seconds, rows as {column: cell}) of a scripts/suite_cost.py output file."""
    text = (PERF / name).read_text()
    whole = int(re.search(r"^whole suite: (\d+) s", text, re.M).group(1))
    head, *body = _cells(text)
    return whole, [dict(zip(head, row)) for row in body]


def _n(cell: str) -> int:
    return int(cell.replace(",", ""))


def _disentanglement_total(rows: list[dict], column: str) -> int:
    return sum(_n(r[column]) for r in rows if r["task"] == "disentanglement")


def test_speed_table_quotes_the_cost_files():
    readme = (ROOT / "README.md").read_text()
    before, est_rows = _table("suite_cost_cpu_shapes_estimate.md")
    _, after_rows = _table("suite_cost_cpu_shapes_disentanglement_after.md")
    quick, quick_rows = _table("suite_cost_cpu_shapes_quick.md")

    dis_before = _disentanglement_total(est_rows, "total (est.)")
    dis_after = _disentanglement_total(after_rows, "total (est.)")
    assert dis_after < dis_before  # the pixel sharing saved time; otherwise the README's claim is wrong
    default_after = before - dis_before + dis_after
    assert f"| {before:,} (" in readme
    assert f"about {default_after:,} (" in readme
    assert f"{dis_before:,} -> {dis_after:,} s" in readme
    assert f"**{quick:,} (" in readme and f"quick run's {quick:,} s" in readme

    everything = next(r for r in quick_rows if r["task"] == "all")
    main_stages = ("decode", "invert", "probe fits", "encode")
    rest = sum(_n(v) for k, v in everything.items() if k not in (*main_stages, "task", "model", "total"))
    quoted = (f"decode {_n(everything['decode'])}, invert {_n(everything['invert'])}, probe fits "
              f"{_n(everything['probe fits'])} (disentanglement's {_disentanglement_total(quick_rows, 'probe fits')} of them),"
              f"\nencode {_n(everything['encode'])}, everything else {rest}.")
    assert quoted in readme


def test_cpu_training_figures_quote_the_perf_file():
    """The AVX-512 CPU training rates and the bf16 accuracy check the README quotes are the perf file's."""
    readme = " ".join((ROOT / "README.md").read_text().split())  # the README wraps lines anywhere
    text = (PERF / "cpu_avx512_train_2026-11-27.md").read_text()
    speed_part, accuracy_part = text.split("## The train path's accuracy check")

    speed, accuracy = ({r[0]: r[1:] for r in _cells(part)} for part in (speed_part, accuracy_part))
    fp32, bf16, bf16_cl = (int(speed[k][0]) for k in ("fp32 (first call)", "bf16", "bf16-cl"))
    dloss, cosine, verdict = accuracy["bf16"]
    assert verdict == "FAIL"  # the README's "CPU training stays fp32" rests on this
    # x is the file's ratio (of unrounded rates), not fp32 / bf16 of the rounded ones
    assert f"trains {fp32} img/s in fp32 and {bf16} in bf16 ({speed['bf16'][1]}x; bf16-cl {bf16_cl})" in readme
    assert f"loss off by {float(dloss) * 100:.1f} %, gradient cosine {float(cosine):.3f}" in readme


def test_reference_prose_quotes_the_leaderboard():
    """The figures typed into the README's reference-results prose are the committed leaderboard's.

    The tables there are generated (bench findings); the sentences around them quote single values,
    so a refreshed record must not leave a sentence saying what the rows no longer do.
    """
    import pandas as pd

    board = pd.read_csv(ROOT / "results" / "leaderboard.csv")
    readme = " ".join((ROOT / "README.md").read_text().split())

    def v(task, model, metric, fmt, part="value"):
        row = board[(board.task == task) & (board.model == model) & (board.metric == metric)]
        assert len(row) == 1, (task, model, metric)
        return format(float(row[part].iloc[0]), fmt)

    def ci(task, model, metric, fmt):
        return f"{v(task, model, metric, fmt)} [{v(task, model, metric, fmt, 'ci_low')}, {v(task, model, metric, fmt, 'ci_high')}]"

    z = lambda m, metric, fmt: v("z_usage", m, metric, fmt)
    quotes = [
        f"{z('diffae-small-shapes', 'gap/t=300', '.2f')} / {z('diffae-small-shapes', 'gap/t=700', '.3f')} / "
        f"{z('diffae-small-shapes', 'mean_gap', '.2f')} for Diff-AE on shapes and {z('diffae-small-mnist', 'gap/t=300', '.2f')} / "
        f"{z('diffae-small-mnist', 'gap/t=700', '.2f')} / {z('diffae-small-mnist', 'mean_gap', '.2f')} on MNIST",
        f"(mean gap {z('dmz-small-shapes', 'mean_gap', '.4f')}; it predates",
        f"the MNIST one uses it (mean gap {z('dmz-small-mnist', 'mean_gap', '.3f')})",
        f"puts Diff-AE first on shapes ({ci('sample_fid', 'diffae-small-shapes', 'fd_cnn/T=100/z=prior', '.0f')} vs DDIM "
        f"{ci('sample_fid', 'ddim-small-shapes', 'fd_cnn/T=100/z=prior', '.0f')})",
        f"({ci('sample_fid', 'diffae-small-mnist', 'fd_cnn/T=100/z=prior', '.1f')} vs "
        f"{ci('sample_fid', 'ddim-small-mnist', 'fd_cnn/T=100/z=prior', '.1f')})",
        f"where it uses them (mean AUROC {v('linear_probe', 'dmz-small-shapes', 'mean_auroc/rep=hard', '.2f')}; "
        f"{v('linear_probe', 'dmz-small-mnist', 'mean_auroc/rep=hard', '.2f')})",
        f"only with PU labels (PU's CI [{v('fewshot_fid', 'dmz-small-mnist', 'fd_cnn/attr=digit_1/method=pu', '.0f', 'ci_low')}, "
        f"{v('fewshot_fid', 'dmz-small-mnist', 'fd_cnn/attr=digit_1/method=pu', '.0f', 'ci_high')}]); the binary classifier's "
        f"CI is wide ([{v('fewshot_fid', 'dmz-small-mnist', 'fd_cnn/attr=digit_1/method=binary', '.0f', 'ci_low')}, "
        f"{v('fewshot_fid', 'dmz-small-mnist', 'fd_cnn/attr=digit_1/method=binary', '.0f', 'ci_high')}])",
        "(binary {}, PU {}, naive {}, unconditional {})".format(*(
            v("fewshot_fid", "dmz-small-mnist", f"fd_cnn/attr=digit_1/method={m}", ".0f")
            for m in ("binary", "pu", "naive", "unconditional"))),
        f"MIG z_sem {ci('disentanglement', 'diffae-small-shapes', 'mig/rep=z_sem', '.3f')}",
        f"DCI disentanglement z_sem {v('disentanglement', 'diffae-small-shapes', 'dci_disentanglement/rep=z_sem', '.3f')} "
        f"against x_T {v('disentanglement', 'diffae-small-shapes', 'dci_disentanglement/rep=x_T', '.3f')}",
        f"soft bits: MIG {v('disentanglement', 'dmz-small-shapes', 'mig/rep=soft', '.3f')}, "
        f"D {v('disentanglement', 'dmz-small-shapes', 'dci_disentanglement/rep=soft', '.3f')}",
        f"`edit_success` {v('attribute_manipulation', 'diffae-small-shapes', 'edit_success/T=10', '.2f')} / "
        f"{v('attribute_manipulation', 'diffae-small-shapes', 'edit_success/T=20', '.2f')} at T = 10 / 20",
        f"(`edit_success` {v('attribute_manipulation', 'diffae-small-mnist', 'edit_success/T=10', '.3f')} / "
        f"{v('attribute_manipulation', 'diffae-small-mnist', 'edit_success/T=20', '.3f')};",
        f"succeed in {v('attribute_manipulation', 'dmz-small-mnist', 'edit_success/T=10', '.3g')} / "
        f"{v('attribute_manipulation', 'dmz-small-mnist', 'edit_success/T=20', '.3g')} of edits",
    ]
    missing = [q for q in quotes if q not in readme]
    assert not missing, missing


def test_legs_prose_quotes_the_leg_records():
    """The README's sentences on the training legs quote the records committed on the legs pages (and the
    leaderboard for the committed models), not figures typed from memory."""
    import json

    import pandas as pd

    board = pd.read_csv(ROOT / "results" / "leaderboard.csv")
    readme = " ".join((ROOT / "README.md").read_text().split())
    legs = ROOT / "results" / "legs"

    def rec(folder, task, model, key, part="value"):
        record = json.loads((legs / folder / f"{task}__{model}__mnist.json").read_text())
        return next(m[part] for m in record["metrics"] if m["key"] == key)

    def replaced(task, model, key):
        """The MNIST reference that the 960k models replaced: its one record, archived on the two-legs page."""
        found = list((legs / two / "replaced-references").rglob(f"{task}__{model}__mnist.json"))
        assert len(found) == 1, (task, model, found)
        return next(m["value"] for m in json.loads(found[0].read_text())["metrics"] if m["key"] == key)

    def committed(task, model, metric):
        row = board[(board.task == task) & (board.model == model) & (board.metric == metric)]
        assert len(row) == 1, (task, model, metric)
        return float(row["value"].iloc[0])

    eq, two = "2026-11-27_cpu_equal-budget-mnist/records/dmz", "2026-11-27_h200_two-legs/records"
    dmz = "dmz-small-mnist"
    shapes_record = json.loads((legs / two / "shapes-ddim" / "sample_fid__ddim-small-shapes__shapes.json").read_text())
    shapes_ddim = lambda key: next(m["value"] for m in shapes_record["metrics"] if m["key"] == key)
    shapes_row = board[(board.task == "sample_fid") & (board.model == "ddim-small-shapes")
                       & (board.metric == "fd_cnn/T=20/z=prior")]
    shapes_ref = lambda part: float(shapes_row[part].iloc[0])
    prior = lambda key: committed("prior_fid", dmz, key)  # the 960k model, the MNIST reference since the replacement
    old_prior = lambda key: replaced("prior_fid", dmz, key)
    ssim = lambda part: rec(f"{two}/diffae", "reconstruction", "diffae-small-mnist", "ssim/T=100/xT=random", part)
    quotes = [
        f"hard-bit probe {replaced('linear_probe', dmz, 'mean_auroc/rep=hard'):.2f} -> "
        f"{rec(eq, 'linear_probe', dmz, 'mean_auroc/rep=hard'):.2f}, z gap at t = 700 "
        f"{replaced('z_usage', dmz, 'gap/t=700'):.3f} -> {rec(eq, 'z_usage', dmz, 'gap/t=700'):.2f}",
        f"(fd_cnn at T = 20 {replaced('sample_fid', dmz, 'fd_cnn/T=20/z=prior'):.1f} -> "
        f"{rec(eq, 'sample_fid', dmz, 'fd_cnn/T=20/z=prior'):.1f})",
        f"random-x_T SSIM reaches {ssim('value'):.3f} [{ssim('ci_low'):.3f}, {ssim('ci_high'):.3f}]",
        f"drift further (fd_cnn {rec(f'{two}/dmz', 'sample_fid', dmz, 'fd_cnn/T=20/z=prior'):.1f}), while its decoder "
        f"on real codes scores {rec(f'{two}/dmz', 'sample_fid', dmz, 'fd_cnn/T=20/z=autoencoding'):.1f}",
        f"balanced (mean abs(p - 1/2) {prior('bit_balance'):.3f}) but correlated (mean abs(correlation) "
        f"{prior('bit_dependence'):.2f})",
        f"at the codes' own frequencies (fd_cnn {prior('fd_cnn/T=20/prior=empirical'):.1f}), miss the data, while "
        f"re-used training codes score {prior('fd_cnn/T=20/prior=codes'):.1f}",
        "the three priors scored {:.1f} / {:.1f} / {:.1f}".format(
            *(old_prior(f"fd_cnn/T=20/prior={p}") for p in ("bernoulli", "empirical", "codes"))),
        # shapes: the ~700k DDIM's record on the page against the leaderboard's (still the reference).
        "(fd_cnn at T = 20 {:.1f} against the reference's {:.1f} [{:.1f}, {:.1f}])".format(
            shapes_ddim("fd_cnn/T=20/z=prior"), *(shapes_ref(p) for p in ("value", "ci_low", "ci_high"))),
        f"still grey (corner gap {shapes_ddim('corner_gap/T=100/z=prior'):.2f};",
        # The 960k records on the page are the leaderboard's (the replacement copied them).
        f"drift further (fd_cnn {committed('sample_fid', dmz, 'fd_cnn/T=20/z=prior'):.1f})",
    ]
    missing = [q for q in quotes if q not in readme]
    assert not missing, missing
