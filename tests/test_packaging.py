"""The package as pip installs it: every subpackage is listed, and the layers import what they may."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_in_pyproject():
    """A non-editable install ships only the listed packages: a missing one breaks `pip install .`."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "diffae_bench").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
    assert {"diffae_bench.tasks", "diffae_bench.baselines"} <= listed


def _imports(path: Path, package: str = "diffae_bench.reporting") -> set[str]:
    """Absolute names a module imports, at any depth (relative imports resolved against its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - (node.level - 1)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
    return names


def test_reporting_imports_no_model_code():
    files = sorted((ROOT / "diffae_bench" / "reporting").glob("*.py"))
    assert len(files) >= 8
    banned = ("diffae_bench.models", "diffae_bench.nets", "diffae_bench.baselines", "torch")
    for f in files:
        bad = sorted(n for n in _imports(f) if n.startswith(banned))
        assert not bad, f"{f.name} imports {bad}"


# What each layer may not import (README "Layout"): scoring cores know no model and no training;
# training knows nothing of evaluation; evaluation knows nothing of training, timing or the CLI.
LAYER_BANS = {
    "metrics": ("diffae_bench.models", "diffae_bench.nets", "diffae_bench.baselines", "diffae_bench.tasks",
                "diffae_bench.training", "diffae_bench.perf", "diffae_bench.cli"),
    "training": ("diffae_bench.harness", "diffae_bench.tasks", "diffae_bench.metrics", "diffae_bench.reporting",
                 "diffae_bench.perf", "diffae_bench.cli"),
    "harness": ("diffae_bench.training", "diffae_bench.perf", "diffae_bench.cli"),
}


def test_each_layer_imports_only_what_it_may():
    for layer, banned in LAYER_BANS.items():
        files = sorted((ROOT / "diffae_bench" / layer).glob("*.py"))
        assert len(files) >= 5, layer
        for f in files:
            bad = sorted(n for n in _imports(f, f"diffae_bench.{layer}") if n.startswith(banned))
            assert not bad, f"{layer}/{f.name} imports {bad}"


def test_import_check_sees_a_model_import(tmp_path):
    """Anti-oracle for the check above: a relative import of models/ is resolved and caught."""
    f = tmp_path / "bad.py"
    f.write_text("from ..models import load_model\nfrom .tables import LEGEND\nimport torch.nn\n")
    names = _imports(f)
    assert {"diffae_bench.models.load_model", "diffae_bench.reporting.tables", "torch.nn"} <= names
    nested = tmp_path / "nested.py"
    nested.write_text("def f():\n    from ..training.step import StepSetup\n")
    assert "diffae_bench.training.step" in _imports(nested, "diffae_bench.harness")
