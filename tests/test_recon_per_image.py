"""scripts/recon_per_image.py: its table summarises each image's scores as its header says, and the pages that
quote it quote its output over the per-image files they commit (no typed figure)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from diffae_bench.reporting.page_blocks import arguments, blocks

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("recon_per_image", ROOT / "scripts" / "recon_per_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, ssim, mse, model="m") -> Path:
    path.write_text(json.dumps({"model": model, "T": 100, "n": len(ssim), "ssim": list(ssim), "mse": list(mse)}))
    return path


def test_table_reports_the_distribution_behind_the_mean(tmp_path):
    # 19 images at 0.99 and one failure at 0.2: the mean drops, the median does not (an outlier, not a shift)
    ssim = [0.99] * 19 + [0.2]
    mse = [1e-5] * 19 + [3e-2]
    ssim[7], ssim[19] = ssim[19], ssim[7]  # the failure is image 7
    mse[7], mse[19] = mse[19], mse[7]
    row = _script().table([_write(tmp_path / "a.json", ssim, mse)]).splitlines()[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["m", "100", "20"]
    assert abs(np.mean(ssim) - 0.9505) < 1e-12 and cells[3] == f"{np.mean(ssim):.3f}"  # the record's mean
    assert cells[4] == "0.990" and cells[6] == "0.200"  # median, min
    assert cells[5] == f"{np.percentile(ssim, 5):.3f}"
    assert float(cells[9]) == 3e-2 and float(cells[8]) == 1e-5  # MSE max, median
    assert cells[10] == "1"  # one image below FAILED_SSIM (0.9): the failure
    assert cells[11].split(", ")[0] == "7"  # the lowest-SSIM image first


def test_table_anti_oracle_a_shift_moves_the_median(tmp_path):
    # every image 0.02 lower: mean and median move together (a shift, not an outlier)
    s = _script()
    base = _write(tmp_path / "base.json", [0.99] * 20, [1e-5] * 20, "base")
    shifted = _write(tmp_path / "shift.json", [0.97] * 20, [1e-5] * 20, "shift")
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in s.table([base, shifted]).splitlines()[2:]]
    assert [r[0] for r in rows] == ["base", "shift"]
    for col in (3, 4, 6):  # mean, median, min
        assert abs(float(rows[0][col]) - float(rows[1][col]) - 0.02) < 1e-9
    assert rows[0][10] == rows[1][10] == "0"  # no image lost: none below FAILED_SSIM


def test_pages_quote_the_generated_per_image_table():
    s = _script()
    pages = [p for p in sorted((ROOT / "results").rglob("README.md")) if blocks(p.read_text(), "recon-per-image")]
    assert pages, "no page quotes a per-image table"
    for page in pages:
        for spec, quoted in blocks(page.read_text(), "recon-per-image"):
            files = [ROOT / f for f in arguments(spec)]
            assert all(f.is_file() for f in files), files
            assert quoted == s.table(files), f"{page}: regenerate with scripts/recon_per_image.py table"


def test_committed_per_image_files_average_to_their_records():
    """Each committed per-image file is the distribution behind a committed record's mean: the same model
    (checkpoint sha256), T and n, and its mean SSIM and MSE are the record's values (anti-oracle: a file of
    another model or T would not match)."""
    page = ROOT / "results" / "legs" / "2026-11-28_cpu_v-shapes"
    pairs = {"ddim-eps-committed.json": ROOT / "results" / "records" / "shapes" / "cpu_refresh_2026-11-27" / "ddim-small-shapes",
             "ddim-v96k.json": page / "records" / "ddim-v96k", "ddim-v165k.json": page / "records" / "ddim-v165k",
             "ddim-v256k.json": page / "records" / "ddim-v256k", "diffae-v256k.json": page / "records" / "diffae-v256k",
             "dmz-v256k.json": page / "records" / "dmz-v256k", "diffae-v256k-T20.json": page / "records" / "diffae-v256k",
             "dmz-v256k-T20.json": page / "records" / "dmz-v256k"}
    refresh = ROOT / "results" / "records" / "shapes" / "cpu_refresh_2026-11-27"
    pairs |= {f"{k}-eps-committed{t}.json": refresh / f"{k}-small-shapes" for k in ("diffae", "dmz") for t in ("", "-T20")}
    assert sorted(pairs) == sorted(p.name for p in (page / "per_image").glob("*.json"))  # every file has its record
    for name, folder in pairs.items():
        d = json.loads((page / "per_image" / name).read_text())
        record = json.loads((folder / f"reconstruction__{d['model']}__shapes.json").read_text())
        assert d["checkpoint_sha256"] == record["model"]["checkpoint_sha256"], name
        value = {m["key"]: m for m in record["metrics"]}
        for family in ("ssim", "mse"):
            m = value[f"{family}/T={d['T']}/xT=inferred"]
            assert m["n"] == d["n"] == len(d[family]), name
            assert abs(np.mean(d[family]) - m["value"]) <= 1e-4 * abs(m["value"]), (name, family)  # 6-digit rounding


def test_the_v_shapes_page_prose_follows_its_per_image_files():
    """The page's three sentences on the per-image table: a shift (median and 5th percentile below eps's),
    one failure (image 94) at 164,992 images and none at 96,000, and a rise larger than the gap left."""
    page = ROOT / "results" / "legs" / "2026-11-28_cpu_v-shapes"
    text = " ".join((page / "README.md").read_text().split())
    eps, v96, v165 = (json.loads((page / "per_image" / f"ddim-{n}.json").read_text())
                      for n in ("eps-committed", "v96k", "v165k"))
    med = {k: float(np.median(d["ssim"])) for k, d in (("eps", eps), ("v96", v96), ("v165", v165))}
    assert "At 96,000 and 164,992 images, a shift, not a few failures." in text
    assert med["v165"] < med["eps"] and np.percentile(v165["ssim"], 5) < np.percentile(eps["ssim"], 5)
    assert "(test image 94, a green circle)" in text and int(np.argmin(v165["ssim"])) == 94
    assert "The 96,000-image model has no such image." in text and min(v96["ssim"]) > np.percentile(v96["ssim"], 5) - 0.05
    assert "rose by more than the gap that remained" in text and med["v165"] - med["v96"] > med["eps"] - med["v165"]
    assert "holds most of the v model's mean MSE" in text and max(v165["mse"]) > 0.5 * sum(v165["mse"])


def test_the_v_shapes_page_cites_the_256k_flips_from_the_per_image_files():
    """The "Closing with training, then flipping colours" bullet's figures are the per-image files' (rounded as
    cited): the 256,000-image v DDIM's median and count below FAILED_SSIM, the eps model's median, both v means."""
    page = ROOT / "results" / "legs" / "2026-11-28_cpu_v-shapes"
    ssim = {k: np.asarray(json.loads((page / "per_image" / f"ddim-{k}.json").read_text())["ssim"])
            for k in ("eps-committed", "v165k", "v256k")}
    text = " ".join((page / "README.md").read_text().split())
    bullet = text.split("**Closing with training, then flipping colours")[1].split("- **")[0]
    flips = int((ssim["v256k"] < _script().FAILED_SSIM).sum())
    assert flips == 7 and f"{flips} of the 100 test images" in bullet
    assert f"median reached {np.median(ssim['v256k']):.3f} (eps: {np.median(ssim['eps-committed']):.3f})" in bullet
    assert (f"mean down to {ssim['v256k'].mean():.3f}, below the 164,992-image model's {ssim['v165k'].mean():.3f}"
            in bullet)
    # The eps DDIM trained to 700,416 images (GPU legs), cited beside them: its record's T = 100 SSIM and CI.
    eps700 = json.loads((ROOT / "results/legs/2026-11-27_h200_two-legs/records/shapes-ddim/"
                                "reconstruction__ddim-small-shapes__shapes.json").read_text())
    m = next(m for m in eps700["metrics"] if m["key"] == "ssim/T=100/xT=inferred")
    assert f"inverts at {m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}] at T = 100" in bullet
    manifest = json.loads((ROOT / "results/legs/2026-11-27_h200_two-legs/manifest-shapes.json").read_text())
    entry = manifest["models"]["ddim-small-shapes"]  # the record is of this export: the same weights
    assert entry["files"]["checkpoint.safetensors"]["sha256"] == eps700["model"]["checkpoint_sha256"]
    assert f"trained on to {entry['images_seen_total']:,} images" in bullet
    # The README's summary of the same leg cites the same files.
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (f"{flips} in 100 come back in another colour, so its mean fell ({ssim['v165k'].mean():.3f} to "
            f"{ssim['v256k'].mean():.3f})") in readme



def test_the_v_shapes_page_cites_the_eps_references_per_image():
    """The bullet on the eps references' per-image scores: lowest at T = 100, medians and lowest at T = 20 beside
    the v Diff-AE's, the counts below FAILED_SSIM, the lowest DMZ-style image (anti-oracle: another file's
    figures, e.g. the v DMZ-style's T = 20 median 0.930, are not the cited ones)."""
    page = ROOT / "results" / "legs" / "2026-11-28_cpu_v-shapes"
    text = " ".join((page / "README.md").read_text().split())
    bullet = text.split("**The eps references lose no image at T = 100")[1].split("- **")[0]
    ssim = {n: np.asarray(json.loads((page / "per_image" / f"{n}.json").read_text())["ssim"])
            for n in ("diffae-eps-committed", "dmz-eps-committed", "diffae-eps-committed-T20", "dmz-eps-committed-T20",
                      "diffae-v256k-T20")}
    failed = _script().FAILED_SSIM
    assert all((ssim[n] >= failed).all() for n in ("diffae-eps-committed", "dmz-eps-committed"))
    assert (f"lowest images score {ssim['diffae-eps-committed'].min():.3f} (Diff-AE) and "
            f"{ssim['dmz-eps-committed'].min():.3f} (DMZ-style)") in bullet
    d, v, m = ssim["diffae-eps-committed-T20"], ssim["diffae-v256k-T20"], ssim["dmz-eps-committed-T20"]
    assert (f"Diff-AE's median is {np.median(d):.3f} (v: {np.median(v):.3f}) and its lowest {d.min():.3f} "
            f"(v: {v.min():.3f}); DMZ-style's median {np.median(m):.3f}, lowest {m.min():.3f}") in bullet
    assert f"({int((d < failed).sum())} and {int((m < failed).sum())} of 100 images;" in bullet
    assert f"lost images for the v Diff-AE ({int((v < failed).sum())})" in bullet
    assert np.median(v) > failed > np.median(d)  # "counts lost images only where the median sits well above it"
    assert "(test image 7, a red circle)" in bullet and int(np.argmin(m)) == 7
    assert f"mean (0.78) above the eps reference's ({d.mean():.3f})" in bullet and round(v.mean(), 2) == 0.78 > d.mean()
