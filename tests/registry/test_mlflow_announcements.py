"""MLflow model versions announced to a real Prefect server, by the two ways Parity learns of them:

- the webhook: a real ``mlflow server`` delivers ``model_version.created`` to ``parity webhook serve`` (a
  subprocess), which emits ``parity.model.registered`` with the version's one event id and tags the version;
- the poller: the ``poll-mlflow`` flow announces the versions nobody announced, once.

Both MLflow servers are real and separate (a version registered on the webhook's server is announced by the
receiver at once, and the poller must see versions nobody announced). The events are read back from the
Prefect API. ``convert-and-validate`` is not deployed here: what the events start is the deployment tests'.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature
from sklearn.linear_model import LogisticRegression

from parity.cli import main
from parity.core.errors import InvalidInputError
from parity.registry.events import REGISTERED, registered_event_id
from parity.registry.mlflow import TAG_ANNOUNCED, TAG_VERDICT, MlflowRegistry
from parity.registry.mlflow_announce import LOST_AFTER, announced_tag
from parity.registry.mlflow_webhook import SECRET_ENV, WEBHOOK_NAME, WebhookReceiver
from tests.deployments.prefect_processes import PrefectServer, client_call, free_port, prefect_api
from tests.mlflow_server import MlflowServer, log_sklearn_model, mlflow_server
from tests.prefect_events import read_events
from tests.waiting import SERVER_SIDE_DEADLINE_S, wait_for

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]
__all__ = ["prefect_api"]

SECRET = "announcements-test-secret"
#: ``parity webhook serve`` in a fresh interpreter: its imports take 5-10 s quiet, several times that under
#: load; the wait ends as soon as /health answers.
RECEIVER_START_S = 300
SINCE = datetime.now(UTC) - timedelta(minutes=5)


@pytest.fixture(scope="module")
def model(iris):
    X, y = iris
    return LogisticRegression(max_iter=500).fit(X, y), X


@pytest.fixture(scope="module")
def hooked(tmp_path_factory) -> MlflowServer:
    """The MLflow server whose webhook delivers to the receiver."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-hooked")) as server:
        yield server


@pytest.fixture(scope="module")
def polled(tmp_path_factory) -> MlflowServer:
    """An MLflow server without webhooks: only the poller announces its versions."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-polled")) as server:
        yield server


@pytest.fixture(scope="module")
def receiver(prefect_api: PrefectServer, hooked: MlflowServer) -> str:
    """``parity webhook serve`` for ``hooked``, and the MLflow webhook pointing at it; its URL."""
    port = free_port()
    process = prefect_api.spawn(
        "receiver",
        *(sys.executable, "-m", "parity", "webhook", "serve", "--registry", hooked.registry),
        *("--listen", f"127.0.0.1:{port}"),
        extra_env={SECRET_ENV: SECRET},
    )

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"parity webhook serve exited {process.returncode}:\n{prefect_api.log('receiver')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                return reply.status == 200
        except OSError:
            return False

    wait_for(
        healthy, RECEIVER_START_S, lambda: f"the receiver's /health:\n{prefect_api.log('receiver')}", 0.5
    )
    url = f"http://127.0.0.1:{port}/mlflow"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_ENV, SECRET)
        assert main(["webhook", "create", "--registry", hooked.registry, "--url", url]) == 0
    return url


def registered_events(name: str, version: int | None = None) -> list:
    """The ``parity.model.registered`` events the Prefect API holds for a model (or one version)."""
    events = client_call(read_events, REGISTERED, SINCE)
    prefix = f"parity.model.{name}." + ("" if version is None else f"{version}")
    return [
        e for e in events if e.resource.id == prefix or (version is None and e.resource.id.startswith(prefix))
    ]


def one_event(name: str, version: int, why: str):
    return wait_for(lambda: registered_events(name, version), SERVER_SIDE_DEADLINE_S, why, every=1)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def signed(name: str, version: int, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """A delivery as MLflow makes it, signed by MLflow's own function."""
    payload = json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "name": name,
                "version": str(version),
                "source": "models:/x",
                "run_id": None,
                "tags": {},
            },
        }
    )
    stamp, delivery = str(int(datetime.now(UTC).timestamp())), f"test-{name}-{version}"
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, stamp, payload),
    }
    return payload.encode(), headers


@pytest.fixture(scope="module")
def hooked_v1(receiver, hooked, model) -> int:
    """``hooked`` version 1, registered as training code does (MLflow then delivers the webhook)."""
    estimator, X = model
    _, version = log_sklearn_model(hooked, "hooked", estimator, X)
    return version


# -- the webhook ---------------------------------------------------------------------------------------------
def test_a_registration_is_delivered_announced_and_tagged(prefect_api, hooked, hooked_v1):
    expected = registered_event_id(hooked.registry, "hooked", hooked_v1)
    (event,) = one_event(
        "hooked", hooked_v1, lambda: f"the event of hooked:1:\n{prefect_api.log('receiver')}"
    )
    assert str(event.id) == str(expected)
    assert event.payload["name"] == "hooked" and event.payload["version"] == hooked_v1
    assert event.payload["registry"] == hooked.registry  # the URI as it is, not a path

    def tagged() -> str | None:
        return MlflowRegistry(hooked.registry).version_tags(_ref("hooked", hooked_v1)).get(TAG_ANNOUNCED)

    tag = wait_for(tagged, SERVER_SIDE_DEADLINE_S, "the parity.announced tag")
    assert tag.startswith(f"{expected} 20")


def test_the_same_version_delivered_again_is_one_event(prefect_api, receiver, hooked, hooked_v1, model):
    expected = str(registered_event_id(hooked.registry, "hooked", hooked_v1))
    for _ in range(2):  # a retried delivery, or one MLflow made twice
        status, answer = post(receiver, *signed("hooked", hooked_v1))
        assert (status, answer.get("event")) == (200, expected), answer
    # a later version, announced after the repeats: once its event is readable, so would theirs be
    estimator, X = model
    _, later = log_sklearn_model(hooked, "hooked", estimator, X)
    one_event("hooked", later, lambda: f"the event of hooked:{later}:\n{prefect_api.log('receiver')}")
    assert [str(e.id) for e in registered_events("hooked", hooked_v1)] == [expected]


def test_a_wrong_secret_is_refused_and_emits_nothing(prefect_api, receiver, hooked, hooked_v1, model):
    status, answer = post(receiver, *signed("intruder", 1, secret="not-the-secret"))
    assert status == 401 and "does not match" in answer["error"]
    # and MLflow's own delivery, signed with another secret (MLflow's "test webhook", from the server)
    client = hooked.client()
    wrong = client.create_webhook(
        name="wrong-secret", url=receiver, events=["model_version.created"], secret="wrong", status="DISABLED"
    )
    result = client.test_webhook(wrong.webhook_id)
    assert result.response_status == 401, result
    # with the right secret, MLflow's test delivery (example_model 1, which the server lacks) announces nothing
    (ours,) = [h for h in client.list_webhooks() if h.name == WEBHOOK_NAME]
    result = client.test_webhook(ours.webhook_id)
    assert result.response_status == 200 and '"announced": false' in result.response_body, result
    estimator, X = model
    _, later = log_sklearn_model(hooked, "hooked", estimator, X)
    one_event("hooked", later, lambda: f"the event of hooked:{later}:\n{prefect_api.log('receiver')}")
    assert registered_events("intruder") == [] and registered_events("example_model") == []


def test_create_again_updates_the_one_webhook(receiver, hooked, monkeypatch, capsys):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert main(["webhook", "create", "--registry", hooked.registry, "--url", receiver]) == 0
    assert capsys.readouterr().out.startswith(f"updated webhook {WEBHOOK_NAME} ")
    (hook,) = [h for h in hooked.client().list_webhooks() if h.name == WEBHOOK_NAME]
    assert hook.url == receiver and [str(e) for e in hook.events] == ["model_version.created"]


def test_a_prefect_that_does_not_take_the_event_is_answered_503(hooked, hooked_v1):
    import socket

    from prefect.settings import PREFECT_API_URL, temporary_settings

    receiver = WebhookReceiver(MlflowRegistry(hooked.registry), SECRET)
    with socket.socket() as closed:  # bound, never listening: the connection is refused
        closed.bind(("127.0.0.1", 0))
        with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{closed.getsockname()[1]}/api"}):
            body, headers = signed("hooked", hooked_v1)
            status, answer = receiver.receive(headers, body)
    assert status == 503 and "Prefect did not take the event" in answer["error"]


# -- the poller ----------------------------------------------------------------------------------------------
def _ref(name: str, version: int):
    from parity.registry import ModelRef

    return ModelRef(name, version)


def test_the_poller_announces_what_nobody_announced_once(prefect_api, polled, model, tmp_path):
    from parity.archive import Archive
    from parity.flows.poll import poll_mlflow

    estimator, X = model
    for _ in range(5):  # versions 1-5
        log_sklearn_model(polled, "polled", estimator, X)
    client = polled.client()
    now = datetime.now(UTC)
    client.set_model_version_tag("polled", "2", TAG_VERDICT, "passed")  # validated: skipped
    client.set_model_version_tag("polled", "3", TAG_ANNOUNCED, announced_tag("e-3", now))  # recent: skipped
    lost = announced_tag("e-4", now - LOST_AFTER - timedelta(minutes=1))
    client.set_model_version_tag("polled", "4", TAG_ANNOUNCED, lost)  # lost: announced again
    archive = Archive(tmp_path / "archive")  # 5: archived already (a bundle there), skipped
    archive.write_bundle("polled", 5, {"report.json": b"{}"}, {"model_sha256": "0", "reference_sha256": "0"})

    announced = poll_mlflow(registry=polled.registry, archive=str(archive.root))
    ids = {v: str(registered_event_id(polled.registry, "polled", v)) for v in (1, 4)}
    assert announced == [{"model": f"polled:{v}", "event": ids[v]} for v in (1, 4)]
    for version in (1, 4):
        (event,) = one_event("polled", version, f"the event of polled:{version}")
        assert str(event.id) == ids[version] and event.payload["registry"] == polled.registry
        tag = client.get_model_version("polled", str(version)).tags[TAG_ANNOUNCED]
        assert tag.startswith(ids[version] + " ")
    assert poll_mlflow(registry=polled.registry, archive=str(archive.root)) == []  # idempotent


def test_the_poller_refuses_a_folder(prefect_api, tmp_path):
    from parity.flows.poll import poll_mlflow

    with pytest.raises(InvalidInputError, match=r"is not an MLflow registry.*nightly sweep"):
        poll_mlflow(registry=str(tmp_path / "registry"), archive=str(tmp_path / "archive"))
