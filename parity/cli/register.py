"""``parity register``: register a saved model with its reference data and provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from parity.core.defaults import DEFAULT_REGISTRY
from parity.core.errors import InvalidInputError

from .exits import EXIT_OK
from .options import RegistryOption


def _pairs(items: list[str], what: str, example: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InvalidInputError(f"{what} {item!r} must look like {example}.")
        result[key] = value
    return result


def parse_cv_scores(items: list[str]) -> dict[str, float | list[float]]:
    """``accuracy=0.91`` or ``accuracy=0.9,0.92,0.95`` → ``{"accuracy": ...}``.

    Parameters
    ----------
    items : list of str
        The values of every ``--cv-score``.

    Returns
    -------
    dict of str to float or list of float

    Raises
    ------
    InvalidInputError
        An item without ``=`` or with a score that is not a number.
    """
    scores: dict[str, float | list[float]] = {}
    for key, value in _pairs(items, "--cv-score", "NAME=VALUE[,VALUE...]").items():
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            raise InvalidInputError(f"--cv-score {key}={value}: scores must be numbers.") from None
        scores[key] = numbers[0] if len(numbers) == 1 else numbers
    return scores


def parse_tolerances(items: list[str]) -> dict[str, dict[str, float]]:
    """``probability=atol:1e-3,rtol:1e-2`` → ``{"probability": {"atol": 0.001, "rtol": 0.01}}``.

    Parameters
    ----------
    items : list of str
        The values of every ``--tolerance``.

    Returns
    -------
    dict of str to dict of str to float

    Raises
    ------
    InvalidInputError
        An item without ``=``, a band other than ``atol``/``rtol``, or a bound that is not a number.
    """
    result: dict[str, dict[str, float]] = {}
    for key, value in _pairs(items, "--tolerance", "KIND=atol:X[,rtol:Y]").items():
        band = {}
        for part in value.split(","):
            name, _, number = part.partition(":")
            if name not in ("atol", "rtol"):
                raise InvalidInputError(f"--tolerance {key}: use atol:X and/or rtol:Y, got {part!r}.")
            try:
                band[name] = float(number)
            except ValueError:
                raise InvalidInputError(f"--tolerance {key}: {number!r} is not a number.") from None
        result[key] = band
    return result


def parse_roles(items: list[str]) -> dict[str, str]:
    """``pypmml=deploy`` → ``{"pypmml": "deploy"}``.

    Parameters
    ----------
    items : list of str
        The values of every ``--role``.

    Returns
    -------
    dict of str to str

    Raises
    ------
    InvalidInputError
        An item without ``=`` or a role other than ``deploy``/``witness``.
    """

    from parity.validators import resolve_roles

    roles = _pairs(items, "--role", "RUNTIME=deploy|witness")
    try:
        resolve_roles(roles)
    except InvalidInputError as err:
        raise InvalidInputError(f"--role: {err}") from None
    return roles


def register(
    model_file: Annotated[
        str,
        typer.Argument(
            show_default=False,
            help="model file: .skops, or .pkl/.joblib with --trust-pickle and --sha256",
        ),
    ],
    reference: Annotated[
        str,
        typer.Option(
            "--reference", metavar="REFERENCE", help="reference rows (.parquet or .csv) with named columns"
        ),
    ],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="model name")],
    version: Annotated[
        int | None,
        typer.Option("--version", metavar="VERSION", help="version number (default: the next one)"),
    ] = None,
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="accept a pickle/joblib file (needs --sha256)")
    ] = False,
    sha256: Annotated[
        str | None,
        typer.Option(
            "--sha256",
            metavar="SHA256",
            help="expected SHA-256 of a pickle/joblib file, checked before unpickling",
        ),
    ] = None,
    trusted_type: Annotated[
        list[str] | None,
        typer.Option("--trusted-type", metavar="TYPE", help="a reviewed type the skops file may hold"),
    ] = None,
    training_data: Annotated[
        str | None, typer.Option("--training-data", metavar="URI", help="where the training data lives")
    ] = None,
    training_snapshot: Annotated[
        str | None,
        typer.Option(
            "--training-snapshot",
            metavar="FILE",
            help="a snapshot of the training data; its SHA-256 is recorded",
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", metavar="FILE", help="training source file to keep (repeatable)"),
    ] = None,
    cv_score: Annotated[
        list[str] | None,
        typer.Option("--cv-score", metavar="NAME=V[,V...]", help="cross-validation score(s)"),
    ] = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option("--tolerance", metavar="KIND=atol:X,rtol:Y", help="tolerance override"),
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", metavar="RUNTIME=deploy|witness", help="runtime role for this model"),
    ] = None,
    registry: RegistryOption = DEFAULT_REGISTRY,
) -> int:
    """Register a saved model with its reference rows; print its reference.

    Returns
    -------
    int
        ``EXIT_OK``; a refused model or bad option raises a ``ParityError`` instead.
    """
    from parity.core.errors import InvalidInputError
    from parity.registry import FileRegistry
    from parity.registry.registries import is_uri

    if is_uri(registry):
        raise InvalidInputError(
            f"--registry {registry}: `parity register` writes to a file registry (a folder). Register a model "
            "in MLflow from the training code (mlflow.sklearn.log_model(..., registered_model_name=NAME)); "
            "Parity reads it from there: see README, 'Validating models from MLflow'."
        )
    ref = FileRegistry(registry).register(
        None,
        Path(reference),  # read there, so that every error about the rows names this file
        name,
        version=version,
        model_file=model_file,
        trust_pickle=trust_pickle,
        sha256=sha256,
        trusted_types=trusted_type or [],
        training_data_uri=training_data,
        training_data_snapshot=training_snapshot,
        source_files=source or [],
        cv_scores=parse_cv_scores(cv_score or []),
        tolerances=parse_tolerances(tolerance or []),
        roles=parse_roles(role or []),
    )
    print(f"registered {ref} in {registry}")
    return EXIT_OK
