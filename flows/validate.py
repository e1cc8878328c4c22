"""Prefect flows: one model version (load → convert per format → validate per runtime → archive), and a sweep.

The flows only wire tasks; every task calls a stage function that runs without Prefect.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

import parity.archive as archive_stage
from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY, PROGRESS_LOGGER
from parity.core.errors import ModelNotValidated, SweepNotPassed
from parity.core.records import Conversion, Outcome, Report
from parity.registry import RegisteredModel, Result, open_registry
from parity.validators.formats import FORMATS, format_of
from parity.validators.outputs import OutputLog
from parity.validators.report import Check
from parity.validators.targets.table import load_roles, load_targets
from parity.validators.validate import ModelContext, remedied, validate_conversion

from . import fanout
from .fanout import CHILD_DEPLOYMENT
from .publish import SweepProgress, publish
from .summary import failing_cells, one_line

#: Models validated at once by a sweep: the machines we target have two cores.
SWEEP_WORKERS = 2
#: Plain-logging twin of the run logger, for the CLI's progress lines.
progress = logging.getLogger(PROGRESS_LOGGER)


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def fetch(registry: str, name: str, version: int | None) -> RegisteredModel:
    """Read one registered model version, its reference data and predictions."""
    store = open_registry(registry)
    return store.open(store.resolve(name, version))


@task(cache_policy=NO_CACHE)
def convert(model: RegisteredModel, fmt: str, workdir: str) -> Conversion:
    """Convert the model to one format."""
    return format_of(fmt).convert(model.estimator, model.reference, Path(workdir) / fmt)


@task(cache_policy=NO_CACHE)
def validate(
    context: ModelContext, conversion: Conversion, workdir: str, targets: str | None = None
) -> tuple[dict[str, Conversion], list[Check], OutputLog]:
    """Evaluate one artifact in every runtime of its format and compare with the reference; try its
    format's remedy (a double-precision ONNX) when a float32 artifact fails a comparison. Also gives every
    run's converted outputs, row by row (for the bundle)."""
    table, roles = load_targets(targets), load_roles(targets)
    log = OutputLog()
    checks = validate_conversion(context, conversion, targets=table, roles=roles, log=log)
    remedy = Path(workdir) / f"{conversion.format}-remedy"
    made, checks = remedied(context, conversion, checks, remedy, table, roles, log=log)
    return made, checks, log


@task(retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def file_result(
    archive: str,
    model: RegisteredModel,
    conversions: dict[str, Conversion],
    checks: list[Check],
    outputs: OutputLog | None = None,
) -> archive_stage.Filed:
    """Archive the bundle of a passing model, or keep a failing one in the rejected area; then show the
    verdicts in the UI and emit the outcome event (a retry files nothing twice: the archive writes once)."""
    filed = archive_stage.file_model(archive_stage.Archive(archive), model, conversions, checks, outputs)
    publish(filed)
    return filed


@task(retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def write_back(registry: str, name: str, version: int, result: Result) -> list[str]:
    """Write the verdict back where the registry's users look (MLflow: tags, and the alias if it passed)."""
    from parity.registry import ModelRef

    return open_registry(registry).record_result(ModelRef(name, version), result)


def result_of(filed: archive_stage.Filed) -> Result:
    """What the registry is told of a filed result."""
    return Result(
        str(filed.outcome), filed.path, f"{filed.content}/report.json", tuple(failing_cells(filed.report))
    )


def report_back(registry: str, filed: archive_stage.Filed) -> None:
    """Run :func:`write_back`; its failure (after its retries) is a warning: the verdict is already kept in
    the archive and in the run's artifacts, and the next poll of the registry writes it back again."""
    if not open_registry(registry).writes_back:  # a file registry: its users read the archive itself
        return
    report = filed.report
    state = write_back(registry, report.name, report.version, result_of(filed), return_state=True)
    if state.is_failed():
        get_run_logger().warning(
            "%s:%s: the verdict (%s) is archived at %s, but writing it back to %s failed: %s",
            report.name,
            report.version,
            report.outcome,
            filed.path,
            registry,
            state.message,
        )


def report_unreadable(registry: str, name: str, version: int | None, message: str) -> None:
    """Write ``parity.verdict=error`` with the reason on a version that could not be read (refused, missing
    artifacts, no reference rows), so that a poller does not announce it again and again; never raises."""
    if version is None or not open_registry(registry).writes_back:
        return
    state = write_back(
        registry, name, version, Result("error", "none", "none", (message,)), return_state=True
    )
    if state.is_failed():
        get_run_logger().warning(
            "%s:%s: could not record the error on %s: %s", name, version, registry, state.message
        )


def _run_name() -> str:
    parameters = flow_run.parameters
    version = parameters.get("version")
    return f"{parameters['name']}-v{version}" if version else f"{parameters['name']}-latest"


@flow(name="convert-and-validate", flow_run_name=_run_name)
def convert_and_validate(
    name: str,
    version: int | None = None,
    registry: str = DEFAULT_REGISTRY,
    archive: str = DEFAULT_ARCHIVE,
    targets: str | None = None,
):
    """Validate one registered model version and archive it when it passes.

    ``targets`` is a targets file; default ``$PARITY_TARGETS``, else the built-in table.

    Returns the model's report (a :class:`~parity.core.records.Report`); the run ends Failed, naming the
    failing cells, when the model
    does not pass.
    """
    logger = get_run_logger()
    start = time.perf_counter()
    fetched = fetch(registry, name, version, return_state=True)
    if fetched.is_failed():  # the version could not be read safely: said where the registry's users look
        report_unreadable(registry, name, version, fetched.message or "the version could not be read")
        return fetched
    model = fetched.result()
    context = ModelContext(model)
    with tempfile.TemporaryDirectory(prefix=f"parity-{model.ref.name}-") as workdir:
        conversions: dict[str, Conversion] = {}
        checks: list[Check] = []
        outputs = OutputLog()
        for fmt in FORMATS:
            made, found, log = validate(context, convert(model, fmt, workdir), workdir, targets)
            conversions.update(made)
            checks.extend(found)
            outputs.extend(log)
        filed = file_result(archive, model, conversions, checks, outputs)
    report_back(registry, filed)
    seconds = round(time.perf_counter() - start, 2)
    report = filed.report.filed(seconds, str(filed.path))
    line = one_line(report)
    logger.info(line)
    progress.info("%s  [%.1f s]", line, seconds)
    if report.outcome is Outcome.PASSED:
        return Completed(message=line, data=report)
    return Failed(message=f"{model.ref}: {report.outcome}: " + "; ".join(failing_cells(report)), data=report)


def validate_version(
    name: str, version: int, registry: str, archive: str, targets: str | None = None
) -> Report:
    """Run the one-model flow for one version; its failure is a result here, never a crash of the sweep."""
    with without_heartbeat():
        state = convert_and_validate(name, version, registry, archive, targets, return_state=True)
    try:
        report = result_data(state)
    except Exception as err:  # the child crashed before producing a report
        return _crashed(name, version, state, err)
    if isinstance(report, Report):
        return report
    return _crashed(name, version, state, report if isinstance(report, Exception) else None)


@contextmanager
def without_heartbeat() -> Iterator[None]:
    """Prefect settings in which a flow run sends no heartbeat: for a sweep's per-model subflows.

    A sync flow run's heartbeat thread sleeps in 1 s steps and the run joins it at its end, so each
    subflow waited up to a second for a timer; the sweep's own run beats for the process they share (a
    fanned-out child is a deployed run of its own and keeps its heartbeat). ``temporary_settings`` would
    re-read every setting from the environment (~0.3 s); a copy of the current ones costs nothing.
    """
    from prefect.context import SettingsContext, get_settings_context

    context = get_settings_context()
    settings = context.settings
    flows = settings.flows.model_copy(update={"heartbeat_frequency": None})
    with SettingsContext(profile=context.profile, settings=settings.model_copy(update={"flows": flows})):
        yield


# The task wraps a function importable under its own name, so that a Dask worker (DaskTaskRunner) can
# unpickle it by reference: a decorated function's module attribute is the Task, which pickle refuses.
validate_one = task(name="validate_one", cache_policy=NO_CACHE)(validate_version)


def result_data(state):
    """What a Parity flow run produced, passed or not: a report, a list of reports, or an exception."""
    result = state.result(raise_on_failure=False)
    return result.data if isinstance(result, (ModelNotValidated, SweepNotPassed)) else result


def _crashed(name: str, version: int, state, err: Exception | None = None) -> Report:
    message = str(err) if err else (state.message or state.name)
    progress.info("%s:%s error: %s", name, version, message)
    return Report.crashed(name, version, message)


def pending_versions(registry: str, archive: str) -> list[tuple[str, int]]:
    """Registered versions without an archive bundle yet."""
    store, shelf = open_registry(registry), archive_stage.Archive(archive)
    return [(r.name, r.version) for r in store.refs() if not shelf.is_archived(r.name, r.version)]


# Prefect types a flow's runner as TaskRunner[PrefectFuture[Any]] and casts its own default the same way.
@flow(
    name="validate-registry",
    task_runner=cast(TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=SWEEP_WORKERS)),
)
def validate_registry(
    registry: str = DEFAULT_REGISTRY,
    archive: str = DEFAULT_ARCHIVE,
    models: list[str] | None = None,
    targets: str | None = None,
    fan_out: bool = False,
    child_deployment: str = CHILD_DEPLOYMENT,
):
    """Validate every registered version not yet archived (or those named ``NAME[:VERSION]``) on the
    targets file ``targets`` (default ``$PARITY_TARGETS``, else the built-in table).

    In-process (the default, ``parity run``) the models run in this flow's task runner; with ``fan_out``
    (the nightly-sweep deployment) each is one flow run of ``child_deployment`` on its work pool, so every
    worker of the pool takes models (:func:`parity.flows.fanout.fan_out`).

    One failing model never stops the others. Returns the list of reports; ends Failed when any model
    failed, was unsupported or errored, with the counts in the state message.
    """
    sweep_staging(registry, archive)
    todo = selected_versions(registry, archive, models)
    shown = SweepProgress(len(todo))
    if fan_out:
        parameters = {"registry": registry, "archive": archive, "targets": targets}
        reports = fanout.fan_out(
            todo,
            parameters,
            archive,
            deployment=child_deployment,
            sweep_id=str(flow_run.id) if flow_run.id else None,
            on_done=shown.advance,
        )
    else:
        futures = [validate_one.submit(name, version, registry, archive, targets) for name, version in todo]
        for done, _ in enumerate(as_completed(futures), 1):
            shown.advance(done)
        reports = [future.result() for future in futures]
    counts = {kind: sum(r.outcome is kind for r in reports) for kind in Outcome}
    message = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing to validate"
    get_run_logger().info("sweep: %s", message)
    if any(n for kind, n in counts.items() if kind is not Outcome.PASSED):
        bad = [f"{r.name}:{r.version}" for r in reports if r.outcome is not Outcome.PASSED]
        text = f"{message} (not passed: {', '.join(bad)})"
        return Failed(message=text, data=SweepNotPassed(text, reports))
    return Completed(message=message if todo else "nothing to validate", data=reports)


def sweep_staging(registry: str, archive: str) -> None:
    """Remove what killed or crashed runs and registrations left staged (never a live writer's folder)."""
    removed = open_registry(registry).sweep_staging() + archive_stage.Archive(archive).sweep_staging()
    if removed:
        progress.info("removed %d staging folder(s) left by runs that ended abruptly", len(removed))


def selected_versions(registry: str, archive: str, models: list[str] | None) -> list[tuple[str, int]]:
    """What a sweep validates: the named models' versions, or every version not yet archived."""
    if not models:
        return pending_versions(registry, archive)
    from parity.registry import ModelRef

    store = open_registry(registry)
    chosen = []
    for text in models:
        name, version = ModelRef.parse(text)
        ref = store.resolve(name, version)
        chosen.append((ref.name, ref.version))
    return chosen
