"""MLflow webhook deliveries as the receiver judges them: signatures checked against what MLflow itself
signs, stale, missing and wrong ones refused, bodies that are not a version's creation refused, and the
command line's refusals. No servers: test_mlflow_announcements.py has deliveries from a real MLflow server
(and the 503 a Prefect that does not take the event gets)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from parity.cli import main
from parity.core.errors import InvalidInputError, SignatureError
from parity.registry.events import registered_event_id, registered_payload
from parity.registry.mlflow import MlflowRegistry
from parity.registry.mlflow_announce import LOST_AFTER, announced_at, announced_tag, needs_announcing
from parity.registry.mlflow_webhook import (
    DELIVERY_ID_HEADER,
    SECRET_ENV,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookReceiver,
    model_version_created,
    parse_listen,
    signature,
    verify,
)

SECRET = "s3cret-for-tests"


def delivery(
    name: str = "churn", version: str = "3", *, secret: str = SECRET, entity: str = "model_version", **extra
) -> tuple[dict[str, str], bytes]:
    """Headers and body as MLflow 3.17's ``_send_webhook_request`` builds them, signed by MLflow's own code."""
    message = {
        "entity": entity,
        "action": "created",
        "timestamp": "2026-12-03T09:00:00+00:00",
        "data": {"name": name, "version": version, "source": "models:/m-1", "run_id": "r1", "tags": {}},
        **extra,
    }
    payload = json.dumps(message)
    delivery_id, stamp = str(uuid.uuid4()), str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: _generate_hmac_signature(secret, delivery_id, stamp, payload),
    }
    return headers, payload.encode()


def test_our_signature_is_mlflows():
    assert signature(SECRET, "d-1", "1700000000", b'{"a": 1}') == _generate_hmac_signature(
        SECRET, "d-1", "1700000000", '{"a": 1}'
    )


def test_a_delivery_mlflow_signed_verifies_with_headers_in_any_case():
    headers, body = delivery()
    verify(SECRET, headers, body)
    verify(SECRET, {k.lower(): v for k, v in headers.items()}, body)


def test_a_wrong_secret_is_refused():
    headers, body = delivery(secret="not-the-secret")
    with pytest.raises(SignatureError, match=r"does not match .*\(run `parity webhook create` again\)"):
        verify(SECRET, headers, body)


def test_a_changed_body_is_refused():
    headers, body = delivery()
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, headers, body.replace(b'"3"', b'"4"'))


@pytest.mark.parametrize("header", [SIGNATURE_HEADER, DELIVERY_ID_HEADER, TIMESTAMP_HEADER])
def test_a_missing_header_is_refused(header):
    headers, body = delivery()
    del headers[header]
    with pytest.raises(SignatureError, match=f"no {header} header.*with a secret"):
        verify(SECRET, headers, body)


@pytest.mark.parametrize(("offset", "when"), [(301, "old"), (-301, "in the future")], ids=["stale", "future"])
def test_a_timestamp_beyond_the_tolerance_is_refused(offset, when):
    headers, body = delivery()
    now = int(headers[TIMESTAMP_HEADER]) + offset
    with pytest.raises(SignatureError, match=rf"301 s {when} by this machine's clock \(at most 300 s"):
        verify(SECRET, headers, body, now=now)
    verify(SECRET, headers, body, now=now - offset // 301)  # 300 s away: still accepted


def test_an_unreadable_timestamp_is_refused():
    headers, body = delivery()
    headers[TIMESTAMP_HEADER] = "yesterday"
    with pytest.raises(SignatureError, match="'yesterday': expected Unix seconds"):
        verify(SECRET, headers, body)


def test_no_secret_verifies_nothing():
    headers, body = delivery()
    with pytest.raises(InvalidInputError, match=f"set {SECRET_ENV}"):
        verify("", headers, body)


def test_a_creation_gives_name_and_version():
    assert model_version_created(delivery("churn", "12")[1]) == ("churn", 12)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "a JSON list: expected an object"),
        (
            delivery(entity="registered_model")[1],
            "about registered_model.created: .* model_version.created only",
        ),
        (delivery(version="latest")[1], "expected a name and a numeric version"),
        (delivery(name="has space")[1], "'has space': Parity model names use"),
    ],
    ids=["not-json", "not-an-object", "other-entity", "bad-version", "bad-name"],
)
def test_other_bodies_are_refused(body, match):
    with pytest.raises(InvalidInputError, match=match):
        model_version_created(body)


def test_the_event_id_is_one_per_version_and_registry():
    first = registered_event_id("mlflow+http://127.0.0.1:5000", "churn", 3)
    assert first == registered_event_id("mlflow+http://127.0.0.1:5000", "churn", 3)
    assert first.version == 5
    others = {
        registered_event_id("mlflow+http://127.0.0.1:5000", "churn", 4),
        registered_event_id("mlflow+http://127.0.0.1:5001", "churn", 3),
        registered_event_id("mlflow+http://127.0.0.1:5000", "churn3", 3),
    }
    assert first not in others and len(others) == 3


def test_the_payload_keeps_a_registry_uri_and_resolves_a_folder(tmp_path, monkeypatch):
    assert registered_payload("churn", 3, "mlflow+http://h:5000").registry == "mlflow+http://h:5000"
    monkeypatch.chdir(tmp_path)
    assert registered_payload("churn", 3, "registry").registry == str(tmp_path / "registry")


def test_an_announcement_is_lost_after_an_hour():
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    tag = {"parity.announced": announced_tag("e-1", now - LOST_AFTER + timedelta(seconds=1))}
    assert announced_at(tag) == now - LOST_AFTER + timedelta(seconds=1)
    assert not needs_announcing(tag, now)
    assert needs_announcing({"parity.announced": announced_tag("e-1", now - LOST_AFTER)}, now)
    assert needs_announcing({}, now) and needs_announcing({"parity.announced": "garbled"}, now)
    assert not needs_announcing({"parity.verdict": "failed"}, now)


def test_the_receiver_refuses_before_asking_anyone():
    # port 9 (discard) answers nothing: a refusal must not need the MLflow server or Prefect
    receiver = WebhookReceiver(MlflowRegistry("mlflow+http://127.0.0.1:9"), SECRET)
    status, answer = receiver.receive(*delivery(secret="wrong"))
    assert status == 401 and "does not match" in answer["error"]
    assert receiver.receive(*delivery(entity="registered_model"))[0] == 400


def test_serve_refuses_to_start_without_a_secret(monkeypatch, capsys):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert main(["webhook", "serve", "--registry", "mlflow+http://127.0.0.1:9"]) == 2
    assert f"{SECRET_ENV} is not set" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["webhook", "serve", "--registry", "a-folder"], "'a-folder' is not an MLflow registry"),
        (["webhook", "serve", "--registry", "mlflow+http://h:1", "--listen", "8765"], "expected HOST:PORT"),
        (
            ["webhook", "create", "--registry", "mlflow+http://h:1", "--url", "ftp://h/mlflow"],
            "expected http",
        ),
    ],
    ids=["folder", "listen", "url"],
)
def test_bad_input_exits_2_with_the_fix(monkeypatch, capsys, argv, match):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_parse_listen():
    assert parse_listen("0.0.0.0:8765") == ("0.0.0.0", 8765)
    assert parse_listen("[::1]:80") == ("::1", 80)
