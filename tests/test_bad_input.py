"""Bad input is refused before any work (issue 13, item 7).

Every case goes through the `bench` entry point (diffae_bench.cli.main, in
process so the table stays fast) and must end with exit code 2, exactly one
line on stderr that starts with "error:" and names the problem, no
traceback, and not one file written or touched under the test's folder
(which holds the run's --out, --cache-dir, --leaderboard, $DIFFAE_BENCH_CACHE
and the working directory). The model is an untrained tiny Diff-AE from a
module:factory: every check runs before a model is loaded, and before these
checks existed `bench run` evaluated it (and wrote records) before failing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffae_bench.cli import main
from diffae_bench.errors import BenchError
from diffae_bench.harness.runner import parse_task_options
from diffae_bench.harness.task import get_task

# Placeholders replaced in each case's argv: a file, a folder, fresh paths in the test folder.
FILE, DIR = "<file>", "<dir>"
MODEL = "bad_input_model:tiny_diffae"  # written by the factory_module fixture
RUN = ["run", "--model", MODEL, "--device", "cpu", "--quiet", "--out", "<out>", "--cache-dir", "<cache>",
       "--leaderboard", "<lb>"]
REC = [*RUN, "--task", "reconstruction"]
TRAIN = ["train", "--out", "<train>", "--device", "cpu", "--train-limit", "8"]

CASES = [
    # --set: values converted to the config field's type, names checked, nested configs
    ("set-int-abc", [*REC, "--set", "reconstruction.n_images=abc"], "option 'n_images' expects an integer, got 'abc'"),
    ("set-int-float", [*REC, "--set", "reconstruction.n_images=1.5"], "option 'n_images' expects an integer"),
    ("set-negative", [*REC, "--set", "reconstruction.n_images=-5"], "option 'n_images' must not be negative"),
    ("set-bool", [*REC, "--set", "reconstruction.lpips=maybe"], "option 'lpips' expects true or false"),
    ("set-int-tuple", [*REC, "--set", "reconstruction.T=10,x"], "option 'T' expects comma-separated values"),
    ("set-float-nan", [*RUN, "--task", "linear_probe", "--set", "linear_probe.C=nan"], "option 'C' expects a number"),
    ("set-unknown", [*REC, "--set", "reconstruction.n_imges=3"], "did you mean 'n_images'"),
    ("set-malformed", [*REC, "--set", "reconstruction"], "--set expects task.field=value"),
    ("set-other-task", [*REC, "--set", "memorization.T=10"], "task(s) not being run: memorization"),
    ("set-nested-int", [*RUN, "--task", "sample_fid", "--set", "sample_fid.feature_net.steps=abc"],
     "option 'feature_net.steps' expects an integer"),
    ("set-nested-unknown", [*RUN, "--task", "sample_fid", "--set", "sample_fid.feature_net.step=100"],
     "did you mean 'feature_net.steps'"),
    ("set-nested-whole", [*RUN, "--task", "sample_fid", "--set", "sample_fid.feature_net=3"], "is a group of options"),
    ("set-choice", [*RUN, "--task", "fake_detection", "--set", "fake_detection.backbone=vgg"],
     "option 'backbone' expects one of small_cnn, resnet50, got 'vgg'"),
    ("set-tuple-choice", [*RUN, "--task", "linear_probe", "--set", "linear_probe.representations=codes,pixelz"],
     "option 'representations' expects comma-separated values, each one of codes"),
    ("set-mode-choice", [*RUN, "--task", "fewshot_fid", "--set", "fewshot_fid.modes=binary,pv"],
     "option 'modes' expects comma-separated values, each one of binary, pu"),
    # bench run's own options
    ("run-task", [*RUN, "--task", "reconstrution"], "did you mean 'reconstruction'"),
    ("run-format", [*REC, "--format", "xlsx"], "'xlsx' is not one of"),
    ("run-limit-zero", [*REC, "--limit", "0"], "--limit must be a positive integer"),
    # the second task's minimum: the first task must not run (and write its record) before the refusal
    ("run-limit-task", [*RUN, "--task", "reconstruction,linear_probe", "--limit", "5"],
     "task linear_probe: --limit 5 leaves too few images; at least 20 needed"),
    ("run-limit-interp", [*RUN, "--task", "interpolation", "--limit", "3"], "task interpolation: --limit 3"),
    ("run-limit-fewshot", [*RUN, "--task", "fewshot_fid", "--limit", "32"],
     "task fewshot_fid: --limit 32 leaves too few images; at least 100 needed"),
    ("run-T-text", [*REC, "--T", "10,abc"], "--T expects comma-separated integers"),
    ("run-T-zero", [*REC, "--T", "0"], "--T expects positive integers"),
    ("run-T-one-value", ["run", "--task", "memorization", "--model", "<model>", "--T", "10,20"], "task memorization takes one T"),
    ("run-T-and-steps", [*REC, "--T", "10", "--steps", "10"], "give --T only"),
    ("run-batch-zero", [*REC, "--batch-size", "0"], "--batch-size must be a positive integer"),
    ("run-batch-text", [*REC, "--batch-size", "abc"], "Invalid value for '--batch-size'"),
    ("run-seed", [*REC, "--seed", "-1"], "--seed must not be negative"),
    ("run-mode", [*REC, "--numeric-mode", "fp64"], "unknown numeric mode 'fp64'"),
    ("run-device", [*REC, "--device", "tpu"], "unknown device 'tpu'"),
    ("run-dataset", [*REC, "--dataset", "shapez"], "did you mean 'shapes'"),
    ("run-model", [*REC[:2], "/no/such/run", *REC[3:]], "no trained model at '/no/such/run'"),
    ("run-out-file", [*REC, "--out", FILE], "--out"),
    ("run-leaderboard-dir", [*REC, "--leaderboard", DIR], "--leaderboard"),
    # bench train
    ("train-steps-zero", [*TRAIN, "--steps", "0"], "--steps must be a positive integer, got 0"),
    ("train-steps-negative", [*TRAIN, "--steps", "-3"], "--steps must be a positive integer, got -3"),
    ("train-images-zero", [*TRAIN, "--images", "0"], "--images must be a positive integer"),
    ("train-steps-and-images", [*TRAIN, "--steps", "1", "--images", "8"], "give --steps or --images, not both"),
    ("train-ckpt-every", [*TRAIN, "--steps", "1", "--ckpt-every", "0"], "--ckpt-every must be a positive integer"),
    ("train-lr", [*TRAIN, "--steps", "1", "--lr", "nan"], "--lr must be a positive number"),
    ("train-limit", ["train", "--out", "<train>", "--device", "cpu", "--steps", "1", "--train-limit", "0"],
     "--train-limit must be a positive integer"),
    ("run-dataset-args", [*REC, "--dataset-args", "download"], "--dataset-args expects key=value"),
    ("ls-format", ["ls", "tasks", "--format", "yaml"], "--format must be text or json"),
    ("train-preset", [*TRAIN, "--steps", "1", "--preset", "smal"], "did you mean 'small'"),
    ("train-mode", [*TRAIN, "--steps", "1", "--numeric-mode", "fp64"], "unknown numeric mode 'fp64'"),
    ("train-prediction", [*TRAIN, "--steps", "1", "--prediction", "x0"], "--prediction must be one of eps, v, got 'x0'"),
    ("train-stage", [*TRAIN, "--steps", "1", "--stage", "both"], "'both' is not one of"),
    # the result commands
    ("table-format", ["table", "--format", "xlsx", "<out>"], "'xlsx' is not one of"),
    ("ls-what", ["ls", "everything"], "unknown list 'everything'"),
]


@pytest.fixture(scope="module")
def factory_module(tmp_path_factory):
    """A module on sys.path whose factory returns an untrained tiny Diff-AE (built in milliseconds, never trained)."""
    folder = tmp_path_factory.mktemp("factory")
    (folder / "bad_input_model.py").write_text(
        "from diffae_bench.models import build_model\n"
        "from diffae_bench.presets import PRESETS\n\n\n"
        "def tiny_diffae():\n"
        "    return build_model('diffae', PRESETS.get('tiny').for_data(3, 16))\n")
    return folder


def _snapshot(root: Path) -> list[tuple]:
    """Every path under root with its kind, size, mode and modification time."""
    return sorted((str(p.relative_to(root)), p.is_dir(), p.stat().st_size, p.stat().st_mode, p.stat().st_mtime_ns)
                  for p in root.rglob("*"))


@pytest.mark.parametrize("argv,expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, expect, factory_module, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    (work / "a-folder").mkdir(parents=True)
    (work / "a-file").write_text("not a folder\n")
    monkeypatch.chdir(work)  # runs/bench/<time> and any relative path would land here
    monkeypatch.setenv("DIFFAE_BENCH_CACHE", str(work / "env-cache"))
    monkeypatch.syspath_prepend(str(factory_module))
    places = {FILE: str(work / "a-file"), DIR: str(work / "a-folder"),
              "<out>": str(work / "out"), "<cache>": str(work / "cache"), "<lb>": str(work / "leaderboard.csv"),
              "<train>": str(work / "train")}
    before = _snapshot(work)
    with pytest.raises(SystemExit) as exit_info:
        main([places.get(a, a) for a in argv])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expect in lines[0], lines[0]
    assert _snapshot(work) == before, "bad input wrote or touched files"


def test_the_factory_model_is_a_valid_model(factory_module, monkeypatch):
    """The table's model is good input: its cases fail on what they name, not on the model."""
    from diffae_bench.harness.runner import load_model_spec

    monkeypatch.syspath_prepend(str(factory_module))
    assert load_model_spec(MODEL, torch.device("cpu")).model.image_shape == (3, 16, 16)


def test_the_table_is_large_enough():
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)


def test_set_values_are_converted_to_the_field_types():
    options = parse_task_options(["reconstruction.lpips=False", "reconstruction.random_xT=true",
                                  "reconstruction.T=10,20", "reconstruction.n_images=8"])
    assert options == {"reconstruction": {"lpips": "False", "random_xT": "true", "T": "10,20", "n_images": "8"}}
    cfg = get_task("reconstruction").make_config(options["reconstruction"])
    assert cfg.lpips is False and cfg.random_xT is True and cfg.T == (10, 20) and cfg.n_images == 8
    # one value where the field holds a tuple; Python values as demo.py and the tests pass them
    assert get_task("reconstruction").make_config({"T": "10"}).T == (10,)
    assert get_task("reconstruction").make_config({"T": 10, "lpips": False}).T == (10,)
    with pytest.warns(FutureWarning, match="reconstruction.steps is now reconstruction.T"):  # the old name, for one release
        assert get_task("reconstruction").make_config({"steps": "10,20"}).T == (10, 20)
    probe = get_task("linear_probe").make_config({"attributes": "digit_0,digit_1", "C": "0.5", "few_shot_k": "3"})
    assert probe.attributes == ("digit_0", "digit_1") and probe.C == 0.5 and probe.few_shot_k == (3,)
    assert get_task("linear_probe").make_config({"attributes": ""}).attributes == ()
    nested = get_task("sample_fid").make_config({"feature_net.steps": "40", "feature_net.lr": "1e-3"})
    assert nested.feature_net.steps == 40 and nested.feature_net.lr == 0.001 and nested.feature_net.width == 16
    assert get_task("fake_detection").make_config({"backbone": "resnet50"}).backbone == "resnet50"


@pytest.mark.parametrize("overrides", [{"lpips": 1}, {"n_images": True}, {"n_images": 2.0}, {"split": 3}])
def test_python_values_of_the_wrong_type_are_refused(overrides):
    with pytest.raises(BenchError, match="task reconstruction option"):
        get_task("reconstruction").make_config(overrides)


def test_the_runner_refuses_a_small_limit_for_any_task_before_loading_models():
    from diffae_bench.harness.runner import RunOptions, run

    with pytest.raises(BenchError, match="task fake_detection: --limit 9"):
        run(RunOptions(tasks=("reconstruction", "fake_detection"), models=("/no/such/run",), limit=9))
