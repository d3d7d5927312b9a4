"""`bench perf`: the project's own speed measurement.

throughput.py    training and sampling throughput, eager fp32 against the fast paths
accuracy.py      `bench perf --accuracy`: the metric deltas that decide each path's numeric mode
"""
