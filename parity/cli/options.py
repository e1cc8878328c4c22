"""The options several commands share, typed once: where the registry and archive live, the targets
table, Prefect's log lines."""

from __future__ import annotations

from typing import Annotated

import typer

from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY

RegistryOption = Annotated[
    str,
    typer.Option(
        "--registry",
        metavar="REGISTRY",
        show_default=False,
        help=f"registry: a folder (default: {DEFAULT_REGISTRY}), or an MLflow Model Registry as "
        "mlflow+http://HOST:PORT (mlflow+https://..., or mlflow: for $MLFLOW_TRACKING_URI)",
    ),
]
ArchiveOption = Annotated[
    str,
    typer.Option(
        "--archive",
        metavar="ARCHIVE",
        show_default=False,
        help=f"archive: a folder or an fsspec URL such as s3://bucket/prefix (default: {DEFAULT_ARCHIVE})",
    ),
]
TargetsOption = Annotated[
    str | None,
    typer.Option(
        "--targets", metavar="FILE", help="targets table (default: $PARITY_TARGETS or the built-in)"
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", help="show Prefect's own log lines")]
