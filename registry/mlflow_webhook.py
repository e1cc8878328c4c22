"""MLflow's registry webhooks as Parity's registration events: verify a delivery, then announce the version.

MLflow (3.x) POSTs, for each new model version, JSON of the form::

    {"entity": "model_version", "action": "created", "timestamp": "<ISO 8601>",
     "data": {"name": ..., "version": "<str>", "source": ..., "run_id": ..., "tags": {...}, ...}}

with the headers ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (Unix seconds) and, for a webhook with a
secret, ``X-MLflow-Signature = "v1," + base64(HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>"))``.
It retries a delivery answered 429, 500, 502, 503 or 504 (``MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES``, 3).

The receiver (:func:`make_server`, ``parity webhook serve``) answers ``POST /mlflow``: 401 for a missing or
wrong signature or a stale timestamp, 400 for a body that is not a model version's creation, 200 without
announcing anything for a version the MLflow server does not have (its "test webhook" delivery names
``example_model`` version 1), 503 when the MLflow server cannot say or Prefect did not take the event (so
MLflow retries), else 200 after announcing the version (:func:`~parity.registry.mlflow_announce.announce`).
``GET /health`` answers 200.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from parity.core.errors import InvalidInputError, ParityError, SignatureError

from .events import prefect_api_url
from .mlflow import MlflowRegistry
from .mlflow_announce import announce
from .store import ModelRef, is_model_name

logger = logging.getLogger("parity.registry.mlflow_webhook")

SIGNATURE_HEADER = "X-MLflow-Signature"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_VERSION = "v1"
#: Seconds a delivery's timestamp may be away from this machine's clock (replays older than that are refused).
TOLERANCE_S = 300
#: The path MLflow delivers to, and the receiver's health check.
WEBHOOK_PATH = "/mlflow"
HEALTH_PATH = "/health"
#: The variable holding the webhook's shared secret (``parity webhook serve`` / ``create``).
SECRET_ENV = "PARITY_MLFLOW_WEBHOOK_SECRET"
#: The MLflow webhook ``parity webhook create`` makes (one per name: created, or updated in place).
WEBHOOK_NAME = "parity-validate"
WEBHOOK_EVENT = "model_version.created"
#: A creation's body is a few hundred bytes; anything this large is not MLflow's.
MAX_BODY_BYTES = 1 << 20
DEFAULT_LISTEN = ("127.0.0.1", 8765)


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` MLflow sends for this delivery (``v1,<base64 HMAC-SHA256>``)."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> None:
    """Check that a delivery was signed with ``secret`` and is fresh.

    Parameters
    ----------
    secret : str
        The webhook's secret (as given to MLflow).
    headers : mapping
        The request's headers (names in any case).
    body : bytes
        The request's body, exactly as received.
    now : float, optional
        Unix time to judge freshness by (default: this machine's clock).
    tolerance_s : float
        Seconds the delivery's timestamp may differ from ``now``.

    Raises
    ------
    InvalidInputError
        ``secret`` is empty: nothing could be verified.
    SignatureError
        A header is missing, the timestamp is stale or unreadable, or the signature does not match.
    """
    if not secret:
        raise InvalidInputError(f"no webhook secret to verify deliveries with; set {SECRET_ENV}.")
    found = {key.lower(): value for key, value in headers.items()}
    missing = [h for h in (SIGNATURE_HEADER, DELIVERY_ID_HEADER, TIMESTAMP_HEADER) if h.lower() not in found]
    if missing:
        raise SignatureError(
            f"the delivery has no {', '.join(missing)} header: expected MLflow's signed delivery. Create the "
            f"webhook with a secret (`parity webhook create`), the same one as {SECRET_ENV} here."
        )
    stamp = found[TIMESTAMP_HEADER.lower()]
    try:
        age = (time.time() if now is None else now) - int(stamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is {stamp!r}: expected Unix seconds.") from None
    if abs(age) > tolerance_s:
        raise SignatureError(
            f"the delivery's timestamp is {abs(age):.0f} s {'old' if age > 0 else 'in the future'} by this "
            f"machine's clock (at most {tolerance_s:.0f} s accepted): a replay, or a clock out of sync (check "
            "NTP on both machines)."
        )
    expected = signature(secret, found[DELIVERY_ID_HEADER.lower()], stamp, body)
    if not hmac.compare_digest(expected.encode(), found[SIGNATURE_HEADER.lower()].strip().encode()):
        raise SignatureError(
            f"{SIGNATURE_HEADER} does not match the body signed with this receiver's secret: the webhook's "
            f"secret differs from {SECRET_ENV} here (run `parity webhook create` again), or the body changed."
        )


def model_version_created(body: bytes) -> tuple[str, int]:
    """The model name and version of a ``model_version.created`` delivery.

    Parameters
    ----------
    body : bytes
        The delivery's JSON body.

    Returns
    -------
    tuple of (str, int)

    Raises
    ------
    InvalidInputError
        Not JSON, another entity or action, or no usable name and version.
    """
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(
            f"the delivery is not JSON ({err}); expected MLflow's webhook payload."
        ) from None
    if not isinstance(message, dict):
        raise InvalidInputError(f"the delivery is a JSON {type(message).__name__}: expected an object.")
    event = f"{message.get('entity')}.{message.get('action')}"
    if event != WEBHOOK_EVENT:
        raise InvalidInputError(
            f"the delivery is about {event}: this receiver handles {WEBHOOK_EVENT} only. Subscribe the "
            f"webhook to that event alone (`parity webhook create` does)."
        )
    data = message.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    version = str(data.get("version", "")) if isinstance(data, dict) else ""
    if not isinstance(name, str) or not version.isdigit():
        raise InvalidInputError(
            f"the {WEBHOOK_EVENT} delivery has data {data!r}: expected a name and a numeric version."
        )
    if not is_model_name(name):
        raise InvalidInputError(
            f"model {name!r}: Parity model names use 1-100 letters, digits, '.', '_' or '-'; rename the "
            "registered model to have it validated."
        )
    return name, int(version)


class WebhookReceiver:
    """What the HTTP server does with a request, without the HTTP: ``receive(headers, body)``.

    Parameters
    ----------
    registry : MlflowRegistry
        The registry the webhook comes from (the events name it, the tags go there).
    secret : str
        The webhook's secret.
    """

    def __init__(self, registry: MlflowRegistry, secret: str) -> None:
        if not secret:
            raise InvalidInputError(
                f"no webhook secret; set {SECRET_ENV} (the one the webhook was created with)."
            )
        self.registry = registry
        self.secret = secret

    def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Verify, read and announce one delivery; returns the HTTP status and a JSON answer."""
        try:
            verify(self.secret, headers, body)
        except SignatureError as err:
            logger.warning("refused a delivery: %s", err)
            return HTTPStatus.UNAUTHORIZED, {"error": str(err)}
        try:
            name, version = model_version_created(body)
        except InvalidInputError as err:
            logger.warning("refused a delivery: %s", err)
            return HTTPStatus.BAD_REQUEST, {"error": str(err)}
        ref = ModelRef(name, version)
        missing = self._missing(ref)
        if missing is not None:
            return missing
        if prefect_api_url() is None:
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": "no Prefect API is configured (PREFECT_API_URL)."
            }
        try:
            event_id = announce(self.registry, ref)
        except ParityError as err:  # the tag could not be written; the event itself was taken
            logger.warning("%s was announced but not tagged: %s", ref, err)
            return HTTPStatus.OK, {"model": str(ref), "announced": True, "tagged": False}
        except Exception as err:
            logger.warning("Prefect did not take the event for %s (%s: %s)", ref, type(err).__name__, err)
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"Prefect did not take the event: {err}"}
        logger.info("announced %s as event %s", ref, event_id)
        return HTTPStatus.OK, {"model": str(ref), "announced": True, "tagged": True, "event": event_id}

    def _missing(self, ref: ModelRef) -> tuple[int, dict[str, Any]] | None:
        """200 with nothing announced for a version the server does not have (MLflow's "test webhook"
        sends ``example_model`` version 1); 503 when the server cannot say; None when it exists."""
        from mlflow.exceptions import RestException

        try:
            self.registry.client.get_model_version(ref.name, str(ref.version))
        except RestException as err:
            if err.get_http_status_code() == HTTPStatus.NOT_FOUND:
                logger.info(
                    "%s is not in %s (a test delivery?): nothing announced", ref, self.registry.location
                )
                return HTTPStatus.OK, {"model": str(ref), "announced": False, "reason": "no such version"}
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"{self.registry.location} said: {err.message}"}
        except Exception as err:
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": f"{self.registry.location} did not answer: {err}"
            }
        return None


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"
    #: seconds a connection may stay silent: a sender that stalls never holds a thread for long
    timeout = 30

    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            self._answer(HTTPStatus.OK, {"status": "ok"})
        else:
            self._answer(
                HTTPStatus.NOT_FOUND, {"error": f"no {self.path}; MLflow delivers to {WEBHOOK_PATH}"}
            )

    def do_POST(self) -> None:
        if self.path != WEBHOOK_PATH:
            self._answer(
                HTTPStatus.NOT_FOUND, {"error": f"no {self.path}; MLflow delivers to {WEBHOOK_PATH}"}
            )
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(HTTPStatus.BAD_REQUEST, {"error": f"Content-Length must be 0-{MAX_BODY_BYTES}"})
            return
        body = self.rfile.read(length)
        headers = {key: value for key, value in self.headers.items()}
        status, answer = self.server.receiver.receive(headers, body)
        self._answer(status, answer)

    def _answer(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


class WebhookServer(ThreadingHTTPServer):
    """A threaded HTTP server whose requests go to a :class:`WebhookReceiver`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: WebhookReceiver) -> None:
        super().__init__(address, _Handler)
        self.receiver = receiver
        # Each request's thread runs in a copy of the creator's context: Prefect's settings (the API to send
        # to) may live in a context variable there, and a bare thread would see the defaults instead.
        self._context = contextvars.copy_context()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        self._context.copy().run(super().process_request_thread, request, client_address)

    @property
    def url(self) -> str:
        """The URL to give MLflow (``http://HOST:PORT/mlflow``)."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{WEBHOOK_PATH}"


def make_server(
    registry: MlflowRegistry, secret: str, listen: tuple[str, int] = DEFAULT_LISTEN
) -> WebhookServer:
    """A receiver bound to ``listen`` (port 0: a free one); call ``serve_forever()`` on it.

    Parameters
    ----------
    registry : MlflowRegistry
    secret : str
    listen : tuple of (str, int)
        Address and port.

    Returns
    -------
    WebhookServer
    """
    return WebhookServer(listen, WebhookReceiver(registry, secret))


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as a tuple.

    Raises
    ------
    InvalidInputError
        Not ``HOST:PORT`` with a port 0-65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidInputError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8765.")
    return host.strip("[]"), int(port)


def ensure_webhook(
    registry: MlflowRegistry, url: str, secret: str, name: str = WEBHOOK_NAME
) -> tuple[str, str]:
    """Create the MLflow webhook for ``model_version.created`` at ``url``, or update the one named ``name``.

    Parameters
    ----------
    registry : MlflowRegistry
    url : str
        Where the receiver listens (``http://HOST:PORT/mlflow``).
    secret : str
        The shared secret the receiver verifies with.
    name : str
        The webhook's name on the server.

    Returns
    -------
    tuple of (str, str)
        ``("created" | "updated", webhook id)``.

    Raises
    ------
    InvalidInputError
        ``url`` is not http(s) or ``secret`` is empty.
    RegistryError
        The server refused or did not answer.
    """
    if not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"--url {url!r}: expected http(s)://HOST:PORT{WEBHOOK_PATH}.")
    if not secret:
        raise InvalidInputError(f"no webhook secret; set {SECRET_ENV} to a long random string.")
    client = registry.client

    def existing() -> list[Any]:
        hooks, token = [], None
        while True:
            page = client.list_webhooks(page_token=token)
            hooks.extend(page)
            token = getattr(page, "token", None)
            if not token:
                return [h for h in hooks if h.name == name]

    found = registry.call(f"listing the webhooks of {registry.location}", existing)
    fields = {"url": url, "events": [WEBHOOK_EVENT], "secret": secret, "status": "ACTIVE"}
    if found:
        hook = registry.call(
            f"updating webhook {name}",
            lambda: client.update_webhook(found[0].webhook_id, name=name, **fields),
        )
        return "updated", hook.webhook_id
    description = "Parity: validate each new model version (parity webhook serve)."
    hook = registry.call(
        f"creating webhook {name}",
        lambda: client.create_webhook(name=name, description=description, **fields),
    )
    return "created", hook.webhook_id
