"""Replace one data set's reference models and their leaderboard records together (issue 21).

It refuses, changing nothing, unless the replacement rule (--rule, default the current one: written
before the evaluation, on a results/legs page, and as code in diffae_bench/reporting/replacement.py)
is met by the new records against results/records/<data>, and unless every new model has a record
of every built-in task, every one of those records carries the new model's fingerprint
(tests/test_references.py checks the same afterwards), and the three are at one image budget
(training.legs.unequal_budget). Then:
  1. the data set's current records, results/records/<data>/, move to --archive (the legs pages quote
     them as the replaced references' numbers);
  2. the new records (files named *__<model>__*, found under --records) go to results/records/<data>/<label>/<model>/;
  3. each export's files replace results/models/<model>/, and its manifest entry replaces the old one.
Then regenerate the leaderboard, findings, criteria and the CI subset (printed at the end).

    python scripts/replace_references.py --data mnist --label equal_budget_2026-11-27 \
        --exports /work/legs/export-all --records /work/legs/eq/rec-2 --records ... \
        --archive results/legs/2026-11-27_cpu_equal-budget-mnist/records/replaced-references
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench.training.export import update_manifest  # noqa: E402
from diffae_bench.training.legs import unequal_budget  # noqa: E402
from diffae_bench.models import load_model  # noqa: E402
from diffae_bench.references import MODELS_DIR, REFERENCES  # noqa: E402
from diffae_bench.harness.task import BUILTIN_TASKS  # noqa: E402
from diffae_bench.reporting.replacement import CURRENT_RULE, RULES, judge  # noqa: E402
from diffae_bench.errors import BenchError  # noqa: E402
from diffae_bench.reporting.tables import load_rows  # noqa: E402


def new_records(name: str, folders: list[Path]) -> dict[str, list[Path]]:
    """{task: [record json]} of model `name` under the folders, plus its figures under key 'figures'."""
    found: dict[str, list[Path]] = {"figures": []}
    for folder in folders:
        for path in sorted(folder.rglob(f"*__{name}__*")):
            if path.suffix != ".json":
                found["figures"].append(path)
                continue
            record = json.loads(path.read_text())
            found.setdefault(record["task"]["name"], []).append(path)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, choices=sorted({d for _, _, d in REFERENCES}))
    ap.add_argument("--label", required=True, help="folder name of the new records under results/records/<data>/")
    ap.add_argument("--exports", type=Path, required=True, help="folder of <model>/ exports and their manifest.json")
    ap.add_argument("--records", type=Path, action="append", required=True, help="folder(s) holding the new records")
    ap.add_argument("--archive", type=Path, required=True, help="where the replaced records go")
    ap.add_argument("--rule", default=CURRENT_RULE, choices=sorted(RULES),
                    help=f"the replacement rule the new records must meet (default {CURRENT_RULE})")
    a = ap.parse_args()

    board = ROOT / "results" / "records" / a.data
    # The rule first: a replacement is decided by the records and the pre-registered rule, not by reading tables.
    try:
        verdict = judge(a.rule, load_rows([board]), load_rows(a.records), a.data)
    except (BenchError, ValueError) as e:  # no records there, or two records of one measurement
        sys.exit(f"nothing replaced: {e}")
    if not verdict.met:
        print(verdict.markdown(), file=sys.stderr)
        sys.exit(f"nothing replaced: rule {a.rule} is not met on {a.data} "
                 f"({', '.join(sorted({o.clause for o in verdict.failing()}))}; the table above)")
    print(f"rule {a.rule} is met on {a.data}:\n{verdict.markdown()}")

    names = [name for name, _, data in REFERENCES if data == a.data]
    manifest = json.loads((a.exports / "manifest.json").read_text())["models"]
    problems, plan = [], {}
    for name in names:
        fingerprint = load_model(a.exports / name, "cpu").checkpoint_sha256
        found = new_records(name, a.records)
        for task in BUILTIN_TASKS:
            if len(found.get(task, [])) != 1:
                problems.append(f"{name}: {len(found.get(task, []))} records of {task} (need exactly 1)")
        for task, paths in found.items():
            for path in paths if task != "figures" else []:
                if json.loads(path.read_text())["model"].get("checkpoint_sha256") != fingerprint:
                    problems.append(f"{path}: not a record of {a.exports / name} (fingerprint differs)")
        if name not in manifest:
            problems.append(f"{a.exports / 'manifest.json'} has no entry for {name}")
        elif any(not (a.exports / name / f).is_file() for f in manifest[name]["files"]):
            problems.append(f"{a.exports / name}: a file its manifest entry lists is missing")
        plan[name] = found
    budget = unequal_budget({name: manifest[name] for name in names if name in manifest})
    if budget:
        problems.append(budget)
    if a.archive.exists():
        problems.append(f"--archive {a.archive} exists already")
    if problems:
        sys.exit("nothing replaced:\n  " + "\n  ".join(problems))

    a.archive.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(board), str(a.archive))
    for name, found in plan.items():
        into = board / a.label / name
        into.mkdir(parents=True)
        for path in [p for paths in found.values() for p in paths]:
            shutil.copy2(path, into / path.name)
        shutil.rmtree(MODELS_DIR / name)
        (MODELS_DIR / name).mkdir()
        for path in sorted((a.exports / name).iterdir()):  # the manifest's files plus config.json, train_log.jsonl
            shutil.copy2(path, MODELS_DIR / name / path.name)
        update_manifest(MODELS_DIR / "manifest.json", manifest[name])
        print(f"{name}: model and {sum(len(v) for k, v in found.items() if k != 'figures')} records replaced")
    print("now: bench leaderboard results/records --output results/leaderboard.csv --markdown results/leaderboard.md;"
          " bench findings results/leaderboard.csv --readme README.md; bench criteria results/leaderboard.csv"
          " --output results/criteria.md; python -m diffae_bench.references regenerate (both kernel families)")


if __name__ == "__main__":
    main()
