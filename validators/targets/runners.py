"""What a format's runner offers to the reaches that run it away from this process (emulator, work pool).

A runner is a program of its own (``validators/runner.py`` for ONNX, ``PmmlRunner.java`` for PMML) that reads
an input file and writes an output file holding its outputs and where it ran. A reach decides where those
files are and where the program runs; the format's spec (:mod:`parity.validators.formats`) picks the runner
and prepares its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from pydantic import ValidationError

from parity.core.errors import RecordError
from parity.core.records import Role, Where
from parity.core.records.base import problems_of

from .target import RunnerSettings

if TYPE_CHECKING:
    from .aarch64 import Aarch64Env


@dataclass(frozen=True)
class RemoteResult:
    """Raw outputs of a runner (arrays by output name, or a frame of result columns) and where it ran."""

    outputs: dict[str, np.ndarray] | pd.DataFrame
    where: Where


def where_of(data: object, source: Path) -> Where:
    """A runner's description of where it ran, read from its output file ``source``.

    Raises
    ------
    RecordError
        When the description has fields this version of Parity does not know (a runner of another version).
    """
    try:
        return Where.model_validate(data)
    except ValidationError as err:
        raise RecordError(
            f"{source}: the runner's description of where it ran is not one this version of Parity reads "
            f"({problems_of(err, 5)}). Run the same Parity version on every target."
        ) from err


class RemoteRunner(Protocol):
    """A format's runner, as every reach uses it.

    Attributes
    ----------
    runtime : str
        Its name in reports (e.g. ``onnxruntime``, ``jpmml``).
    inputs_file, outputs_file : str
        File names of a job's input and output in a job folder.
    replays_verification : bool
        Whether its description (``where.verification``) says if the artifact's embedded rows replayed.
    role : Role
        Its default role (a targets table's ``[roles]`` or a registration may change it).
    """

    runtime: str
    role: Role
    inputs_file: str
    outputs_file: str
    replays_verification: bool

    def write_inputs(self, path: Path, inputs: Any) -> None:
        """Write rows prepared by the format's spec into the runner's input file."""
        ...

    def run_files(
        self, env: Aarch64Env | None, artifact: Path, inputs: Path, outputs: Path, settings: RunnerSettings
    ) -> None:
        """Run the runner on files, natively (``env`` None) or under ``env``'s emulator."""
        ...

    def read_outputs(self, path: Path) -> RemoteResult:
        """The runner's outputs and its description of where it ran."""
        ...
