"""`parity serve` on a server of its own: the same schedules and triggers, no work pools, and a registration
event answered by a run in the serving process."""

from __future__ import annotations

import sys

import pytest
import skops.io as sio
from prefect_processes import PrefectServer, client_call, wait_for
from sklearn.linear_model import LogisticRegression

from parity.archive import MANIFEST
from parity.registry.events import emit_registered

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]

TRIGGERED = "convert-and-validate/on-registration"
SWEEP = "validate-registry/nightly-sweep"
MODEL = "iris-served"


async def _deployment(client, name: str):
    from prefect.exceptions import ObjectNotFound

    try:
        return await client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


async def _automations(client):
    deployment = await client.read_deployment_by_name(TRIGGERED)
    return await client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")


def test_serve_answers_schedules_and_registration_events(prefect_api: PrefectServer, iris, tmp_path):
    registry, archive = tmp_path / "registry", tmp_path / "archive"
    prefect_api.spawn(
        "serve",
        *(
            sys.executable,
            "-m",
            "parity",
            "serve",
            "--registry",
            str(registry),
            "--archive",
            str(archive),
        ),
    )
    sweep = wait_for(
        lambda: client_call(_deployment, SWEEP), 120, lambda: f"`parity serve`:\n{prefect_api.log('serve')}"
    )
    assert sweep.work_pool_name is None
    assert sweep.schedules[0].parameters == {
        "registry": str(registry.resolve()),
        "archive": str(archive.resolve()),
    }
    (automation,) = wait_for(lambda: client_call(_automations), 60, "the registration trigger")
    assert automation.trigger.expect == {"parity.model.registered"}

    X, y = iris
    model, reference = tmp_path / "model.skops", tmp_path / "reference.parquet"
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), model)
    X.to_parquet(reference)
    # `parity register` emits the event; the serving process runs the triggered flow
    prefect_api.run(
        *(sys.executable, "-m", "parity", "register", str(model), "--reference", str(reference)),
        *("--name", MODEL, "--registry", str(registry)),
    )
    bundle = archive / MODEL / "1" / MANIFEST

    sent: list[str | None] = []

    def announce_until_archived() -> bool:
        # The server's trigger service takes up a new automation a little after it is created: an event that
        # came first is not matched, so announce again until a run happens (a repeat is harmless by design).
        # A loaded server may also miss the 15 s in which emit_registered waits (it returns None): try again.
        if not bundle.is_file():
            sent.append(emit_registered(MODEL, 1, registry))
        return bundle.is_file()

    wait_for(
        announce_until_archived,
        300,
        lambda: (
            f"the served run to archive {MODEL}:1 (event ids sent: {sent}):\n{prefect_api.log('serve')[-3000:]}"
        ),
        every=30,
    )
