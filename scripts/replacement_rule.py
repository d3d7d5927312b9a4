"""The replacement rule's verdict on new reference models (issue 21): may they replace a data set's references?

    python scripts/replacement_rule.py --data shapes NEW_RECORDS_FOLDER [...]
        [--rule v3] [--committed results/records/shapes]
    python scripts/replacement_rule.py --data shapes --tasks-needed    # the tasks the verdict reads
    python scripts/replacement_rule.py --rewrite PAGE.md    # every <!-- rule-verdict: DATA | RULE | FOLDER, ... -->

Reads the records under the folders (every new model's, one of each kind), judges them against the
committed references' records with the rule (diffae_bench/reporting/replacement.py: the rules of
results/legs/2026-11-27_h200_two-legs/README.md, as code) and prints one Markdown row per check.
Exit 0: met; 1: not met (a check fails or cannot be compared); 2: bad input.
scripts/replace_references.py runs the same judgement and replaces nothing unless it is met.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench.errors import BenchError  # noqa: E402
from diffae_bench.reporting import page_blocks  # noqa: E402
from diffae_bench.reporting.replacement import CURRENT_RULE, RULES, judge, tasks_needed  # noqa: E402
from diffae_bench.reporting.tables import load_rows  # noqa: E402


def verdict_for(data: str, new: list[Path], rule: str = CURRENT_RULE, committed: Path | None = None):
    """The Verdict, or SystemExit(2) with a one-line reason when the folders cannot be judged."""
    committed = committed or ROOT / "results" / "records" / data
    try:
        for folder in [committed, *new]:
            if not folder.is_dir():
                raise ValueError(f"{folder} is not a folder of records")
        return judge(rule, load_rows([committed]), load_rows(new), data)
    except (ValueError, BenchError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def render(args: str) -> str:
    """A page's rule-verdict block from its comment: DATA | RULE | new records folders (comma-separated, from the root)."""
    data, rule, folders = page_blocks.arguments(args)
    verdict = verdict_for(data, [ROOT / f.strip() for f in folders.split(",")], rule)
    return verdict.markdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("new", nargs="*", type=Path, help="folder(s) holding the new models' records")
    ap.add_argument("--data", default=None, help="the data set whose references they would replace")
    ap.add_argument("--rule", default=CURRENT_RULE, choices=sorted(RULES), help=f"default: {CURRENT_RULE}")
    ap.add_argument("--committed", type=Path, default=None, help="the references' records (default results/records/<data>)")
    ap.add_argument("--tasks-needed", action="store_true",
                    help="print the tasks the verdict reads (comma-separated: evaluate them first) and exit")
    ap.add_argument("--rewrite", type=Path, default=None, help="regenerate a page's rule-verdict blocks and exit")
    a = ap.parse_args()
    if a.rewrite:
        print(f"{a.rewrite}: {page_blocks.rewrite(a.rewrite, 'rule-verdict', render)} verdict(s) regenerated")
        return 0
    if a.data is None:
        print("error: give --data (the data set whose references they would replace)", file=sys.stderr)
        return 2
    if a.tasks_needed:
        committed = a.committed or ROOT / "results" / "records" / a.data
        print(",".join(tasks_needed(a.rule, load_rows([committed]), a.data)))
        return 0
    if not a.new:
        print("error: give the folder(s) of the new models' records (or --tasks-needed)", file=sys.stderr)
        return 2
    verdict = verdict_for(a.data, a.new, a.rule, a.committed)
    print(f"rule {a.rule}: {RULES[a.rule].written}\n")
    print(verdict.markdown())
    return 0 if verdict.met else 1


if __name__ == "__main__":
    sys.exit(main())
