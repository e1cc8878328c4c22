"""The generated estimator matrix (parity.validators.matrix), one test per estimator × format.

Each cell passes, is unsupported, or is an expected failure kept as data in ``matrix.EXPECTED``: a confirmed
converter or runtime defect (strict xfail: it must keep failing until upstream changes) or a false alarm of
Parity's (non-strict xfail, reason "false alarm: ..."; once the validator is fixed it passes, or is
unsupported where the fix was to recognise a refusal: flip the entry).
An xfail only absorbs :class:`Rejected`, so a cell whose independent classification changes fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from parity.validators import matrix
from parity.validators.formats import FORMATS
from parity.validators.matrix import Kind


class Rejected(AssertionError):
    """Parity did not pass a cell that the matrix expects to fail (the only failure an xfail absorbs)."""


def _marks(fmt: str, name: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.slow] if FORMATS[fmt].starts_jvm else []
    expected = matrix.expected(fmt, name)
    if expected.kind in (Kind.DEFECT, Kind.FALSE_ALARM):
        strict = expected.kind is Kind.DEFECT
        marks.append(pytest.mark.xfail(reason=expected.reason, strict=strict, raises=Rejected))
    return marks


CELLS = [
    pytest.param(fmt, name, id=f"{fmt}-{name}", marks=_marks(fmt, name))
    for name in matrix.ENTRIES
    for fmt in FORMATS
]


@pytest.fixture(scope="module")
def fitted() -> Callable[[str], matrix.Fitted]:
    """``fitted(name)``: the entry fitted and registered in memory, once per module."""
    cache: dict[str, matrix.Fitted] = {}

    def get(name: str) -> matrix.Fitted:
        if name not in cache:
            cache[name] = matrix.fit(matrix.ENTRIES[name])
        return cache[name]

    return get


@pytest.mark.parametrize(("fmt", "name"), CELLS)
def test_cell(fmt: str, name: str, fitted, tmp_path):
    expected = matrix.expected(fmt, name)

    cell = matrix.run_cell(fitted(name), fmt, tmp_path)

    assert cell.kind is not Kind.CRASH, cell.reason
    if expected.kind is Kind.UNSUPPORTED:
        assert cell.outcome == "unsupported", f"{cell.kind}: {cell.reason}"
        return
    if cell.outcome == "passed":
        return
    if expected.kind is Kind.FALSE_ALARM and cell.kind is Kind.UNSUPPORTED:
        return  # fixed as a refusal: flip the entry to unsupported
    # what the independent check says must be what the table says; only then is the rejection expected
    assert cell.kind is expected.kind, f"{cell.kind} ({cell.reason}); independent check: {cell.evidence}"
    raise Rejected(f"{cell.kind}: {cell.reason}; independent check: {cell.evidence}")


def test_every_supported_estimator_is_run_or_says_why_not():
    assert len(matrix.supported_intersection()) > 100
    assert matrix.uncovered() == []
    assert not set(matrix.NOT_RUN) & {c for e in matrix.ENTRIES.values() for c in e.classes()}


def test_every_expectation_names_a_cell_and_a_reason():
    for (fmt, name), expected in matrix.EXPECTED.items():
        assert fmt in FORMATS and name in matrix.ENTRIES, (fmt, name)
        assert expected.kind is not Kind.PASS and expected.reason
        if expected.kind is Kind.FALSE_ALARM:
            assert expected.reason.startswith("false alarm: ")


def test_an_unknown_entry_is_refused_with_close_names():
    with pytest.raises(KeyError, match=r"no matrix entry 'Forest'; did you mean RandomForestClassifier"):
        matrix.entry_of("Forest")


def test_the_published_table_counts_every_cell():
    cells = [
        matrix.Cell("A", "onnx", "passed", Kind.PASS, {"predict": 0.0}),
        matrix.Cell("A", "pmml", "failed", Kind.FALSE_ALARM, {"predict_proba": 1e-16}, "jpmml|x", "right"),
    ]

    text = matrix.markdown(cells, seconds=3.0)

    assert "| 1 | 0 | 0 | 1 | 0 |" in text
    assert "| A | pmml | failed | false alarm | predict_proba 1e-16 |  | jpmml\\|x | right |" in text
    assert all(f"| {name} |" in text for name in matrix.NOT_RUN)
