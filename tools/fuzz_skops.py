"""Fuzz Parity's model loading with mutated skops files, in this very process.

    python tools/fuzz_skops.py [--mutants N] [--seed S] [--json FILE]

Seeds are small real models (trees, forests, boosting, histogram boosting, neighbour trees, a pipeline, an
MLP) and one hostile file whose payload writes a canary file if anything ever runs it. Each mutant changes
one thing: an element of a stored array (node indices, features, sample indices...), an integer of the
schema (node counts, sizes), a node's type (to eval, exec, os.system, ... also listed as trusted for half of
them), its loader, or raw bytes of the file (flipped or cut). Every mutant goes through
``parity.registry.loading.load_payload`` exactly as a registration does (bytes read once, a child process
first, reference rows predicted) and then, when it loads, through the reference predictions in this
process.

What must hold, and is printed: this process never crashes (it would not get to print), the canary is never
written, and every refusal is a Parity error with a message naming the file. Exit 0 when all held.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import random
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio

from parity.core.errors import ParityError
from parity.registry.loading import load_payload
from parity.registry.predictions import reference_predictions

HOSTILE_TYPES = [
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("posix", "system"),
    ("os", "system"),
    ("subprocess", "Popen"),
    ("numpy", "load"),
    ("operator", "methodcaller"),
    ("builtins", "__import__"),
    ("functools", "partial"),
]
LOADERS = ["ObjectNode", "ReduceNode", "TreeNode", "FunctionNode", "NdArrayNode", "DictNode", "JsonNode"]


def interesting(rng: random.Random, size: int) -> int:
    """Values at and around the edges a bounds check must get right."""
    return rng.choice(
        [-(2**31), -2, -1, 0, 1, size - 1, size, size + 1, 2**31 - 1, 2**63 - 1, rng.randrange(1 << 20)]
    )


def seeds(canary: Path) -> Iterator[tuple[str, object, pd.DataFrame]]:
    """(name, fitted model, reference rows) of every seed."""
    from sklearn.datasets import load_breast_cancer, load_iris
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    iris_X, iris_y = load_iris(return_X_y=True, as_frame=True)
    cancer_X, cancer_y = load_breast_cancer(return_X_y=True, as_frame=True)
    rows = iris_X.iloc[::5].reset_index(drop=True)
    yield "tree", DecisionTreeClassifier(max_depth=4, random_state=0).fit(iris_X, iris_y), rows
    yield (
        "forest",
        RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(iris_X, iris_y),
        rows,
    )
    yield (
        "gbr",
        GradientBoostingRegressor(n_estimators=3, max_depth=2).fit(iris_X, iris_y.astype(float)),
        rows,
    )
    yield "hgb", HistGradientBoostingClassifier(max_iter=3, max_depth=3).fit(iris_X, iris_y), rows
    yield "kd-tree", KNeighborsClassifier(algorithm="kd_tree", leaf_size=5).fit(iris_X, iris_y), rows
    yield "ball-tree", KNeighborsClassifier(algorithm="ball_tree", leaf_size=5).fit(iris_X, iris_y), rows
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(cancer_X, cancer_y)
    yield "pipeline", pipeline, cancer_X.iloc[::20].reset_index(drop=True)
    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=30, random_state=0)
    mlp.fit(iris_X, iris_y)
    yield "mlp", mlp, rows
    source = f"__import__('pathlib').Path({str(canary)!r}).write_text('the payload ran')"
    hostile = FunctionTransformer(func=functools.partial(exec, source, {}))  # exec(source, {}, X) runs it
    yield "canary", hostile.fit(iris_X), rows


def _schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _schema_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_nodes(value)


def _rezip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return out.getvalue()


def mutate(payload: bytes, rng: random.Random) -> tuple[str, bytes, list[str]]:
    """One mutant of a skops file: (what was changed, the bytes, extra types to list as trusted)."""
    with zipfile.ZipFile(io.BytesIO(payload)) as zipped:
        members = {name: zipped.read(name) for name in zipped.namelist()}
    schema = json.loads(members["schema.json"])
    arrays = [name for name in members if name.endswith(".npy")]
    kind = rng.choice(["array", "array", "array", "integer", "type", "loader", "flip", "cut"])
    trusted: list[str] = []
    if kind == "array" and arrays:
        name = rng.choice(arrays)
        try:
            array = np.load(io.BytesIO(members[name]), allow_pickle=False)
        except ValueError:
            kind = "flip"
        else:
            if array.size == 0:
                return "array (empty: unchanged)", payload, trusted
            flat = array.reshape(-1)
            fields = list(array.dtype.names or [None])
            field = rng.choice(fields)
            column = flat[field] if field else flat
            index = rng.randrange(len(column))
            if np.issubdtype(column.dtype, np.integer):
                value: float = interesting(rng, len(column))
                info = np.iinfo(column.dtype)
                column[index] = np.clip(value, info.min, info.max)
            elif np.issubdtype(column.dtype, np.floating):
                column[index] = rng.choice([np.nan, np.inf, -np.inf, 1e308, -1.0, 0.0])
            elif column.dtype == np.bool_:
                column[index] = not column[index]
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            members[name] = buffer.getvalue()
            return f"array {name}[{field or ''}][{index}]", _rezip(members), trusted
    if kind == "integer":
        numbers = [
            n
            for n in _schema_nodes(schema)
            if n.get("__loader__") == "JsonNode" and str(n.get("content")).lstrip("-").isdigit()
        ]
        if numbers:
            node = rng.choice(numbers)
            node["content"] = str(interesting(rng, int(node["content"]) + 1))
            members["schema.json"] = json.dumps(schema).encode()
            return f"integer -> {node['content']}", _rezip(members), trusted
        kind = "type"
    if kind in ("type", "loader"):
        nodes = [n for n in _schema_nodes(schema) if "__class__" in n and "__module__" in n]
        node = rng.choice(nodes)
        if kind == "type":
            module, name = rng.choice(HOSTILE_TYPES)
            node["__module__"], node["__class__"] = module, name
            if rng.random() < 0.5:
                trusted = [f"{module}.{name}"]
            what = f"type -> {module}.{name}{' (listed as trusted)' if trusted else ''}"
        else:
            node["__loader__"] = rng.choice(LOADERS)
            what = f"loader -> {node['__loader__']}"
        members["schema.json"] = json.dumps(schema).encode()
        return what, _rezip(members), trusted
    data = bytearray(payload)
    if kind == "cut":
        cut = rng.randrange(len(data))
        return f"cut at {cut}", bytes(data[:cut]), trusted
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return "flip", bytes(data), trusted


#: How a refusal is told apart in the summary: the first phrase of the message found in it.
REASONS = {
    "crashed the loader": "the child loader crashed (a signal): refused",
    "malformed or crafted": "a structural check refused it",
    "can never be trusted": "a never-trusted type",
    "not on the allowlist": "an untrusted type",
    "not a readable skops file": "not a readable skops file",
    "could not be loaded": "skops could not build it",
    "needed more than": "over the loader's memory limit",
    "did not finish": "over the loader's deadline",
}


def reason(message: str) -> str:
    return next((why for phrase, why in REASONS.items() if phrase in message), "other refusal")


def try_mutant(payload: bytes, where: str, trusted: list[str], rows: pd.DataFrame) -> tuple[str, str]:
    """(outcome, detail): loaded / refused / unclear (an error that is not Parity's, or has no message)."""
    try:
        loaded = load_payload(payload, "skops", where, trusted_types=trusted, rows=rows)
    except ParityError as err:
        message = str(err)
        return (
            ("refused", message) if where in message else ("unclear", f"message without the file: {message}")
        )
    except Exception as err:  # the property under test: this must never happen
        return "unclear", f"{type(err).__name__}: {err}"
    try:
        reference_predictions(loaded.estimator, rows)
    except ParityError as err:
        return "loaded, predictions refused", str(err)
    except Exception as err:
        return "unclear", f"predicting: {type(err).__name__}: {err}"
    return "loaded", ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=400, help="mutants to try in all (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")  # mutated weights overflow: numpy's warnings are noise here
    np.seterr(all="ignore")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="parity-fuzz-") as scratch:
        canary = Path(scratch) / "CANARY"
        corpus = [(name, sio.dumps(model), rows) for name, model, rows in seeds(canary)]
        outcomes: Counter[str] = Counter()
        by_seed: dict[str, Counter[str]] = {name: Counter() for name, _, _ in corpus}
        unclear: list[str] = []
        reasons: Counter[str] = Counter()
        started = time.monotonic()
        # the unmutated canary file itself, trusted and not: never run
        for trusted in ([], ["builtins.exec", "functools.partial"]):
            outcome, detail = try_mutant(corpus[-1][1], "canary.skops", trusted, corpus[-1][2])
            print(f"canary file, trusted {trusted or 'nothing'}: {outcome}: {detail[:160]}")
            outcomes[f"canary {outcome}"] += 1
        for number in range(args.mutants):
            name, payload, rows = corpus[number % len(corpus)]
            what, mutant, trusted = mutate(payload, rng)
            where = f"mutant-{number}-{name}.skops"
            outcome, detail = try_mutant(mutant, where, trusted, rows)
            outcomes[outcome] += 1
            by_seed[name][outcome] += 1
            if outcome == "refused":
                reasons[reason(detail)] += 1
            if outcome == "unclear":
                unclear.append(f"{where} ({what}): {detail}")
        elapsed = time.monotonic() - started
        ran = canary.exists()
    summary = {
        "mutants": args.mutants,
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        "outcomes": dict(outcomes),
        "refusals": dict(reasons),
        "by_seed": {name: dict(counts) for name, counts in by_seed.items()},
        "canary_written": ran,
        "unclear": unclear,
    }
    print(f"{args.mutants} mutants of {len(corpus)} seed files in {elapsed:.0f} s (seed {args.seed})")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count}")
    for why, count in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"    refused, {why}: {count}")
    for line in unclear:
        print(f"  UNCLEAR {line}")
    held = not ran and not unclear and outcomes.get("canary loaded", 0) == 0
    print(
        "held: this process never crashed"
        + (", the canary was never written, every refusal named its file" if held else "")
    )
    if ran:
        print("FAILED: the canary was written: a payload ran")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
