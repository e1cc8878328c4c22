"""Register Parity's deployments (``parity deploy``) or serve them from one process (``parity serve``).

``deployments/prefect.yaml`` is the one description of the deployments: ``deploy`` hands it to
``prefect deploy`` after creating the work pools; ``serve`` builds the same schedules and triggers from it
for Prefect's ``serve`` (no work pools, no workers).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.registry.registries import scheme_of

#: This package's folder: where `prefect deploy` runs (the runs themselves start in ``PARITY_WORKDIR``,
#: see prefect.yaml; the entrypoints are module paths, ``parity.flows...``, found wherever Parity is installed).
PACKAGE_DIR = Path(__file__).resolve().parent
PREFECT_FILE = PACKAGE_DIR / "prefect.yaml"
#: Work pools, by name: shared with the per-architecture target runs. All are process pools.
WORK_POOLS: dict[str, str] = {
    "parity-x86-64": "Parity runs on linux/x86_64 machines (the default pool of every Parity deployment).",
    "parity-aarch64": "Parity target runs on linux/aarch64 machines (or under qemu emulation).",
}
WORK_POOL_TYPE = "process"
#: Flow runs at once per pool, set when ``parity deploy`` creates the pool (change it later with
#: ``prefect work-pool set-concurrency-limit POOL N``). A fanned-out nightly sweep holds one slot of
#: parity-x86-64 itself while its children take the others, so that pool needs at least 2.
POOL_CONCURRENCY: dict[str, int] = {"parity-x86-64": 4, "parity-aarch64": 2}
#: Emulated target runs at once across every worker of the server (a global concurrency limit): qemu runs
#: the runner 6-60x slower than native and takes a whole core.
EMULATOR_SLOTS = 1
#: The automation that marks a Parity flow run Crashed when its heartbeats stop (its worker was killed):
#: Prefect's documented zombie detection. Deployed runs send a heartbeat every HEARTBEAT_S seconds
#: (prefect.yaml sets PREFECT_FLOWS_HEARTBEAT_FREQUENCY; Prefect 3.9.1 sends at most one per 30 s, and by
#: default one per 180 s). Only runs tagged HEARTBEAT_TAG are watched: they are the ones sending every 30 s.
CRASH_AUTOMATION = "parity: mark flow runs whose heartbeats stopped as Crashed"
HEARTBEAT_S = 30
CRASH_AFTER_S = 90
HEARTBEAT_TAG = "parity-heartbeat"
#: Seconds between the served runner's queries for runs to start, unless PREFECT_RUNNER_POLL_FREQUENCY says
#: otherwise (Prefect's default, 10 s, made a registration's run wait up to that long before its process
#: started). One indexed query a second is cheap.
RUNNER_POLL_S = 1
#: Deployments of prefect.yaml that ``parity serve`` serves (target runs need their architecture's pool).
SERVED = ("on-registration", "nightly-sweep", "weekly-audit", "mlflow-poll")
#: Deployments that only make sense for an MLflow registry: ``deploy`` and ``serve`` leave them out when the
#: registry is a folder (prefect.yaml says why).
MLFLOW_ONLY = ("mlflow-poll",)
#: Seconds ``prefect deploy`` may take (it imports each flow's module).
DEPLOY_TIMEOUT_SECONDS = 600
_ENV_PLACEHOLDER = re.compile(r"{{\s*\$(\w+)\s*}}")


def is_mlflow(registry: str | os.PathLike[str]) -> bool:
    """Whether ``registry`` names an MLflow registry (``mlflow+http://…``, ``mlflow:``) rather than a folder."""
    return (scheme_of(str(registry)) or "").startswith("mlflow")


def deployment_names(
    registry: str | os.PathLike[str], names: tuple[str, ...] | None = None, prefect_file: Path = PREFECT_FILE
) -> tuple[str, ...]:
    """The deployments of ``prefect_file`` (or ``names``) that apply to ``registry``: all but
    :data:`MLFLOW_ONLY` for a folder."""
    names = names or tuple(d["name"] for d in load_spec(prefect_file)["deployments"])
    return names if is_mlflow(registry) else tuple(n for n in names if n not in MLFLOW_ONLY)


def deployment_env(registry: str | os.PathLike[str], archive: str | os.PathLike[str]) -> dict[str, str]:
    """``PARITY_REGISTRY`` / ``PARITY_ARCHIVE`` as prefect.yaml reads them (a folder as an absolute path, a
    registry URI as it is), and ``PARITY_WORKDIR``, where deployed runs start (the user's, else the system's
    temporary folder)."""
    return {
        "PARITY_REGISTRY": str(registry) if scheme_of(str(registry)) else str(Path(registry).resolve()),
        "PARITY_ARCHIVE": str(Path(archive).resolve()),
        "PARITY_WORKDIR": os.environ.get("PARITY_WORKDIR") or tempfile.gettempdir(),
    }


def load_spec(prefect_file: Path = PREFECT_FILE) -> dict[str, Any]:
    """The parsed prefect.yaml."""
    import yaml

    return yaml.safe_load(prefect_file.read_text())


def render(value: Any, env: dict[str, str]) -> Any:
    """Replace ``{{ $VAR }}`` placeholders the way ``prefect deploy`` does; leave ``{{ event.* }}`` alone.

    Raises
    ------
    InvalidInputError
        A placeholder names a variable that ``env`` lacks.
    """
    if isinstance(value, dict):
        return {k: render(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[1] not in env:
            raise InvalidInputError(
                f"prefect.yaml uses {{{{ ${match[1]} }}}} but it is not set; set it (e.g. with "
                "`parity deploy --registry DIR --archive DIR`) before deploying."
            )
        return env[match[1]]

    return _ENV_PLACEHOLDER.sub(substitute, value)


async def _ensure_work_pools(pools: dict[str, str]) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    created = []
    async with get_client() as client:
        for name, description in pools.items():
            try:
                await client.read_work_pool(name)
            except ObjectNotFound:
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=name,
                        type=WORK_POOL_TYPE,
                        description=description,
                        concurrency_limit=POOL_CONCURRENCY.get(name),
                    )
                )
                created.append(name)
    return created


def ensure_limits() -> list[str]:
    """Create the emulator's global concurrency limit and the crash-detection automation if missing.

    Returns
    -------
    list of str
        What this call created.
    """
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.exceptions import ObjectNotFound

    from parity.validators.targets.reaches import EMULATOR_LIMIT

    created = []
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(EMULATOR_LIMIT)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=EMULATOR_LIMIT, limit=EMULATOR_SLOTS)
            )
            created.append(EMULATOR_LIMIT)
        if client.read_automations_by_name(CRASH_AUTOMATION):
            return created
    final = ("Completed", "Failed", "Cancelled", "Crashed")
    Automation(
        name=CRASH_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in final)},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            match_related={
                "prefect.resource.id": f"prefect.tag.{HEARTBEAT_TAG}",
                "prefect.resource.role": "tag",
            },
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=CRASH_AFTER_S),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                name="Crashed",
                force=False,
                message=f"no heartbeat for {CRASH_AFTER_S} s: its worker or machine stopped",
            )
        ],
    ).create()
    return [*created, CRASH_AUTOMATION]


def ensure_work_pools(pools: dict[str, str] | None = None) -> list[str]:
    """Create the work pools Parity's deployments need, leaving existing ones alone.

    Parameters
    ----------
    pools : dict, optional
        Name → description; defaults to :data:`WORK_POOLS`.

    Returns
    -------
    list of str
        The pools this call created.
    """
    return asyncio.run(_ensure_work_pools(pools or WORK_POOLS))


def deploy(
    registry: str | os.PathLike[str],
    archive: str | os.PathLike[str],
    prefect_file: Path = PREFECT_FILE,
) -> str:
    """Create the work pools, then register every deployment of ``prefect_file`` with the Prefect API.

    Parameters
    ----------
    registry, archive : path-like
        Where the deployed flows find models and file bundles; stored as absolute paths.
    prefect_file : Path
        The deployments file (default: ``deployments/prefect.yaml``).

    Returns
    -------
    str
        What ``prefect deploy`` printed.

    Raises
    ------
    EnvironmentProblem
        No Prefect API is configured, or ``prefect deploy`` failed (its output is in the message).

    Notes
    -----
    Also creates, when missing, the emulator's global concurrency limit and the automation that marks
    Parity flow runs Crashed when their heartbeats stop (:func:`ensure_limits`).
    """
    from parity.registry.events import prefect_api_url

    api_url = prefect_api_url()
    if api_url is None:
        raise EnvironmentProblem(
            "no Prefect API is configured, so there is nowhere to deploy to. Start a server "
            "(`prefect server start`) and run `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`."
        )
    ensure_work_pools()
    ensure_limits()
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(prefect_file)]
    for name in deployment_names(registry, prefect_file=prefect_file):
        command += ["--name", name]
    try:
        done = subprocess.run(
            command,
            cwd=PACKAGE_DIR,
            env={**os.environ, "PREFECT_API_URL": api_url, **deployment_env(registry, archive)},
            capture_output=True,
            text=True,
            timeout=DEPLOY_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as err:
        raise EnvironmentProblem(f"`prefect deploy` took over {DEPLOY_TIMEOUT_SECONDS} s.") from err
    if done.returncode != 0:
        raise EnvironmentProblem(
            f"`prefect deploy` failed (exit {done.returncode}); it said:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def runner_deployments(
    registry: str | os.PathLike[str],
    archive: str | os.PathLike[str],
    names: tuple[str, ...] = SERVED,
    prefect_file: Path = PREFECT_FILE,
) -> list:
    """The deployments of ``prefect_file`` named ``names``, as ``RunnerDeployment`` objects for ``serve``.

    Parameters
    ----------
    registry, archive : path-like
    names : tuple of str
        Deployment names in prefect.yaml.
    prefect_file : Path

    Returns
    -------
    list of prefect.deployments.runner.RunnerDeployment
        With the file's parameters, cron and interval schedules (with their parameters) and event triggers.
    """
    from prefect.events import DeploymentEventTrigger, DeploymentTriggerTypes, TriggerTypes
    from prefect.flows import Flow, load_flow_from_entrypoint
    from prefect.schedules import Cron, Interval
    from prefect.types.entrypoint import EntrypointType

    env = deployment_env(registry, archive)
    specs = {d["name"]: d for d in load_spec(prefect_file)["deployments"]}
    missing = [n for n in names if n not in specs]
    if missing:
        raise InvalidInputError(
            f"{prefect_file} has no deployment {', '.join(missing)}; it has {', '.join(specs)}."
        )
    built = []
    for name in names:
        spec = render(specs[name], env)
        flow: Flow[..., Any] = load_flow_from_entrypoint(spec["entrypoint"])
        schedules = [
            Cron(
                s["cron"],
                timezone=s.get("timezone"),
                parameters=s.get("parameters", {}),
                active=s.get("active", True),
            )
            if "cron" in s
            else Interval(s["interval"], parameters=s.get("parameters", {}), active=s.get("active", True))
            for s in spec.get("schedules", [])
        ]
        triggers: list[DeploymentTriggerTypes | TriggerTypes] = [
            DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"})
            for t in spec.get("triggers", [])
        ]
        built.append(
            flow.to_deployment(
                name=name,
                parameters=spec.get("parameters", {}),
                schedules=schedules,
                triggers=triggers,
                description=spec.get("description"),
                tags=spec.get("tags"),
                # the module path, as prefect.yaml names it: served runs import parity.flows.*, wherever
                # this process runs from, never a second copy of the flow's file loaded as a script
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return built


def serve(
    registry: str | os.PathLike[str], archive: str | os.PathLike[str], limit: int | None = None
) -> None:
    """Serve :data:`SERVED` from this process until interrupted: same schedules and triggers, no work pools.

    Parameters
    ----------
    registry, archive : path-like
    limit : int, optional
        Most flow runs at once.
    """
    from prefect import serve as prefect_serve

    # served runs are subprocesses of this one: the heartbeat the crash automation expects of tagged runs
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_S))
    served = runner_deployments(registry, archive, deployment_names(registry, SERVED))
    bound = asyncio.run(_bound_to_work_pools([f"{d.flow_name}/{d.name}" for d in served]))
    if bound:
        raise EnvironmentProblem(
            f"{', '.join(bound)} already exist on this server bound to a work pool (by `parity deploy`); "
            "serving them would keep the pool but lose the code location, and their runs would fail. Keep "
            "using a worker, or delete them first (`prefect deployment delete NAME` for each) and serve."
        )
    polling: dict[str, Any] = (
        {} if "PREFECT_RUNNER_POLL_FREQUENCY" in os.environ else {"query_seconds": RUNNER_POLL_S}
    )
    prefect_serve(*served, limit=limit, **polling)


async def _bound_to_work_pools(names: list[str]) -> list[str]:
    """Those of ``names`` that exist on the server with a work pool, as ``name (pool)``."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    bound = []
    async with get_client() as client:
        for name in names:
            try:
                deployment = await client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if deployment.work_pool_name:
                bound.append(f"{name} ({deployment.work_pool_name})")
    return bound
