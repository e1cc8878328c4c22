"""The MLflow Model Registry as a Parity registry, against a real ``mlflow server`` (SQLite, local artifacts):
models logged and registered through the MLflow client as training code does, read back safely."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from parity.core.errors import IntegrityError, InvalidInputError, RegistryError, UntrustedModelError
from parity.registry import ModelRef, Result, open_registry
from parity.registry import mlflow as parity_mlflow
from parity.registry.mlflow import TAG_SHA256, VALIDATED_ALIAS, MlflowRegistry
from tests.deployments.prefect_processes import free_port
from tests.mlflow_server import MlflowServer, log_sklearn_model, mlflow_server, training_side

pytestmark = pytest.mark.slow

CANARY_ENV = "PARITY_TEST_CANARY"


class Canary(LogisticRegression):
    """A classifier whose unpickling writes a file (``$PARITY_TEST_CANARY``): proof that a pickle ran, or not."""

    def __reduce__(self):
        plain = LogisticRegression()
        plain.__dict__.update(self.__dict__)
        return (_write_canary, (plain,))


def _write_canary(model: LogisticRegression) -> LogisticRegression:
    Path(os.environ.get(CANARY_ENV, "/nonexistent/canary")).write_text("the pickle ran")
    return model


def _logreg(X: pd.DataFrame, y: pd.Series, kind: type = LogisticRegression):
    return make_pipeline(StandardScaler(), kind(max_iter=500)).fit(X, y)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> MlflowServer:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture
def registry(server: MlflowServer, tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry(server.registry, cache=tmp_path / "mirror")


@pytest.fixture(scope="module")
def logreg(server: MlflowServer, cancer) -> tuple[str, int, object]:
    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    run_id, version = log_sklearn_model(
        server,
        "bc-logreg",
        model,
        X,
        reference=X.iloc[:60],
        metrics={"cv_roc_auc": [0.99, 0.98, 0.995], "train_loss": 0.1},
        tags={"mlflow.source.git.commit": "0123abcd"},
    )
    return run_id, version, model


def test_uri_forms(monkeypatch) -> None:
    assert open_registry("mlflow+http://127.0.0.1:5000/").location == "mlflow+http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org")
    assert open_registry("mlflow:").location == "mlflow+https://mlflow.example.org"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(InvalidInputError, match="MLFLOW_TRACKING_URI, which is not set"):
        open_registry("mlflow:")
    with pytest.raises(InvalidInputError, match="does not read s3:// registries"):
        open_registry("s3://bucket/models")


def test_reads_a_logged_version_with_its_provenance(registry, logreg, cancer) -> None:
    run_id, version, model = logreg
    X, _ = cancer
    ref = ModelRef("bc-logreg", version)
    assert ref in registry.refs()
    opened = registry.open(ref)
    pd.testing.assert_frame_equal(opened.reference, X.iloc[:60].reset_index(drop=True))
    np.testing.assert_array_equal(opened.predictions["predict"], model.predict(X.iloc[:60]))
    np.testing.assert_array_equal(opened.predictions["predict_proba"], model.predict_proba(opened.reference))
    record = opened.record
    origin = record.provenance.origin
    assert origin is not None and origin.run_id == run_id and origin.serialization_format == "skops"
    assert origin.source["source.git.commit"] == "0123abcd"
    assert origin.trained_scikit_learn == "1.9.0" and "scikit-learn==1.9.0" in origin.requirements
    assert "matches the run's" in origin.predictions_from
    assert origin.reference_from.startswith("run artifact parity/reference.parquet")
    (dataset,) = origin.datasets
    assert dataset.context == "training" and len(dataset.digest) >= 8
    assert record.provenance.training_data.uri == "s3://data/training.parquet"
    assert record.provenance.cv_scores == {"cv_roc_auc": [0.99, 0.98, 0.995]}
    kept = {Path(f.file).name for f in record.provenance.source.files}
    assert {"MLmodel", "requirements.txt", "python_env.yaml"} <= kept
    # first sight recorded the model's SHA-256 on the version, and it is the registered file's
    assert registry.version_tags(ref)[TAG_SHA256] == record.model.sha256


def test_input_example_is_a_warned_fallback(server, registry, cancer) -> None:
    X, y = cancer
    model = _logreg(X, y)
    _, version = log_sklearn_model(server, "bc-example", model, X, input_example=X.iloc[:5])
    opened = registry.open(ModelRef("bc-example", version))
    assert len(opened.reference) == 5
    assert any("only the model's input_example (5 row(s))" in note for note in opened.notes)


def test_no_reference_rows_is_refused(server, registry, cancer) -> None:
    X, y = cancer
    _, version = log_sklearn_model(server, "bc-bare", _logreg(X, y), X)
    with pytest.raises(InvalidInputError, match=r"no reference rows.*parity/reference.parquet"):
        registry.open(ModelRef("bc-bare", version))


def test_a_non_sklearn_flavor_is_refused(server, registry) -> None:
    import mlflow
    import mlflow.pyfunc

    with training_side(server), mlflow.start_run():

        class Echo(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input

        mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name="echo")
    with pytest.raises(
        RegistryError, match=r"not a scikit-learn model: its MLmodel has the flavor.*python_function"
    ):
        registry.open(registry.resolve("echo"))


def test_missing_artifacts_are_named(server, registry, cancer) -> None:
    X, y = cancer
    _, version = log_sklearn_model(server, "bc-gone", _logreg(X, y), X, reference=X.iloc[:20])
    model_id = server.client().get_model_version("bc-gone", str(version)).source.rsplit("/", 1)[-1]
    (stored,) = (p.parent for p in (server.root / "artifacts").rglob("MLmodel") if model_id in str(p))
    shutil.rmtree(stored)
    with pytest.raises(RegistryError, match=r"bc-gone:.*(could not be downloaded|holds no MLmodel)"):
        registry.open(ModelRef("bc-gone", version))


@pytest.fixture(scope="module")
def pickled(server, cancer) -> int:
    X, y = cancer
    model = _logreg(X, y, Canary)
    _, version = log_sklearn_model(
        server, "bc-pickle", model, X, reference=X.iloc[:20], serialization_format="cloudpickle"
    )
    return version


def test_an_untrusted_pickle_is_never_loaded(registry, pickled, tmp_path, monkeypatch) -> None:
    canary = tmp_path / "canary"
    monkeypatch.setenv(CANARY_ENV, str(canary))
    monkeypatch.delenv(parity_mlflow.TRUST_PICKLE_ENV, raising=False)
    with pytest.raises(
        UntrustedModelError, match=r"cloudpickle.*not marked as trusted.*PARITY_MLFLOW_TRUST_PICKLE"
    ):
        registry.open(ModelRef("bc-pickle", pickled))
    assert not canary.exists()


def test_a_trusted_pickle_is_loaded_only_while_its_hash_matches(
    server, registry, pickled, tmp_path, monkeypatch
):
    canary = tmp_path / "canary"
    monkeypatch.setenv(CANARY_ENV, str(canary))
    ref = ModelRef("bc-pickle", pickled)
    client = server.client()
    client.set_model_version_tag(ref.name, str(ref.version), TAG_SHA256, "0" * 64)  # "first seen" elsewhere
    monkeypatch.setenv(parity_mlflow.TRUST_PICKLE_ENV, server.url)
    with pytest.raises(IntegrityError, match="changed since; it was not loaded"):
        registry.open(ref)
    assert not canary.exists()
    client.delete_model_version_tag(ref.name, str(ref.version), TAG_SHA256)
    registry.open(ref)  # trusted, first sight: loaded (the canary's payload runs: that is what trust means)
    assert canary.exists()
    assert len(registry.version_tags(ref)[TAG_SHA256]) == 64


def test_a_server_that_is_down_is_named_with_the_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(parity_mlflow, "PAUSES_S", (0.01,))
    down = f"mlflow+http://127.0.0.1:{free_port()}"
    with pytest.raises(
        RegistryError, match=r"127\.0\.0\.1.*did not answer after 4 tries.*running and reachable"
    ):
        MlflowRegistry(down, cache=tmp_path).refs()


def test_results_are_written_back_and_the_alias_only_moves_forward(server, registry, logreg, cancer) -> None:
    _, version, model = logreg
    X, _ = cancer
    _, newer = log_sklearn_model(server, "bc-logreg", model, X, reference=X.iloc[:10])
    client = server.client()
    written = registry.record_result(
        ModelRef("bc-logreg", newer), Result("passed", "/a/b", "/a/b/report.json")
    )
    assert f"alias {VALIDATED_ALIAS} -> {newer}" in written
    registry.record_result(
        ModelRef("bc-logreg", version), Result("passed", "/a/c", "/a/c/report.json")
    )  # older: the alias stays on the newer version
    assert client.get_registered_model("bc-logreg").aliases[VALIDATED_ALIAS] == str(newer)
    failed = Result("failed", "/r/1", "/r/1/report.json", ("onnx/onnxruntime/local/probability: mismatch",))
    registry.record_result(ModelRef("bc-logreg", version), failed)
    tags = client.get_model_version("bc-logreg", str(version)).tags
    assert tags["parity.verdict"] == "failed" and tags["parity.bundle"] == "/r/1"
    assert tags["parity.failing"] == "onnx/onnxruntime/local/probability: mismatch"
    assert tags["parity.report"] == "/r/1/report.json"
    # the newer one fails a re-validation: no version has passed any more, so none carries the alias
    assert f"alias {VALIDATED_ALIAS} removed" in registry.record_result(ModelRef("bc-logreg", newer), failed)
    assert VALIDATED_ALIAS not in client.get_registered_model("bc-logreg").aliases


def test_trusted_types_from_the_mlmodel_are_read(server, registry, cancer) -> None:
    X, y = cancer
    forest = RandomForestClassifier(5, random_state=0).fit(X, y)
    _, version = log_sklearn_model(
        server,
        "bc-forest",
        forest,
        X,
        reference=X.iloc[:30],
        extra={"skops_trusted_types": ["sklearn.tree._tree.Tree"]},
    )
    opened = registry.open(ModelRef("bc-forest", version))
    np.testing.assert_array_equal(opened.predictions["predict_proba"], forest.predict_proba(opened.reference))
    # Tree is trusted by Parity's own allowlist (with its structural check); the MLmodel's list is the model
    # author's word and is not taken from a registry the operator did not mark trusted
    assert opened.record.trusted_types == []


def test_a_model_file_outside_its_folder_is_refused(server, registry, tmp_path) -> None:
    import mlflow

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: ../../../../../../etc/hostname\n    serialization_format: skops\n"
    )
    with training_side(server), mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", "escape")
    with pytest.raises(RegistryError, match="not a file inside the model's folder; refused"):
        registry.open(registry.resolve("escape"))


def test_pickle_trust_is_checked_at_every_open(server, registry, pickled, tmp_path, monkeypatch) -> None:
    canary = tmp_path / "canary"
    monkeypatch.setenv(CANARY_ENV, str(canary))
    ref = ModelRef("bc-pickle", pickled)
    monkeypatch.setenv(parity_mlflow.TRUST_PICKLE_ENV, server.url)
    registry.open(ref)  # imported into the mirror while trusted (the canary's payload ran: trust)
    canary.unlink()
    monkeypatch.delenv(parity_mlflow.TRUST_PICKLE_ENV)
    with pytest.raises(UntrustedModelError, match="not marked as trusted now"):
        registry.open(ref)
    assert not canary.exists()


def test_a_validated_version_whose_sha_tag_was_removed_is_refused(server, registry, cancer) -> None:
    X, y = cancer
    _, version = log_sklearn_model(server, "bc-untagged", _logreg(X, y), X, reference=X.iloc[:20])
    client = server.client()
    client.set_model_version_tag("bc-untagged", str(version), "parity.verdict", "passed")
    with pytest.raises(IntegrityError, match=r"carries a Parity verdict but no parity\.model_sha256 tag"):
        registry.open(ModelRef("bc-untagged", version))


def test_a_version_recreated_under_the_same_number_is_not_served_from_the_mirror(server, registry, cancer):
    X, y = cancer
    _, version = log_sklearn_model(server, "bc-again", _logreg(X, y), X, reference=X.iloc[:20])
    registry.open(ModelRef("bc-again", version))
    server.client().delete_registered_model("bc-again")
    _, again = log_sklearn_model(server, "bc-again", _logreg(X, y), X, reference=X.iloc[:20])
    assert again == version
    with pytest.raises(
        RegistryError, match=r"is not the version Parity imported into .*deleted and registered"
    ):
        registry.open(ModelRef("bc-again", again))
