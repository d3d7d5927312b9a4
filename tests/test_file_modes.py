"""Files written for people follow the user's umask (issue 13, item 8).

Records, run.json, leaderboards, cache entries and checkpoints are written
atomically (temp file, then rename); the temp file used to come from
tempfile.mkstemp, which makes every file 0600 whatever the umask, so a
shared result folder was unreadable to the rest of the group. Each file must
now get 0o666 less the umask, as any file the user creates does.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from diffae_bench.harness.cache import Cache
from diffae_bench.checkpoint import atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint
from diffae_bench.cli.results import _write_or_echo
from diffae_bench.reporting.leaderboard import append_records, build_leaderboard
from diffae_bench.harness.records import write_record
from test_results import make_record  # the synthetic records of the result-table tests

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")


@pytest.fixture(params=[0o022, 0o002], ids=lambda m: f"umask-{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_result_file_follows_the_umask(umask, tmp_path):
    run_dir = tmp_path / "run"
    rec = make_record()
    files = {"record": write_record(run_dir, rec), "run.json": run_dir / "run.json",
             "leaderboard": tmp_path / "board" / "leaderboard.csv", "rebuilt": tmp_path / "board" / "rebuilt.csv",
             "markdown": tmp_path / "board" / "leaderboard.md", "checkpoint": tmp_path / "train" / "checkpoint.safetensors",
             "table": tmp_path / "table.md"}
    atomic_write_json(files["run.json"], {"records": [files["record"].name]})
    append_records(files["leaderboard"], [rec])
    build_leaderboard([run_dir], files["rebuilt"], files["markdown"])
    save_checkpoint(files["checkpoint"], {"w": torch.ones(3)}, {"step": 1})
    _write_or_echo("| a |\n", str(files["table"]))
    cache = Cache(tmp_path / "cache")
    cache.get_or_compute("z", {"model": "m", "n": 2}, lambda: {"z": torch.zeros(2)})
    files["cache entry"] = cache.path("z", {"model": "m", "n": 2})

    want = 0o666 & ~umask
    got = {name: oct(mode(path)) for name, path in files.items()}
    assert got == {name: oct(want) for name in files}
    for folder in (run_dir, tmp_path / "board", tmp_path / "train", files["cache entry"].parent):
        assert mode(folder) == 0o777 & ~umask, folder
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")], "a temp file was left behind"


def test_a_replaced_file_gets_the_umask_not_its_old_mode(umask, tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{}\n")
    path.chmod(0o600)  # as the old mkstemp-based writer left it
    atomic_write_json(path, {"a": 1})
    assert mode(path) == 0o666 & ~umask and path.read_text() == '{\n  "a": 1\n}\n'


def test_a_failed_write_leaves_neither_file_nor_temp_file(tmp_path):
    def write(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_bytes(tmp_path / "record.json", write)
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_round_trip_through_the_new_writer(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", {"w": torch.arange(4.0)}, {"step": 3})
    tensors, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(tensors["w"], torch.arange(4.0)) and meta == {"step": 3}


@pytest.mark.slow  # trains one step and evaluates the model through the CLI
def test_bench_train_and_run_write_group_readable_files_under_umask_002(tmp_path, monkeypatch, capsys):
    from diffae_bench.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFAE_BENCH_CACHE", str(tmp_path / "cache"))
    old = os.umask(0o002)
    try:
        for argv in (["train", "--out", "model", "--steps", "1", "--train-limit", "8", "--batch-size", "4", "--image-size", "16",
                      "--device", "cpu"],
                     ["run", "--task", "reconstruction", "--model", "model", "--limit", "2", "--T", "2", "--device",
                      "cpu", "--quiet", "--out", "out", "--leaderboard", "board/leaderboard.csv", "--numeric-mode", "fp32",
                      "--set", "reconstruction.lpips=false", "--set", "reconstruction.random_xT=false"]):
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            assert exit_info.value.code == 0, capsys.readouterr().err
    finally:
        os.umask(old)
    written = [p for p in tmp_path.rglob("*") if p.name != "leaderboard.csv.lock"]  # the lock file is filelock's
    names = {p.name for p in written}
    assert {"checkpoint.safetensors", "config.json", "run.json", "leaderboard.csv"} <= names
    assert any(p.suffix == ".safetensors" and "cache" in p.parts for p in written)
    assert any(p.name.startswith("reconstruction__") and p.suffix == ".json" for p in written)
    wrong = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in written
             if mode(p) != (0o775 if p.is_dir() else 0o664)}
    assert wrong == {}
