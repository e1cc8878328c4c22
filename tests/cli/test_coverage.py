"""``parity coverage``: runs the estimator matrix, writes the table, exits as README's codes say."""

from __future__ import annotations

import pytest

from parity.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from parity.validators import matrix
from parity.validators.matrix import Kind


def test_an_unknown_entry_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "coverage.md"

    assert main(["coverage", "--only", "RandomForest", "--out", str(out)]) == EXIT_USAGE

    err = capsys.readouterr().err
    assert "Invalid value for --only: no matrix entry 'RandomForest'; did you mean" in err
    assert "RandomForestClassifier" in err and "Traceback" not in err
    assert not out.exists()


def test_an_unknown_option_is_a_usage_error(capsys):
    assert main(["coverage", "--format", "onnx"]) == EXIT_USAGE
    assert "No such option: --format" in capsys.readouterr().err


@pytest.mark.slow
def test_a_passing_entry_writes_its_rows_and_exits_0(tmp_path, capsys):
    out = tmp_path / "docs" / "coverage.md"

    assert main(["coverage", "--only", "LogisticRegression", "--out", str(out)]) == EXIT_OK

    text = out.read_text()
    assert "| LogisticRegression | pmml | passed | pass |" in text
    assert "| LogisticRegression | onnx | passed | pass |" in text
    assert "2 pass, 0 unsupported" in capsys.readouterr().out


@pytest.mark.slow
def test_a_false_alarm_exits_1(tmp_path):
    alarms = [name for (_, name), e in matrix.EXPECTED.items() if e.kind is Kind.FALSE_ALARM]
    if not alarms:
        pytest.skip("no false alarm left in matrix.EXPECTED")
    out = tmp_path / "coverage.md"

    code = main(["coverage", "--only", alarms[0], "--out", str(out)])

    assert code == EXIT_FAILED
    assert "| false alarm |" in out.read_text()
