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

Built-in tasks are listed by name in TASKS (each module exposes `TASK`); other
packages add theirs through the `diffae_bench.tasks` entry-point group.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import BenchError
from .options import replace_typed
from ..registry import Registry

# Options renamed without a change of meaning (issue 14: the number of DDIM
# steps is `T` in every task, from the CLI flag to the sampler). The old name
# is accepted with a warning for one release, and records hash the option
# under its old name (records.config_hash), so they stay comparable.
RENAMED_OPTIONS = {("reconstruction", "steps"): "T", ("fake_detection", "steps"): "T", ("sample_fid", "steps"): "T",
                   ("linear_probe", "x_T_steps"): "T"}


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
    pretrained_weights: dict = field(default_factory=dict)  # name -> {path, sha256, ...} of networks the scores used

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

    @classmethod
    def min_images_for(cls, cfg) -> int:
        """The fewest images per split this config can run on (default: min_images); checked before any task runs."""
        return cls.min_images

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
        """The task's Config with overrides, each converted to its field's type (diffae_bench.harness.options).

        Unknown keys are an error with a suggestion; "feature_net.steps=100"
        sets a field of a nested config dataclass; a value that does not fit
        its field ("n_images=abc", a negative count, a backbone not among the
        choices) is a one-line BenchError, raised before any work starts.
        """
        overrides = dict(overrides or {})
        for (task, old), new in RENAMED_OPTIONS.items():
            if task == cls.name and old in overrides:
                warnings.warn(f"task option {task}.{old} is now {task}.{new} (the old name goes in the next release)",
                              FutureWarning, stacklevel=2)
                overrides.setdefault(new, overrides.pop(old))
        return replace_typed(cls.Config(), overrides, f"task {cls.name}", non_negative=True)


# Built-ins are listed like plugins (diffae_bench.registry); other packages add
# tasks through the "diffae_bench.tasks" entry-point group (each loads a Task class).
BUILTIN_TASKS = ("attribute_manipulation", "disentanglement", "fake_detection", "fewshot_fid", "interpolation",
                 "linear_probe", "memorization", "prior_fid", "reconstruction", "sample_fid", "z_usage")
TASKS: Registry[type[Task]] = Registry("task", group="diffae_bench.tasks", builtins={
    name: f"diffae_bench.tasks.{name}:TASK" for name in BUILTIN_TASKS})


def register(cls: type[Task]) -> type[Task]:
    """Class decorator for a task defined outside a module the registry lists (notebooks, tests)."""
    TASKS.register(cls.name)(cls)
    return cls


def get_task(name: str) -> type[Task]:
    return TASKS.get(name)


def task_names() -> list[str]:
    return TASKS.names()


def takes_T(cls: type[Task]) -> bool:
    """Whether the task's config has `T`, the number of DDIM steps (an int, or a tuple of them)."""
    return any(f.name == "T" for f in dataclasses.fields(cls.Config))


def T_override(cls: type[Task], T: tuple[int, ...]) -> int | tuple[int, ...]:
    """`bench run --T` for one task: the tuple for a task that sweeps T, the single value for one that takes one."""
    field_type = next(f.type for f in dataclasses.fields(cls.Config) if f.name == "T")
    if "tuple" in str(field_type):
        return tuple(T)
    if len(T) != 1:
        raise BenchError(f"task {cls.name} takes one T (DDIM steps), got --T {','.join(map(str, T))}; "
                         f"give one value or set it per task: --set {cls.name}.T=N")
    return T[0]
