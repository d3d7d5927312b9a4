"""LPIPS / FID weights: download through torch.hub, sha256 check, offline mode, and no stand-in ever used.

The real download code runs against a local HTTP server on 127.0.0.1 (a thread)
that serves small stand-in files; TORCH_HOME is a tmp folder, so nothing is
written to the real cache. A stand-in is accepted only where a test replaces
the table's sha256 with the stand-in's own (the success case); everywhere else
the published sha256 refuses it, which is what keeps it out of LPIPS and FID.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest
import torch

from diffae_bench.metrics import weights as W
from diffae_bench.errors import BenchError

STAND_IN = b"not a network: a stand-in for a weights file\n" * 100


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, downloads allowed (conftest makes the session offline)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(W.OFFLINE_ENV, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


class _Server:
    """Files of a folder over HTTP on 127.0.0.1, counting the requests it answers."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *a):  # keep pytest's output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    for w in W.KNOWN.values():
        (root / w.file).write_bytes(STAND_IN)
    s = _Server(root)
    yield s
    if s.thread.is_alive():
        s.stop()


def _point(monkeypatch, name: str, url: str, accept_stand_in: bool = False):
    """Point a table entry's URL at the local server; with accept_stand_in, also its sha256 and size."""
    w = W.KNOWN[name]
    change = {"url": url}
    if accept_stand_in:
        change.update(sha256=hashlib.sha256(STAND_IN).hexdigest(), size=len(STAND_IN))
    monkeypatch.setitem(W.KNOWN, name, dataclasses.replace(w, **change))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------- the table
def test_the_table_is_the_libraries_own_urls_and_hash_prefixes():
    from torch.hub import HASH_REGEX
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import AlexNet_Weights

    assert W.KNOWN["alexnet"].url == AlexNet_Weights.IMAGENET1K_V1.url
    assert W.KNOWN["inception"].url == URL_INCEPTION_V3
    for w in W.KNOWN.values():
        assert w.url.rsplit("/", 1)[1] == w.file
        assert re.fullmatch(r"[0-9a-f]{64}", w.sha256)
        assert w.sha256.startswith(HASH_REGEX.search(w.file).group(1))  # the prefix the library publishes
    assert W.get("lpips") is W.KNOWN["alexnet"] and W.get("FID") is W.KNOWN["inception"]
    with pytest.raises(BenchError, match="unknown weights"):
        W.get("vgg")


def test_needed_by_reads_the_task_flags():
    from diffae_bench.harness.task import get_task

    recon, fid = get_task("reconstruction"), get_task("sample_fid")
    assert W.needed_by([recon.make_config({})]) == ["alexnet"]
    assert W.needed_by([recon.make_config({"lpips": "false"}), fid.make_config({})]) == ["inception"]
    assert W.needed_by([get_task("linear_probe").make_config({})]) == []


# ---------------------------------------------------------------- downloads
def test_download_success_caches_the_verified_file(home, server, monkeypatch):
    _point(monkeypatch, "alexnet", f"{server.base}/{W.KNOWN['alexnet'].file}", accept_stand_in=True)
    with W.using(offline=False, progress=False):
        assert W.prepare(["alexnet"]) == {}
        assert W.unavailable_reason("alexnet") is None
        info = W.record_info("alexnet")
    assert server.requests == [f"/{W.KNOWN['alexnet'].file}"]
    assert _files(home) == [W.KNOWN["alexnet"].file]
    assert info == {"path": str(home / W.KNOWN["alexnet"].file), "sha256": hashlib.sha256(STAND_IN).hexdigest()}
    with W.using(offline=False, progress=False):
        W.prepare(["alexnet"])  # there already: no second request
    assert len(server.requests) == 1


def test_a_wrong_hash_is_refused_and_nothing_is_cached(home, server, monkeypatch):
    _point(monkeypatch, "alexnet", f"{server.base}/{W.KNOWN['alexnet'].file}")  # the published sha256 kept
    with pytest.raises(BenchError, match="refused, nothing cached") as e:
        W.download("alexnet", progress=False)
    assert "\n" not in str(e.value) and W.KNOWN["alexnet"].url in str(e.value)
    assert _files(home.parent.parent) == []  # no file, no .partial left behind
    with W.using(offline=False, progress=False):
        failed = W.prepare(["alexnet"])
        reason = W.unavailable_reason("alexnet")
    assert "refused" in failed["alexnet"] and reason.startswith("LPIPS not computed:") and "refused" in reason
    assert _files(home.parent.parent) == []


def test_no_network_is_one_clear_line(home, server, monkeypatch):
    _point(monkeypatch, "inception", f"{server.base}/{W.KNOWN['inception'].file}", accept_stand_in=True)
    server.stop()  # the port now refuses connections
    with W.using(offline=False, progress=False):
        W.prepare(["inception"])
        reason = W.unavailable_reason("inception")
    assert "\n" not in reason and reason.startswith("FID not computed: downloading")
    for part in (W.KNOWN["inception"].url, "failed", "place it by hand", str(home), "--inception-weights"):
        assert part in reason
    assert not (home.parent.parent).exists()  # the folders made for the download are gone again


@pytest.mark.parametrize("how", ["env", "flag"])
def test_offline_makes_no_request(home, server, monkeypatch, how):
    _point(monkeypatch, "alexnet", f"{server.base}/{W.KNOWN['alexnet'].file}", accept_stand_in=True)
    if how == "env":
        monkeypatch.setenv(W.OFFLINE_ENV, "1")
    with W.using(offline=how == "flag", progress=False):
        assert W.prepare(["alexnet"]) == {}
        reason = W.unavailable_reason("alexnet")
    assert server.requests == []
    assert "offline (--offline or DIFFAE_BENCH_OFFLINE=1): nothing downloaded" in reason
    assert W.KNOWN["alexnet"].file in reason and "\n" not in reason


def test_outside_a_run_nothing_is_downloaded(home, server, monkeypatch):
    _point(monkeypatch, "alexnet", f"{server.base}/{W.KNOWN['alexnet'].file}", accept_stand_in=True)
    W.prepare(["alexnet"])  # the default policy (library use) is offline
    assert server.requests == [] and _files(home) == []
    assert "not fetched outside `bench run`" in W.unavailable_reason("alexnet")


# ---------------------------------------------------------------- stand-ins never become LPIPS or FID
def test_a_stand_in_alexnet_in_the_cache_is_never_lpips(home):
    import torchvision

    from diffae_bench.metrics.lpips_metric import LPIPS, get_lpips, lpips_unavailable_reason

    home.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), home / W.KNOWN["alexnet"].file)  # random: right shapes
    reason = lpips_unavailable_reason()
    assert reason.startswith("LPIPS not computed:") and "refused" in reason
    assert get_lpips("cpu") is None
    with pytest.raises(FileNotFoundError, match="refused"):
        LPIPS()


def test_a_stand_in_inception_in_the_cache_is_never_fid(home):
    from diffae_bench.metrics.frechet import inception_space, inception_unavailable_reason

    home.mkdir(parents=True)
    (home / W.KNOWN["inception"].file).write_bytes(STAND_IN)
    assert "refused" in inception_unavailable_reason()
    with pytest.raises(FileNotFoundError, match="refused"):
        inception_space(torch.device("cpu"))


def test_an_explicit_file_must_be_the_published_one(tmp_path, home):
    from diffae_bench.harness.runner import RunOptions, run

    f = tmp_path / "my-alexnet.pth"
    f.write_bytes(STAND_IN)
    with pytest.raises(BenchError, match="--lpips-weights .*refused"):
        with W.using(paths={"alexnet": str(f)}):
            pass
    # bench run refuses it before any model is loaded (the model path does not even exist)
    with pytest.raises(BenchError, match="--inception-weights .*no such file"):
        run(RunOptions(tasks=("sample_fid",), models=("/no/such/run",), inception_weights=str(tmp_path / "nope.pth")))


def test_an_explicit_file_is_what_the_run_loads(tmp_path, home, monkeypatch):
    """With the table accepting the stand-in (this test only), the explicit path wins over the cache."""
    monkeypatch.setitem(W.KNOWN, "alexnet", dataclasses.replace(
        W.KNOWN["alexnet"], sha256=hashlib.sha256(STAND_IN).hexdigest(), size=len(STAND_IN)))
    f = tmp_path / "elsewhere.pth"
    f.write_bytes(STAND_IN)
    with W.using(paths={"lpips": str(f)}):
        assert W.where("alexnet") == f.resolve() and W.unavailable_reason("alexnet") is None
    assert W.where("alexnet") == home / W.KNOWN["alexnet"].file


# ---------------------------------------------------------------- bench weights
def _bench(argv, capsys) -> tuple[int, str, str]:
    from diffae_bench.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bench_weights_commands(tmp_path, home, server, monkeypatch, capsys):
    code, out, _ = _bench(["weights", "path"], capsys)
    assert code == 0 and "[missing]" in out and str(home / W.KNOWN["inception"].file) in out
    code, out, _ = _bench(["weights", "verify", "alexnet"], capsys)
    assert code == 1 and "missing" in out
    f = tmp_path / "x.pth"
    f.write_bytes(STAND_IN)
    code, out, _ = _bench(["weights", "verify", "alexnet", "--file", str(f)], capsys)
    assert code == 1 and "refused" in out
    _point(monkeypatch, "alexnet", f"{server.base}/{W.KNOWN['alexnet'].file}")  # serves a wrong file
    code, _, err = _bench(["weights", "download", "alexnet", "--quiet"], capsys)
    assert code == 2 and err.startswith("error: downloaded") and "refused" in err and _files(home) == []
    _point(monkeypatch, "alexnet", f"{server.base}/{W.KNOWN['alexnet'].file}", accept_stand_in=True)
    code, out, _ = _bench(["weights", "download", "lpips", "--quiet"], capsys)
    assert code == 0 and "sha256 ok" in out and _files(home) == [W.KNOWN["alexnet"].file]
    code, out, _ = _bench(["weights", "verify", "alexnet"], capsys)
    assert code == 0 and "ok" in out
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    n = len(server.requests)
    code, _, err = _bench(["weights", "download", "inception"], capsys)
    assert code == 2 and W.OFFLINE_ENV in err and len(server.requests) == n


@pytest.mark.slow  # evaluates a trained model
def test_bench_run_fetches_first_and_never_reports_a_refused_file(trained_diffae, tmp_path, home, server, monkeypatch):
    """The real path end to end: the run downloads before its first task, the sha256 refuses the stand-in,
    the record has no LPIPS and says why in its notes, and the cache holds nothing."""
    from diffae_bench.harness.runner import RunOptions, run

    _point(monkeypatch, "alexnet", f"{server.base}/{W.KNOWN['alexnet'].file}")
    _, records = run(RunOptions(tasks=("reconstruction",), models=(str(trained_diffae["dir"]),), limit=4, T=(10,),
                                out=str(tmp_path / "run"), device="cpu", cache_dir=str(tmp_path / "cache"),
                                progress=False))
    rec = records[0]
    assert server.requests == [f"/{W.KNOWN['alexnet'].file}"]
    assert not any(m["family"] == "lpips" for m in rec["metrics"]) and "lpips_alexnet_backbone" not in rec["pretrained_weights"]
    assert any(n.startswith("LPIPS not computed:") and "refused" in n for n in rec["notes"])
    assert _files(home.parent.parent) == []
