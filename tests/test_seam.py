"""The model seam and the layers (issue 14): one sampler, one name for T, no import cycle, plugins by name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diffae_bench.models import model_names
from diffae_bench.harness.runner import RunOptions, _resolve_configs
from diffae_bench.harness.task import get_task, task_names, takes_T

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"diffae_bench": ROOT / "diffae_bench", "diffae_bench.tasks": ROOT / "tasks",
            "diffae_bench.baselines": ROOT / "baselines"}


def _modules() -> dict[str, Path]:
    """Every module of the installed package (tasks/ and baselines/ install as diffae_bench.tasks / .baselines)."""
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that `name` imports anywhere in its file (top level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: not an import at run time
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # "pkg.mod.attr" -> "pkg.mod"
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_the_import_graph_has_no_cycle():
    """Every import between the suite's modules, lazy ones included, points one way (parents excepted:
    a package's __init__ may re-export its children; `if TYPE_CHECKING:` imports do not run)."""
    mods = _modules()
    graph = {m: {d for d in _imports(m, p, set(mods)) if not m.startswith(d + ".")} for m, p in mods.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    code = textwrap.dedent("""
        import importlib, sys
        failed = []
        for name in sys.argv[1:]:
            for loaded in [m for m in sys.modules if m == "diffae_bench" or m.startswith("diffae_bench.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as e:
                failed.append(f"{name}: {type(e).__name__}: {e}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
    """)
    r = subprocess.run([sys.executable, "-c", code, *_modules()], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_model_reimplements_a_sampler():
    """decode / invert / sample are the base class's (models/base.py), run on the model's denoiser."""
    files = [*(ROOT / "baselines").glob("*.py"), *(ROOT / "diffae_bench" / "models").glob("*.py")]
    offenders = [str(f.relative_to(ROOT)) for f in files
                 if f.name not in ("base.py", "priors.py") and ("respace(" in f.read_text() or "ddim_sample(" in f.read_text())]
    assert not offenders, offenders


def test_no_task_names_a_model_kind_or_a_code():
    """Tasks ask the model what it offers (model.codes); no string in their code names a model or a code.

    Docstrings and comments may speak of Diff-AE and z_sem; string constants the code uses may not.
    """
    from diffae_bench.models import build_model
    from diffae_bench.presets import PRESETS

    tiny = PRESETS.get("tiny").for_data(3, 16)
    forbidden = set(model_names()) | {r.name for k in model_names() for r in build_model(k, tiny).codes}
    assert {"diffae", "ddim", "dmz", "z_sem", "soft", "hard"} <= forbidden
    for path in sorted((ROOT / "tasks").glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        used = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and id(n) not in docstrings}
        words = {w for s in used for w in s.replace("/", " ").replace("=", " ").replace('"', " ").split()}
        assert not (used | words) & forbidden, (path.name, sorted((used | words) & forbidden))


# ---------------------------------------------------------------- T is one name
def test_T_reaches_every_task_that_takes_it(capsys):
    names = task_names()
    opts = RunOptions(tasks=tuple(names), models=("unused",), T=(7,))
    configs = dict((cls.name, cfg) for cls, cfg in _resolve_configs(opts))
    with_T = [n for n in names if takes_T(get_task(n))]
    assert {"reconstruction", "linear_probe", "interpolation", "memorization", "fake_detection", "sample_fid",
            "fewshot_fid"} <= set(with_T)
    for name in with_T:
        assert configs[name].T in (7, (7,)), name
    err = capsys.readouterr().err
    for name in set(names) - set(with_T):  # told, not silently ignored
        assert f"task {name} takes no T" in err
    for name in names:  # one name: no other field counts DDIM steps
        fields = get_task(name).Config.__dataclass_fields__
        assert not [f for f in fields if f == "steps" or f.endswith("_steps")], name


def test_renamed_options_keep_the_record_identity():
    """A record written with `steps` and one with `T` of the same value hash alike (they are comparable)."""
    from diffae_bench.harness.records import config_hash, record_id

    def rec(config):
        return {"task": {"name": "reconstruction", "version": 2, "config": config}, "model": {"fingerprint": "f"},
                "dataset": {"name": "shapes", "splits": {}}, "seed": 0, "numeric_mode": "fp32"}

    old, new = rec({"steps": [10], "n_images": 4}), rec({"T": [10], "n_images": 4})
    assert config_hash(old) == config_hash(new) and record_id(old) == record_id(new)
    assert config_hash(new) != config_hash(rec({"T": [20], "n_images": 4}))


# ---------------------------------------------------------------- a new variant in one small file
TOY_MODEL = '''
"""A toy diffusion autoencoder: what a researcher writes to benchmark a new variant."""
import torch
from torch import nn

from diffae_bench.models import DiffusionAutoencoder
from diffae_bench.models.loss import DiffusionLoss


class ToyAE(DiffusionAutoencoder):
    kind = "toy"
    latent_type = "continuous"

    def __init__(self, z_dim: int = 6, size: int = 16):
        super().__init__()
        self.z_dim, self.size = z_dim, size
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, z_dim))
        self.net = nn.Sequential(nn.Conv2d(3 + z_dim + 1, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 3, 3, padding=1))
        self._loss = DiffusionLoss()

    @property
    def image_shape(self):
        return (3, self.size, self.size)

    def encode(self, x0):
        return self.enc(x0)

    def denoise(self, x_t, t, z):
        b, _, h, w = x_t.shape
        cond = torch.cat([z, t.float()[:, None] / 1000], 1)[:, :, None, None].expand(-1, -1, h, w)
        return self.net(torch.cat([x_t, cond], 1))

    def loss(self, x0, generator=None):
        z = self.encode(x0)
        return self._loss(lambda x_t, t: self.denoise(x_t, t, z), x0, generator)


def make():
    torch.manual_seed(0)
    return ToyAE().eval()
'''


@pytest.mark.slow
def test_a_toy_variant_runs_reconstruction_and_linear_probe_through_the_cli(tmp_path):
    assert len(TOY_MODEL.strip().splitlines()) <= 60
    (tmp_path / "toy_model.py").write_text(TOY_MODEL)
    r = subprocess.run([sys.executable, "-m", "diffae_bench.cli", "run", "--task", "reconstruction,linear_probe",
                        "--model", "toy_model:make", "--dataset", "shapes", "--limit", "24", "--T", "10",
                        "--set", "linear_probe.few_shot_k=3", "--set", "reconstruction.lpips=false",
                        "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--quiet",
                        "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for task in ("reconstruction", "linear_probe"):
        rec = json.loads((tmp_path / "out" / f"{task}__toy_model_make__shapes.json").read_text())
        assert rec["model"]["kind"] == "toy" and rec["metrics"], task
        keys = {m["key"] for m in rec["metrics"]}
        if task == "reconstruction":
            assert {"ssim/T=10/xT=inferred", "mse/T=10/xT=random"} <= keys
        else:  # the declared code (the default z_sem) is probed beside x_T and pixels
            assert any("rep=z_sem" in k for k in keys) and any("rep=x_T" in k for k in keys)
