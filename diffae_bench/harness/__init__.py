"""The evaluation harness: tasks, the runner, the evaluation context and its caches, records.

task.py          the Task interface and registry (lm-evaluation-harness / MTEB style)
runner.py        `bench run`: every task on every model, one record per (task, model, data set)
context.py       EvalContext: what a task may ask of a model (codes, decodes, samples), computed once
cache.py         the content-keyed on-disk cache under it; result_cache.py: whole task results
records.py       result records with full provenance, and their table rows
options.py       `--set task.field=value` strings -> the config dataclass's field types
profiles.py      named suite profiles (`--profile quick`)

Tasks (tasks/) see models only through EvalContext and the model seam (diffae_bench.models.base),
never through a model class.
"""
