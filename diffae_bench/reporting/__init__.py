"""The reporting layer: records -> tables, leaderboards, findings, criteria, comparisons and the HTML report.

It reads records (JSON) and leaderboard rows and never imports a model class (models/, nets/,
baselines/), so a results folder can be tabulated, compared and reported on without any model's
code; tests/test_packaging.py checks that.
"""
