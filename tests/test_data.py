"""Data-set registry and loaders: real files where present, small fixtures otherwise.

The real MNIST / dSprites files are found the way `default_root` finds them
(shared/data beside the repository); tests that need them skip when absent.
CelebA and image folders are tested on fixtures laid out like the real ones.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffae_bench.data import DATASETS, default_root, load_dataset
from diffae_bench.data import celeba as celeba_mod
from diffae_bench.data import shapes as shapes_mod
from diffae_bench.data.imagefolder import hash_split
from diffae_bench.data.mnist import read_idx
from diffae_bench.errors import BenchError, DataError, UnknownNameError

# Published per-digit counts of the official MNIST files.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, f"error message must be one line: {msg!r}"
    return msg


def real_root(name: str, *files: str):
    root = default_root(name)
    if root is None or not all((root / f).is_file() for f in files):
        pytest.skip(f"real {name} files not found (expected shared/data/{name} beside the repository or $DIFFAE_BENCH_DATA/{name})")
    return root


MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def mnist_train():
    real_root("mnist", *MNIST_FILES)
    return load_dataset("mnist", "train")


@pytest.fixture(scope="module")
def mnist_test():
    real_root("mnist", *MNIST_FILES)
    return load_dataset("mnist", "test")


@pytest.fixture(scope="module")
def dsprites_splits():
    real_root("dsprites", "dsprites_downsampled.npz")
    return load_dataset("dsprites", "train"), load_dataset("dsprites", "test")


# ---------------------------------------------------------------- registry


def test_registry_lists_the_five_loaders():
    assert DATASETS.names() == ["celeba", "dsprites", "imagefolder", "mnist", "shapes"]


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownNameError) as e:
        load_dataset("shpes")
    assert isinstance(e.value, BenchError)
    assert "did you mean 'shapes'" in one_line(e)


def test_bad_split_and_unknown_option_are_data_errors():
    with pytest.raises(DataError) as e:
        load_dataset("shapes", "val")
    assert "train, test" in one_line(e)
    with pytest.raises(DataError) as e:
        load_dataset("shapes", n_trian=10)
    assert "n_train" in one_line(e)
    with pytest.raises(DataError):
        load_dataset("shapes", limit=0)


def test_default_root_order(tmp_path, monkeypatch):
    (tmp_path / "env" / "mnist").mkdir(parents=True)
    (tmp_path / "explicit").mkdir()
    monkeypatch.setenv("DIFFAE_BENCH_DATA", str(tmp_path / "env"))
    assert default_root("mnist") == tmp_path / "env" / "mnist"
    assert default_root("mnist", tmp_path / "explicit") == tmp_path / "explicit"
    assert default_root("mnist", tmp_path / "nowhere") is None  # an explicit root is never replaced
    assert default_root("no_such_dataset_xyz") is None


# ------------------------------------------------------------------ shapes


def test_shapes_is_default_deterministic_and_seeded():
    a = load_dataset("shapes", n_train=300)
    b = load_dataset(n_train=300)  # shapes is the default
    assert a.images.dtype == np.uint8 and a.images.shape == (300, 3, 32, 32)
    assert np.array_equal(a.images, b.images) and a.content_hash() == b.content_hash()
    c = load_dataset("shapes", n_train=300, seed=1)
    assert not np.array_equal(a.images, c.images)
    # The first k images do not depend on the split size or on `limit`.
    d = load_dataset("shapes", limit=50)
    assert np.array_equal(d.images, a.images[:50]) and len(d) == 50
    pd.testing.assert_frame_equal(d.attributes, a.attributes.iloc[:50])


def test_shapes_train_and_test_are_disjoint_draws():
    tr = load_dataset("shapes", "train", n_train=2000)
    te = load_dataset("shapes", "test")
    assert len(te) == 2000
    train_bytes = {img.tobytes() for img in tr.images}
    assert not any(img.tobytes() in train_bytes for img in te.images)
    assert not np.isin(te.attributes["x"], tr.attributes["x"]).any()


def test_shapes_factors_match_pixels():
    ds = load_dataset("shapes", image_size=64, n_train=1000)
    a, s = ds.attributes, 64
    cov = ds.images.astype(np.float64).max(axis=1)  # (N, H, W), background 0
    w = cov / cov.sum(axis=(1, 2), keepdims=True)
    centres = np.arange(s) + 0.5
    cx = (w.sum(axis=1) * centres).sum(axis=1)
    cy = (w.sum(axis=2) * centres).sum(axis=1)
    # All four shapes are symmetric about their centre of mass, the stored (x, y).
    assert np.abs(cx - a["x"] * s).max() < 0.25 and np.abs(cy - a["y"] * s).max() < 0.25

    lit = (cov > 0).sum(axis=(1, 2))
    for k in range(len(shapes_mod.SHAPES)):
        m = (a["shape"] == k).to_numpy()
        assert m.sum() > 100  # every shape is drawn
        assert np.corrcoef(a["size"][m], lit[m])[0, 1] > 0.95
    assert lit[a["is_large"] == 1].mean() > 1.5 * lit[a["is_large"] == 0].mean()

    # The fully covered pixel of each sprite is exactly its named palette colour.
    flat = ds.images.reshape(len(ds), 3, -1)
    brightest = flat[np.arange(len(ds)), :, flat.astype(int).sum(axis=1).argmax(axis=1)]
    palette = dict(shapes_mod.PALETTE)
    expected = np.array([palette[n] for n in a["colour_name"]])
    assert np.array_equal(brightest, expected)
    assert (ds.images[:, :, 0, 0] == 0).all()  # black background


def test_shapes_attribute_table():
    ds = load_dataset("shapes", n_train=500)
    a = ds.attributes
    assert ds.class_column == "shape" and set(a["shape"]) == {0, 1, 2, 3}
    assert set(ds.binary_attributes) >= {"is_circle", "is_large", "is_left", "is_top", "is_warm"}
    for col in ds.binary_attributes:
        assert set(a[col]) == {0, 1}, col
    assert ((a["x"] < 0.5) == (a["is_left"] == 1)).all() and ((a["y"] < 0.5) == (a["is_top"] == 1)).all()
    assert ((a["shape_name"] == "circle") == (a["is_circle"] == 1)).all()
    assert (a["is_warm"] == a["colour_name"].isin(["red", "orange", "yellow"]).astype(int)).all()
    assert load_dataset("shapes", image_size=8, limit=5).images.shape == (5, 3, 8, 8)


def test_shapes_builds_20k_fast():
    t = time.perf_counter()
    ds = load_dataset("shapes")
    assert len(ds) == 20_000 and time.perf_counter() - t < 3.0


def test_content_hash_tracks_pixels():
    a = load_dataset("shapes", limit=64)
    b = load_dataset("shapes", limit=64)
    assert a.content_hash() == b.content_hash()
    b.images = b.images.copy()
    b.images[3, 1, 10, 10] ^= 1
    b._hash = None
    assert a.content_hash() != b.content_hash()


# ------------------------------------------------------------------- MNIST


def test_mnist_real_counts_and_padding(mnist_train, mnist_test):
    tr, te = mnist_train, mnist_test
    assert len(tr) == 60_000 and len(te) == 10_000
    assert tr.images.shape == (60_000, 1, 32, 32) and tr.images.dtype == np.uint8
    assert np.bincount(tr.attributes["digit"], minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(te.attributes["digit"], minlength=10).tolist() == MNIST_TEST_COUNTS
    assert tr.attributes["digit"].value_counts().idxmax() == 1
    assert tr.class_column == "digit" and tr.meta["resize"] == "pad"
    border = np.ones((32, 32), bool)
    border[2:-2, 2:-2] = False
    assert tr.images[:, 0, border].max() == 0
    assert tr.images[:, 0, 2:-2, 2:-2].max() == 255  # digits are not dimmed
    assert (tr.attributes["digit_7"] == (tr.attributes["digit"] == 7)).all()


def test_mnist_raw_torchvision_layout_equals_gz(tmp_path, mnist_test):
    root = real_root("mnist", *MNIST_FILES)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / stem).write_bytes(gzip.decompress((root / f"{stem}.gz").read_bytes()))
    # The uncompressed content is the official file (published md5).
    assert hashlib.md5((raw / "t10k-images-idx3-ubyte").read_bytes()).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    ds = load_dataset("mnist", "test", root=tmp_path)
    assert np.array_equal(ds.images, mnist_test.images)
    assert ds.content_hash() == mnist_test.content_hash()
    assert load_dataset("mnist", "test", root=tmp_path, image_size=28).images.shape == (10_000, 1, 28, 28)


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_corrupt_files_raise_data_error(tmp_path):
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 10, 20)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    ds = load_dataset("mnist", "test", root=tmp_path, image_size=16)
    assert ds.images.shape == (20, 1, 16, 16) and ds.meta["resize"] == "bilinear"
    assert ds.attributes["digit"].tolist() == labels.tolist()

    f = tmp_path / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])  # truncated raw file
    with pytest.raises(DataError) as e:
        load_dataset("mnist", "test", root=tmp_path)
    assert "t10k-images-idx3-ubyte" in one_line(e) and "truncated" in one_line(e)

    g = tmp_path / "gz"
    g.mkdir()
    _write_idx(g / "lbl", labels)
    (g / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress((g / "lbl").read_bytes()))
    _write_idx(g / "img", imgs)
    (g / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress((g / "img").read_bytes())[:-40])  # truncated archive
    with pytest.raises(DataError) as e:
        load_dataset("mnist", "test", root=g)
    assert "t10k-images-idx3-ubyte.gz" in one_line(e)

    (g / "bad").write_bytes(b"\x08\x03\x00\x00" + bytes(100))
    with pytest.raises(DataError) as e:
        read_idx(g / "bad")
    assert "magic" in one_line(e)


def test_mnist_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", root=tmp_path)
    msg = one_line(e)
    assert str(tmp_path) in msg and "download=True" in msg


# ---------------------------------------------------------------- dSprites


def test_dsprites_reads_arrays_without_pickle(monkeypatch, dsprites_splits):
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", False))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    ds = load_dataset("dsprites", "test", limit=10)
    assert calls == [False]
    assert len(ds) == 10 and ds.images.shape == (10, 1, 64, 64)
    assert set(np.unique(ds.images)) <= {0, 255}


def test_dsprites_fixed_90_10_split(dsprites_splits):
    tr, te = dsprites_splits
    assert (len(tr), len(te)) == (41_472, 4_608)  # 46,080 = 90% + 10%
    idx_tr, idx_te = tr.attributes["index"].to_numpy(), te.attributes["index"].to_numpy()
    assert not np.intersect1d(idx_tr, idx_te).size
    assert np.array_equal(np.sort(np.concatenate([idx_tr, idx_te])), np.arange(46_080))
    # The split ignores `seed`: it must never move.
    assert np.array_equal(load_dataset("dsprites", "test", seed=7, limit=100).attributes["index"], idx_te[:100])
    assert tr.class_column == "shape" and set(tr.attributes["shape_name"]) == {"square", "ellipse", "heart"}


def test_dsprites_pooling_and_attributes(dsprites_splits):
    tr, _ = dsprites_splits
    small = load_dataset("dsprites", "train", image_size=32, limit=500)
    big = tr.images[:500].astype(np.float64)
    block_mean = big.reshape(500, 1, 32, 2, 32, 2).mean(axis=(3, 5))
    assert small.images.shape == (500, 1, 32, 32) and small.meta["resize"] == "avgpool2"
    assert np.array_equal(small.images, np.rint(block_mean).astype(np.uint8))
    assert abs(small.images.mean() - big.mean()) < 0.5  # pooling keeps the mass

    a = tr.attributes
    assert ((a["scale"] >= 3) == (a["is_large"] == 1)).all()
    lit = (tr.images[:, 0] > 0).sum(axis=(1, 2))
    assert lit[a["is_large"] == 1].mean() > lit[a["is_large"] == 0].mean()
    cols = (tr.images[:, 0] > 0).sum(axis=1)  # (N, W)
    cx = (cols * np.arange(64)).sum(axis=1) / cols.sum(axis=1)
    rows = (tr.images[:, 0] > 0).sum(axis=2)
    cy = (rows * np.arange(64)).sum(axis=1) / rows.sum(axis=1)
    assert np.corrcoef(cx, a["pos_x_value"])[0, 1] > 0.95 and np.corrcoef(cy, a["pos_y_value"])[0, 1] > 0.95
    assert cx[a["is_left"] == 1].max() < cx[a["is_left"] == 0].min() + 8


def test_dsprites_subset_variant():
    real_root("dsprites", "dsprites_subset.npz")
    te = load_dataset("dsprites", "test", variant="subset")
    assert len(te) == 2_000 and te.meta["variant"] == "subset"


# ------------------------------------------------------------------ CelebA

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


@pytest.fixture
def celeba_root(tmp_path):
    """Six 178x218 JPEGs whose red/green channels encode x/y, plus the two txt files."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    yy, xx = np.mgrid[0:218, 0:178]
    rng = np.random.default_rng(0)
    values = rng.choice([-1, 1], size=(6, 40))
    lines = ["6", " ".join(CELEBA_ATTRS) + " "]
    for i in range(6):
        name = f"{i + 1:06d}.jpg"
        rgb = np.stack([xx, yy, np.full_like(xx, 40 * i)], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(root / "img_align_celeba" / name, quality=100, subsampling=0)
        lines.append(name + " " + " ".join(f"{v:2d}" for v in values[i]))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    parts = [0, 0, 0, 1, 2, 2]  # train 1-3, validation 4, test 5-6
    (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(parts)))
    return root, values


def test_celeba_splits_and_attributes(celeba_root):
    root, values = celeba_root
    tr = load_dataset("celeba", "train", root=root)
    te = load_dataset("celeba", "test", root=root)
    assert tr.attributes["filename"].tolist() == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert te.attributes["filename"].tolist() == ["000005.jpg", "000006.jpg"]
    assert tr.binary_attributes == tuple(CELEBA_ATTRS)
    assert np.array_equal(tr.attributes[CELEBA_ATTRS].to_numpy(), (values[:3] > 0).astype(int))
    assert tr.images is None and tr.meta["crop"] == "d2c"  # lazy
    x = tr.uint8()
    assert x.shape == (3, 3, 64, 64) and x.dtype == np.uint8 and tr.image_shape == (3, 64, 64)


def test_celeba_d2c_crop_box(celeba_root):
    root, _ = celeba_root
    path = root / "img_align_celeba" / "000002.jpg"
    # At 128 px no resize happens: channel values give the source coordinates.
    full = load_dataset("celeba", root=root, image_size=128).uint8(np.array([1]))[0].astype(float)
    assert abs((full[0] - np.arange(128)[None, :]).mean() - 25) < 0.3  # left = 25
    assert abs((full[1] - np.arange(128)[:, None]).mean() - 57) < 0.3  # top = 57
    # At 64 px it equals PIL's bilinear resize of the same box.
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB").crop((25, 57, 153, 185)).resize((64, 64), Image.BILINEAR)).transpose(2, 0, 1)
    d2c = load_dataset("celeba", root=root).uint8(np.array([1]))[0]
    assert np.array_equal(d2c, ref)
    squash = load_dataset("celeba", root=root, crop="squash")
    with Image.open(path) as im:
        ref_sq = np.asarray(im.convert("RGB").resize((64, 64), Image.BILINEAR)).transpose(2, 0, 1)
    assert squash.meta["crop"] == "squash" and np.array_equal(squash.uint8(np.array([1]))[0], ref_sq)
    assert not np.array_equal(ref_sq, d2c)


def test_celeba_missing_files_are_named(celeba_root):
    root, _ = celeba_root
    (root / "img_align_celeba" / "000006.jpg").unlink()
    with pytest.raises(DataError) as e:
        load_dataset("celeba", "test", root=root)
    assert "000006.jpg" in one_line(e)
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError) as e:
        load_dataset("celeba", root=root)
    assert "list_eval_partition.txt" in one_line(e)
    with pytest.raises(DataError):
        load_dataset("celeba", root=root, crop="centre")
    assert celeba_mod.D2C_BOX == (25, 57, 153, 185)


# ------------------------------------------------------------- imagefolder


@pytest.fixture
def image_folder(tmp_path):
    """40 non-square PNGs in two subfolders: red | green | blue vertical thirds."""
    root = tmp_path / "imgs"
    rows = []
    for i in range(40):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        img = np.zeros((20, 60, 3), np.uint8)
        img[:, :20, 0] = img[:, 20:40, 1] = img[:, 40:, 2] = 200 + i
        rel = f"{sub.name}/img{i:02d}.png"
        Image.fromarray(img).save(root / rel)
        rows.append({"filename": rel, "smiling": i % 2, "label": i % 3, "note": f"n{i}"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def test_imagefolder_labels_and_hash_split(image_folder):
    tr = load_dataset("imagefolder", "train", root=image_folder, image_size=16)
    te = load_dataset("imagefolder", "test", root=image_folder, image_size=16)
    names_tr, names_te = set(tr.attributes["filename"]), set(te.attributes["filename"])
    assert len(names_tr) + len(names_te) == 40 and not names_tr & names_te and len(names_te) >= 1
    assert tr.attributes["filename"].tolist() == sorted(names_tr)
    assert tr.binary_attributes == ("smiling",) and tr.class_column == "label"
    assert (tr.attributes["smiling"] == tr.attributes["filename"].str.startswith("a/").astype(int)).all()
    x = tr.uint8()
    assert x.shape == (len(tr), 3, 16, 16) and tr.images is None
    # Centre crop of a 60x20 image is the middle (green) third.
    assert x[:, 1].min() >= 200 and x[:, 0].max() == 0 and x[:, 2].max() == 0
    again = load_dataset("imagefolder", "train", root=image_folder, image_size=16)
    assert again.content_hash() == tr.content_hash()
    grey = load_dataset("imagefolder", "test", root=image_folder, image_size=16, channels=1)
    assert grey.uint8().shape == (len(te), 1, 16, 16)


def test_imagefolder_split_column_and_errors(image_folder, tmp_path):
    table = pd.read_csv(image_folder / "labels.csv")
    table["split"] = ["test" if i < 5 else "train" for i in range(len(table))]
    csv = tmp_path / "with_split.csv"
    table.to_csv(csv, index=False)
    te = load_dataset("imagefolder", "test", root=image_folder, labels=str(csv))
    assert sorted(te.attributes["filename"]) == sorted(table["filename"][:5]) and te.meta["split_by"] == "csv"

    bad = table.copy()
    bad.loc[0, "filename"] = "a/missing.png"
    bad.to_csv(csv, index=False)
    with pytest.raises(DataError) as e:
        load_dataset("imagefolder", root=image_folder, labels=str(csv))
    assert "a/missing.png" in one_line(e)

    (image_folder / "labels.csv").unlink()
    (image_folder / "b" / "img00.png").write_bytes(b"not a png")
    ds = load_dataset("imagefolder", hash_split("b/img00.png"), root=image_folder)
    with pytest.raises(DataError) as e:
        ds.uint8()
    assert "img00.png" in one_line(e)
    shutil.rmtree(image_folder)
    with pytest.raises(DataError):
        load_dataset("imagefolder", root=image_folder)
