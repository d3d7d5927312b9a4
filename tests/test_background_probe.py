"""scripts/background_probe.py, the diagnostic of results/diagnostics/2026-11-28_background_eps_vs_v: its v reading
is what the page says it is (checked in a subprocess: the reading patches the process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = r"""
import dataclasses, sys, torch
sys.path.insert(0, "scripts")
import background_probe as bp
from diffae_bench import diffusion as D
from diffae_bench.data import load_dataset
from diffae_bench.models.loss import DiffusionLoss
from diffae_bench.nets.unet import UNet
from diffae_bench.presets import PRESETS

grey3, grey1 = (load_dataset(f"shapes_grey{c}", "train", image_size=16, limit=8).images for c in (3, 1))
assert grey3.shape[1:] == (3, 16, 16) and grey1.shape[1:] == (1, 16, 16)
assert (grey3 == grey1).all()  # the same luminance, repeated

net = UNet(dataclasses.replace(PRESETS.get("tiny").unet, z_dim=None))  # the DDIM baseline's network
torch.nn.init.normal_(net.out[-1].weight, std=0.1)  # a non-zero output
x0, t = torch.rand(4, 3, 16, 16) * 2 - 1, torch.tensor([0, 300, 800, 999])
ab = bp.ALPHA_BAR[t].reshape(-1, 1, 1, 1)
with torch.no_grad():
    v_out = net(x0, t)  # the network's own output, before the reading
bp.read_as_v()
with torch.no_grad():
    eps = net(x0, t)
assert torch.allclose(eps, (1 - ab).sqrt() * x0 + ab.sqrt() * v_out, atol=1e-6)  # eps = sqrt(1-ab) x_t + sqrt(ab) v

# the v loss is the MSE of v = sqrt(ab) eps - sqrt(1-ab) x0, on the same draws as L_simple's
g = torch.Generator().manual_seed(0)
loss = DiffusionLoss()(lambda x_t, tt: net(x_t, tt), x0, g)
g = torch.Generator().manual_seed(0)
tt = torch.randint(0, D.T_TRAIN, (4,), generator=g)
noise = torch.randn(x0.shape, generator=g)
a = bp.ALPHA_BAR[tt].reshape(-1, 1, 1, 1)
x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
v_hat = (net(x_t, tt) - (1 - a).sqrt() * x_t) / a.sqrt()  # the network's output, from the eps it is read as
v_true = a.sqrt() * noise - (1 - a).sqrt() * x0
assert torch.allclose(loss, ((v_hat - v_true) ** 2).mean(), rtol=1e-3), (loss, ((v_hat - v_true) ** 2).mean())
print("ok")
"""


def test_the_v_reading_and_loss_are_what_the_page_says():
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


def _raw_rows(text: str) -> dict[str, dict]:
    """{run: {column: cell}} of every table in the probe's output."""
    rows, head = {}, None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| run |"):
            head = cells
        elif line.startswith("| ") and head:
            rows[cells[0]] = dict(zip(head, cells))
    return rows


def test_the_pages_table_is_the_probes_output_rounded():
    """No figure on the page is typed: each row is probe_output.md's row of that run, rounded as the header says."""
    page_dir = ROOT / "results" / "diagnostics" / "2026-11-28_background_eps_vs_v"
    raw = _raw_rows((page_dir / "probe_output.md").read_text())
    text = (page_dir / "README.md").read_text().split("\n## Follow-up")[0]  # the follow-up's table is the next test's
    page = [l for l in text.splitlines() if l.startswith("| ") and not l.startswith("| run")]
    assert len(page) == len(raw) == 8
    for line in page:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        r = raw[cells[0]]
        f = lambda k: float(r[k])  # noqa: E731
        x0 = " / ".join(f"{f(f't={t}: x0 corner'):.3f}" for t in (999, 900, 800, 600))
        expected = [cells[0], r["data"], cells[2], r["param"], r["seed"], f"{f('samples T=100: corner'):.3f}",
                    f"{100 * f('samples T=100: black'):.1f} %", x0,
                    f"{f('t=999: eps mse'):.1e} ({f('t=999: eps mse, mean image'):.1e})"]
        assert cells == expected
        assert cells[2] == ("1" if r["data"].endswith("grey1") or r["data"] == "mnist" else "3")  # the channel count


def test_the_small_preset_table_is_the_records():
    """The follow-up's table is `background_probe.py table` of the committed eps reference's record and the v
    model's (none of its figures typed by hand). In a subprocess: the script registers its data variants."""
    page = ROOT / "results" / "diagnostics" / "2026-11-28_background_eps_vs_v"
    text = (page / "README.md").read_text()
    block = text.split("<!-- small-preset table: begin -->\n")[1].split("\n<!-- small-preset table: end -->")[0]
    records = [ROOT / "results/records/shapes/cpu_refresh_2026-11-27/ddim-small-shapes/sample_fid/"
                      "sample_fid__ddim-small-shapes__shapes.json", *sorted((page / "records").glob("sample_fid__*.json"))]
    r = subprocess.run([sys.executable, "scripts/background_probe.py", "table", *map(str, records)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert block == r.stdout.rstrip("\n")
    assert "| ddim-small-shapes | eps | 164,992 |" in block and "| v | 96,000 |" in block and "| v | 164,992 |" in block


def test_the_follow_ups_high_t_x0_figures_are_the_runs_log():
    """The v run's x0 errors at t = 999 that the page cites are its committed log's, rounded to 3 decimals."""
    import json
    import re

    page = ROOT / "results" / "diagnostics" / "2026-11-28_background_eps_vs_v"
    log = {r["images_seen"]: r["x0_mae"]["999"] for r in map(json.loads, (page / "records" / "x0_diagnostic_v.jsonl")
                                                             .read_text().splitlines())}
    text = " ".join((page / "README.md").read_text().split("## Follow-up")[1].split())
    cited = re.search(r"at t = 999: (.*?), against the eps", text).group(1)
    pairs = re.findall(r"([0-9.]+) at (\d+)k", cited)
    assert len(pairs) == 5
    for value, k in pairs:
        images = min(log, key=lambda n: abs(n - int(k) * 1000))
        assert abs(images - int(k) * 1000) < 1000 and f"{log[images]:.3f}" == value, (value, k, log[images])
    # The two it compares them with: `x0_table.py --measure` lines (the eps reference, the mean-image oracle).
    eps_ref, mean_image = map(json.loads, (page / "records" / "x0_start.jsonl").read_text().splitlines())
    assert eps_ref["label"].startswith("eps reference") and mean_image["label"].endswith("mean image")
    assert (f"against the eps reference's {eps_ref['x0_mae']['999']:.3f} at 165k" in text
            and f"an x0 of the data's mean image scores {mean_image['x0_mae']['999']:.3f}" in text)


def test_the_x0_start_lines_are_what_x0_table_measure_prints():
    """records/x0_start.jsonl is `scripts/x0_table.py --measure` output, recomputed here (16 images: seconds).
    Within 1e-4: the float32 kernels of another CPU kind may round the 5th decimal differently.
    The mean-image oracle's x0_hat is that image at every t, so its row is one number (the pipeline's check)."""
    import json

    page = ROOT / "results" / "diagnostics" / "2026-11-28_background_eps_vs_v"
    committed = [json.loads(line) for line in (page / "records" / "x0_start.jsonl").read_text().splitlines()]
    for line, args in zip(committed, (["ddim-small-shapes", "--images-seen-total", "164992"],
                                      ["mean-image", "--dataset", "shapes"])):
        r = subprocess.run([sys.executable, "scripts/x0_table.py", "--measure", *args, "--label", line["label"]],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        fresh = json.loads(r.stdout)
        assert {k: v for k, v in fresh.items() if k != "x0_mae"} == {k: v for k, v in line.items() if k != "x0_mae"}
        assert all(abs(fresh["x0_mae"][t] - v) < 1e-4 for t, v in line["x0_mae"].items()), (fresh, line)
    assert len(set(committed[1]["x0_mae"].values())) == 1
