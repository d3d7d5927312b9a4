"""The task interface and registry (lm-evaluation-harness / MTEB style).

A task is a class with
  name, version   the version is bumped whenever the meaning of a number changes;
                  records of different versions are never compared
  Config          a frozen dataclass, one commented default per field
  metrics         the metric families it reports, each with higher_is_better
                  and whether it is a main score (what the regression gate checks)
  run(ctx, cfg)   loads what it needs through the EvalContext (models and data
                  stay behind it) and hands plain arrays to a pure scoring core

and returns a TaskResult: metric values (each with a bootstrap CI), notes (for
what could not be measured and why), and figures it saved.

Tasks register by name in TASKS; other packages add theirs through the
`diffae_bench.tasks` entry-point group (each entry point loads a Task class).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .options import replace_typed
from .registry import Registry


@dataclass(frozen=True)
class Metric:
    name: str  # family name, e.g. "ssim"; values are keyed "ssim/T=20/xT=inferred"
    higher_is_better: bool  # direction, for tables and the regression gate
    main: bool = False  # a main score: the gate fails when it gets worse
    ideal: float | None = None  # a target value (e.g. 0.5 for a two-sample AUC): "worse" = farther from it
    description: str = ""  # one line for `bench ls tasks -v` and the README


@dataclass(frozen=True)
class MetricValue:
    key: str  # family plus its parameters: "ssim/T=20/xT=inferred"
    family: str  # the Metric.name this value belongs to
    value: float  # the point estimate on all items
    ci_low: float | None = None  # bootstrap percentile CI (None where not defined)
    ci_high: float | None = None
    n: int = 0  # items the value is computed from (images, test examples)
    params: dict = field(default_factory=dict)  # e.g. {"T": 20, "xT": "inferred"}


@dataclass
class TaskResult:
    values: list[MetricValue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is missing and why, departures from the paper
    figures: list[str] = field(default_factory=list)  # file names relative to the run directory
    extra: dict = field(default_factory=dict)  # task-specific detail kept in the record (not gated)

    def add(self, family: str, value: float, ci: tuple[float, float] | None = None, n: int = 0, **params) -> None:
        key = "/".join([family] + [f"{k}={v}" for k, v in params.items()])
        lo, hi = (None, None) if ci is None else (float(ci[0]), float(ci[1]))
        self.values.append(MetricValue(key, family, float(value), lo, hi, int(n), dict(params)))


class Task:
    """Base class; subclasses set the ClassVars and implement run()."""

    name: ClassVar[str]
    version: ClassVar[int]
    Config: ClassVar[type]
    metrics: ClassVar[tuple[Metric, ...]]
    description: ClassVar[str] = ""
    needs_attributes: ClassVar[bool] = False  # needs binary attributes of the data set
    # The fewest images of any split its statistics can be computed from; the runner
    # refuses a --limit below it for every task before any task runs.
    min_images: ClassVar[int] = 1

    def run(self, ctx, cfg) -> TaskResult:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def metric(cls, family: str) -> Metric:
        for m in cls.metrics:
            if m.name == family:
                return m
        raise KeyError(f"task {cls.name} declares no metric {family!r}")

    @classmethod
    def make_config(cls, overrides: dict[str, Any] | None = None):
        """The task's Config with overrides, each converted to its field's type (diffae_bench.options).

        Unknown keys are an error with a suggestion; "feature_net.steps=100"
        sets a field of a nested config dataclass; a value that does not fit
        its field ("n_images=abc", a negative count, a backbone not among the
        choices) is a one-line BenchError, raised before any work starts.
        """
        return replace_typed(cls.Config(), dict(overrides or {}), f"task {cls.name}", non_negative=True)


TASKS: Registry[type[Task]] = Registry("task")
_loaded = False


def _load_tasks() -> None:
    """Built-in tasks (diffae_bench.tasks), then plugins from entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import tasks  # noqa: F401  (each module registers itself)

    TASKS.add_entry_points("diffae_bench.tasks")


def register(cls: type[Task]) -> type[Task]:
    """Class decorator for task modules."""
    TASKS.add(cls.name, cls)
    return cls


def get_task(name: str) -> type[Task]:
    _load_tasks()
    return TASKS.get(name)


def task_names() -> list[str]:
    _load_tasks()
    return TASKS.names()
