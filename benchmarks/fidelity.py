"""How small a wrong artifact Parity catches, per format, and the mutation suite's counts by class.

1. The smallest relative change of one logistic-regression coefficient (StandardScaler + LogisticRegression on
   breast cancer; the coefficient largest in magnitude) that Parity rejects, bisected on a log scale over
   1e-9..1e-2: each step writes the mutant, validates it on this process (every runtime of the format) and
   asks ``decide_outcome``. Twice per format: caught by any cell, and caught by a cell that compares outputs
   with scikit-learn (JPMML's replay of the PMML's embedded rows, at 1e-13 whatever the band, catches changes
   no output comparison sees). Issue 8's goal: ONNX catches 1e-5 (in early December 2026, 5e-4 passed).
2. Every mutant of ``tests/fidelity`` (the same families and mutators as the test suite): caught / not
   observable / missed, by format and mutation class, and each missed mutant with its cells.

Run: ``.venv/bin/python benchmarks/fidelity.py [--formats onnx pmml] [--steps 14] [--lowest -9] [--out F.json]``
(about 15 s for ONNX, 1-3 min with PMML, whose runtimes start JVMs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the suite lives in tests/fidelity

from tests.fidelity.mutators import MUTATORS, NothingToMutate  # noqa: E402
from tests.fidelity.suite import FORMATS, MUTANTS, MutantResult, Suite, counts_table  # noqa: E402

FAMILY = "LogisticRegression"
#: The bisection's range of relative changes, as powers of ten.
LOWEST, HIGHEST = -9.0, -2.0
#: Changes reported explicitly, whatever the bisection finds: issue 8's goal and what passed before it.
MILESTONES = (1e-5, 5e-4)


def caught_at(suite: Suite, fmt: str, relative: float, by_comparison: bool) -> bool:
    """Whether Parity rejects the model with its largest coefficient times ``1 + relative``; with
    ``by_comparison``, only when a cell comparing outputs with scikit-learn fails."""
    mutator = MUTATORS[fmt]["coefficient"]
    try:
        mutant = suite.mutated(
            fmt, FAMILY, f"coefficient-{relative:.6e}", lambda s, t: mutator(s, t, relative)
        )
    except NothingToMutate:  # the change is lost in the artifact's own precision
        return False
    outcome, checks = suite.validate(fmt, FAMILY, mutant)
    result = MutantResult(fmt, FAMILY, "coefficient", "bisection", outcome, checks)
    return result.caught and (bool(result.compared) or not by_comparison)


def smallest_caught(suite: Suite, fmt: str, steps: int, lowest: float, by_comparison: bool) -> dict:
    """The smallest relative coefficient change caught, bisected over [10**lowest, 10**HIGHEST]."""
    low, high = lowest, HIGHEST
    if not caught_at(suite, fmt, 10**high, by_comparison):
        return {"smallest_caught": None, "note": f"not even {10**high:g}"}
    if caught_at(suite, fmt, 10**low, by_comparison):
        return {"smallest_caught": 10**low, "note": f"≤ {10**low:g} (the lower end)"}
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (low, middle) if caught_at(suite, fmt, 10**middle, by_comparison) else (middle, high)
    return {"smallest_caught": 10**high, "largest_missed": 10**low}


def coefficient_table(suite: Suite, formats: list[str], steps: int, lowest: float) -> dict:
    """Print and return the smallest coefficient change caught, per format and kind of cell."""
    print(f"## Smallest relative change of one {FAMILY} coefficient that Parity catches\n")
    print(
        "| format | caught by | smallest caught | largest missed | "
        + " | ".join(f"{m:g}" for m in MILESTONES)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(MILESTONES))
    figures = {}
    for fmt in formats:
        for by_comparison in (False, True):
            found = smallest_caught(suite, fmt, steps, lowest, by_comparison)
            found.update({f"{m:g}": caught_at(suite, fmt, m, by_comparison) for m in MILESTONES})
            how = "an output comparison" if by_comparison else "any cell"
            figures[f"{fmt}, {how}"] = found
            smallest, largest = found["smallest_caught"], found.get("largest_missed")
            cells = [f"{smallest:.4g}" if largest else found["note"], f"{largest:.4g}" if largest else "—"]
            cells += ["caught" if found[f"{m:g}"] else "**passes**" for m in MILESTONES]
            print(f"| {fmt} | {how} | " + " | ".join(cells) + " |")
    return figures


def mutants_table(suite: Suite, formats: list[str]) -> list[dict]:
    """Print and return every mutant's status, with the cells of each missed one."""
    results = [suite.result(*mutant) for mutant in MUTANTS if mutant[0] in formats]
    print("\n## Mutants by class\n")
    print(counts_table(results))
    missed = [r for r in results if r.status == "missed"]
    print(f"\n{len(missed)} missed" + (":" if missed else "."))
    for result in missed:
        print(f"- {result.id} ({result.observable})")
        for check in result.checks:
            print(f"  - {check.cell}: {check.verdict}: {check.explanation}")
    return [
        {"id": r.id, "status": r.status, "observable": r.observable, "outcome": str(r.outcome)}
        for r in results
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument(
        "--steps", type=int, default=14, help="bisection steps (14: within 0.1%% of the bound)"
    )
    parser.add_argument(
        "--lowest", type=float, default=LOWEST, help="lower end of the bisection, a power of ten"
    )
    parser.add_argument("--out", type=Path, help="write every figure as JSON")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="parity-fidelity-") as scratch:
        suite = Suite(Path(scratch))
        figures = {
            "coefficient": coefficient_table(suite, args.formats, args.steps, args.lowest),
            "mutants": mutants_table(suite, args.formats),
        }
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
