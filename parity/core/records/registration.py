"""The registration record (``registration.json``): what a registered model version is and where it came from."""

from __future__ import annotations

from pydantic import Field

from .base import Document, Record, omitted_when_none
from .cv import CrossValidation
from .verdicts import Role

#: A class label as scikit-learn gives it (``classes_.tolist()``): a number, a string or a boolean.
ClassLabel = bool | int | float | str


class ModelFile(Record):
    """The registered model file: its name in the version folder, format, SHA-256 and the trust it needs."""

    file: str
    #: ``skops``, ``pickle`` or ``joblib``
    format: str
    sha256: str
    trusted_pickle: bool = False
    #: the scikit-learn version a pickle says it was made with, when it says one
    original_sklearn_version: str | None = omitted_when_none()


class Column(Record):
    """One reference-data column."""

    name: str
    dtype: str


class ReferenceFile(Record):
    """The reference rows every converted artifact is checked on."""

    file: str
    rows: int
    columns: list[Column]
    sha256: str


class OutputShape(Record):
    """Shape and dtype of one reference prediction (``predict``, ``predict_proba``...)."""

    shape: list[int]
    dtype: str


class PredictionsFile(Record):
    """The estimator's own predictions on the reference rows."""

    file: str
    outputs: dict[str, OutputShape]
    classes: list[ClassLabel] | None = None


class TrainingData(Record):
    """Where the training data lives, and the SHA-256 of a snapshot when one was given."""

    uri: str | None = None
    snapshot: str | None = omitted_when_none()
    snapshot_sha256: str | None = omitted_when_none()


class SourceFile(Record):
    """One training source file kept with the model."""

    file: str
    origin: str
    sha256: str


class Sources(Record):
    """The training source kept, and how it was chosen (``given``, ``calling module``...)."""

    origin: str
    files: list[SourceFile] = Field(default_factory=list)


class Environment(Record):
    """The Python environment a model was registered in."""

    python: str
    implementation: str
    platform: str
    machine: str
    scikit_learn: str = Field(alias="scikit-learn")
    distributions: dict[str, str]


class Dataset(Record):
    """A dataset the training run logged (``mlflow.log_input``): what it is, where it lives, its digest."""

    name: str
    digest: str
    source_type: str
    source: str
    context: str | None = omitted_when_none()


class Origin(Record):
    """Where a version imported from an external registry (MLflow) came from, as the run recorded it."""

    registry: str
    model_uri: str
    #: the version's own source (``models:/m-…``) and creation time (ms): a version recreated under the same
    #: number (a model deleted and registered again) differs in them, and the mirror refuses its old copy
    version_source: str
    version_created: int
    run_id: str | None = omitted_when_none()
    experiment_id: str | None = omitted_when_none()
    #: ``mlflow.source.name`` / ``.type`` / ``.git.commit`` / ``.git.repoURL`` of the run
    source: dict[str, str] = Field(default_factory=dict)
    datasets: list[Dataset] = Field(default_factory=list)
    #: the sklearn flavor's serialization format: skops, pickle or cloudpickle
    serialization_format: str
    #: the training environment: scikit-learn (MLmodel's ``sklearn_version``), Python, the requirements
    trained_scikit_learn: str | None = omitted_when_none()
    trained_python: str | None = omitted_when_none()
    requirements: list[str] = Field(default_factory=list)
    #: where the reference rows came from (the ``parity/reference.parquet`` artifact, or the input example)
    reference_from: str
    #: where the reference predictions were computed, and why there
    predictions_from: str
    #: what a user of a validation of this version should know (shown with every verdict)
    notes: list[str] = Field(default_factory=list)


class Provenance(Record):
    """What scikit-learn's model-persistence guide asks to keep with a model."""

    training_data: TrainingData
    source: Sources
    cv_scores: dict[str, float | list[float]] = Field(default_factory=dict)
    environment: Environment
    #: set for versions imported from an external registry (MLflow)
    origin: Origin | None = omitted_when_none()
    #: how ``cv_scores`` were obtained, when registered with :func:`parity.registry.cv.register_with_cv`
    cross_validation: CrossValidation | None = omitted_when_none()


class RegistrationRecord(Document):
    """``registration.json``: one registered model version.

    Attributes
    ----------
    name, version : the model version
    estimator_type : str
        The estimator's ``module.QualifiedName``.
    estimator_summary : str
        A short description, e.g. ``StandardScaler > LogisticRegression``.
    registered_at : str
        ISO 8601, UTC, seconds (kept as written).
    model, reference, predictions : the files of the version folder
    trusted_types : list of str
        Types inside a skops file the registrant reviewed and trusts.
    tolerances : dict
        Overrides per output kind, e.g. ``{"probability": {"atol": 1e-3}}``.
    provenance : Provenance
    roles : dict, optional
        Runtime roles for this model (runtime name → ``deploy``/``witness``), over the installation's.
    """

    name: str
    version: int
    estimator_type: str
    estimator_summary: str
    registered_at: str
    model: ModelFile
    trusted_types: list[str] = Field(default_factory=list)
    reference: ReferenceFile
    predictions: PredictionsFile
    tolerances: dict[str, dict[str, float]] = Field(default_factory=dict)
    provenance: Provenance
    roles: dict[str, Role] | None = omitted_when_none()
