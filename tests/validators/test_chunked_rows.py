"""A reference set registered and validated in many pieces gives exactly the report it gives in one piece.

The registration reads a parquet file of several row groups, tries and predicts in pieces; validation feeds
the runtimes in pieces and re-checks float32 inputs piece by piece. Real models, real converters, every
in-process runtime; small sizes with small pieces, so every code path that chunks runs on several chunks.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from parity.core.defaults import host_platform
from parity.registry import FileRegistry, RegisteredModel, predictions
from parity.registry.reference import read_reference
from parity.validators import formats
from parity.validators import validate as validate_module
from parity.validators.targets.table import Target
from parity.validators.validate import ModelContext, validate_conversion

HOST_ONLY = {"host": Target("host", host_platform(), "process")}
ROWS = 420
ROW_GROUP = 64
#: Pieces smaller than a row group, and runtime pieces that split ROWS unevenly.
PREDICT_PIECE, RUNTIME_PIECE = 32, 37
#: A band far tighter than float32 drift: the ONNX cells find rows outside it, so the explanations
#: (float32-rounded re-checks, first rows outside, counts) are compared too, not only passing cells.
TIGHT = {"probability": {"atol": 1e-9, "rtol": 0.0}, "decision": {"atol": 1e-9, "rtol": 0.0}}

MODELS = {
    "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "boosting": lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0),
}


def _rows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6))
    X = pd.DataFrame(
        z * [1, 10, 100, 0.1, 3, 50] + [0, 5, -20, 1, 0, 300], columns=[f"x{j}" for j in range(6)]
    )
    return X, (z @ [1.0, -2.0, 0.5, 1.5, -1.0, 0.3] > 0).astype(int)


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory) -> Path:
    """ROWS reference rows in a parquet file of several row groups."""
    path = tmp_path_factory.mktemp("reference") / "reference.parquet"
    X, _ = _rows(ROWS, seed=1)
    pq.write_table(pa.Table.from_pandas(X, preserve_index=False), path, row_group_size=ROW_GROUP)
    assert pq.ParquetFile(path).num_row_groups > 1
    return path


def _register_and_validate(
    estimator: object, reference: Path, root: Path
) -> tuple[RegisteredModel, list[dict]]:
    registry = FileRegistry(root)
    model = registry.open(registry.register(estimator, reference, "chunked", source_files=[]))
    context = ModelContext(model, tolerances=TIGHT)
    checks = []
    for fmt in formats.FORMATS:
        conversion = formats.convert(fmt, model.estimator, model.reference, root / "artifacts" / fmt)
        assert conversion.ok, conversion.message
        found = validate_conversion(context, conversion, targets=HOST_ONLY, roles={})
        checks += [check.model_dump(mode="json") for check in found]
    return model, checks


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_many_pieces_give_the_report_of_one_piece(name, reference_file, tmp_path, monkeypatch):
    X, y = _rows(300, seed=0)
    estimator = MODELS[name]().fit(X, y)
    whole, whole_checks = _register_and_validate(estimator, reference_file, tmp_path / "whole")

    monkeypatch.setattr(predictions, "PREDICT_ROWS", PREDICT_PIECE)
    monkeypatch.setattr(validate_module, "CHUNK_ROWS", RUNTIME_PIECE)
    assert len(predictions.row_chunks(ROWS)) > 1  # the patch reaches every caller of the default
    pieces, pieces_checks = _register_and_validate(estimator, reference_file, tmp_path / "pieces")

    pd.testing.assert_frame_equal(pieces.reference, whole.reference)
    assert pieces.predictions.keys() == whole.predictions.keys()
    for output, values in whole.predictions.items():
        np.testing.assert_array_equal(pieces.predictions[output], values, err_msg=output)
    assert any(
        c["verdict"] != "pass" or c["n_outside"] for c in whole_checks if c["runtime"] == "onnxruntime"
    ), "the tight band should leave ONNX rows outside it, so that explanations are compared too"
    assert pieces_checks == whole_checks


def test_a_parquet_file_read_by_column_is_the_file_pandas_reads(reference_file, tmp_path):
    mixed = pd.DataFrame(
        {
            "n": np.arange(5, dtype=np.int64),
            "x": [0.5, np.nan, 2.0, 3.0, 4.0],
            "s": ["a", None, "c", "d", "e"],
            "b": [True, False, True, True, False],
            "c": pd.Categorical(["u", "v", "u", "w", "v"]),
        }
    )
    path, indexed = tmp_path / "mixed.parquet", tmp_path / "indexed.parquet"
    mixed.to_parquet(path, index=False)
    mixed.set_index(pd.Index([3, 1, 3, 2, 1], name="key")).to_parquet(indexed)  # a stored, repeating index
    for file in (reference_file, path, indexed):
        pd.testing.assert_frame_equal(read_reference(file), pd.read_parquet(file))


def test_pieces_are_aligned_and_cover_every_row_once():
    for n_rows, limit in [(0, 10), (1, 10), (10, 10), (11, 8), (1001, 16), (65_537, None), (70_000, None)]:
        pieces = predictions.row_chunks(n_rows, limit)
        size = 1 << ((limit or predictions.PREDICT_ROWS).bit_length() - 1)
        assert pieces[0].start == 0 and pieces[-1].stop == n_rows
        assert all(a.stop == b.start for a, b in itertools.pairwise(pieces))
        assert all(piece.start % size == 0 for piece in pieces)
        assert all(piece.stop - piece.start == size for piece in pieces[:-1])
        last = pieces[-1].stop - pieces[-1].start
        assert last < size + min(predictions.MIN_LAST_ROWS, size)
        assert len(pieces) == 1 or last >= min(predictions.MIN_LAST_ROWS, size)
