"""A version whose training run used another scikit-learn than Parity's: its reference predictions are
computed in the run's recorded environment (built from its requirements.txt), and the mismatch is said.

The model is fitted and skops-dumped inside a real scikit-learn 1.8.0 environment, and logged to a real MLflow
server as an MLflow model folder (MLmodel, requirements.txt, python_env.yaml), registered from the run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from parity.registry import ModelRef, environments
from parity.registry.environments import ensure_environment
from parity.registry.mlflow import MlflowRegistry
from tests.mlflow_server import mlflow_server, training_side

pytestmark = pytest.mark.slow

TRAINED_WITH = "1.8.0"
REQUIREMENTS = [
    f"scikit-learn=={TRAINED_WITH}",
    "numpy",
    "scipy",
    "pandas",
    "skops==0.16.0",
    "mlflow==3.17.2",
]
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"

FIT = """
import json, sys
import numpy as np, skops.io as sio, sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

folder = sys.argv[1]
X, y = load_iris(return_X_y=True, as_frame=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
sio.dump(model, folder + "/model/model.skops")
X.iloc[::2].to_csv(folder + "/reference.csv", index=False)
np.save(folder + "/proba.npy", model.predict_proba(X.iloc[::2]))
json.dump({"sklearn": sklearn.__version__}, open(folder + "/fit.json", "w"))
"""


def test_reference_predictions_come_from_the_run_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(environments.CACHE_ENV, str(tmp_path / "envs"))
    python = ensure_environment(REQUIREMENTS, "skops", python=PYTHON)
    (tmp_path / "model").mkdir()
    subprocess.run([str(python), "-I", "-c", FIT, str(tmp_path)], check=True, timeout=600)
    assert json.loads((tmp_path / "fit.json").read_text())["sklearn"] == TRAINED_WITH
    model = tmp_path / "model"
    (model / "MLmodel").write_text(
        yaml.safe_dump(
            {
                "artifact_path": "model",
                "flavors": {
                    "sklearn": {
                        "pickled_model": "model.skops",
                        "serialization_format": "skops",
                        "sklearn_version": TRAINED_WITH,
                        "code": None,
                    }
                },
            }
        )
    )
    (model / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n")
    (model / "python_env.yaml").write_text(f"python: {PYTHON}.0\ndependencies:\n- -r requirements.txt\n")
    reference = pd.read_csv(tmp_path / "reference.csv")
    reference.to_parquet(tmp_path / "reference.parquet", index=False)

    with mlflow_server(tmp_path / "mlflow") as server:
        import mlflow

        with training_side(server), mlflow.start_run() as run:
            mlflow.log_artifacts(str(model), "model")
            mlflow.log_artifact(str(tmp_path / "reference.parquet"), "parity")
            mlflow.register_model(f"runs:/{run.info.run_id}/model", "iris-old")
        # an untrusted registry: its requirements are never installed (that runs their code)
        untrusted = MlflowRegistry(server.registry, cache=tmp_path / "mirror-untrusted").open(
            ModelRef("iris-old", 1)
        )
        monkeypatch.setenv("PARITY_MLFLOW_TRUST_PICKLE", server.url)
        registry = MlflowRegistry(server.registry, cache=tmp_path / "mirror")
        opened = registry.open(ModelRef("iris-old", 1))
    here = untrusted.record.provenance.origin
    assert here is not None and here.predictions_from.startswith(
        "computed here under scikit-learn 1.9.0, not in the run's"
    )
    origin = opened.record.provenance.origin
    assert origin is not None and origin.trained_scikit_learn == TRAINED_WITH
    assert (
        origin.predictions_from
        == f"reference predictions computed in the run's environment (scikit-learn {TRAINED_WITH})"
    )
    assert any(f"trained under scikit-learn {TRAINED_WITH}" in note for note in opened.notes)
    # bit for bit what the 1.8.0 environment itself predicted
    expected = np.load(tmp_path / "proba.npy")
    assert opened.predictions["predict_proba"].tobytes() == expected.tobytes()
