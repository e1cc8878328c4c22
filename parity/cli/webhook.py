"""``parity webhook``: receive the MLflow Model Registry's webhooks (``serve``), and create the webhook at the
MLflow server that delivers to the receiver (``create``). Both take the shared secret from
``PARITY_MLFLOW_WEBHOOK_SECRET``: a secret on the command line would end up in shell histories and ``ps``."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from parity.core.errors import EnvironmentProblem, InvalidInputError

from .exits import EXIT_OK

WebhookRegistryOption = Annotated[
    str,
    typer.Option(
        "--registry",
        metavar="REGISTRY",
        help="the MLflow registry, mlflow+http://HOST:PORT (default: mlflow:, i.e. $MLFLOW_TRACKING_URI)",
    ),
]
SERVE_HELP = "receive MLflow's model_version.created webhooks and announce each version to Prefect"
CREATE_HELP = "create (or update) the MLflow webhook that delivers new versions to `parity webhook serve`"
GROUP_HELP = "MLflow registry webhooks: the receiver, and the webhook that calls it"


def _secret() -> str:
    from parity.registry.mlflow_webhook import SECRET_ENV

    secret = os.environ.get(SECRET_ENV, "")
    if not secret.strip():
        raise InvalidInputError(
            f"{SECRET_ENV} is not set: the webhook's deliveries are verified with a shared secret. Set it to a "
            f"long random string (e.g. `export {SECRET_ENV}=$(openssl rand -hex 32)`), the same for "
            "`parity webhook create` and `parity webhook serve`."
        )
    return secret


def serve_webhook(
    registry: WebhookRegistryOption = "mlflow:",
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT", help="where to listen (default: 127.0.0.1:8765)")
    ] = "127.0.0.1:8765",
) -> int:
    """Serve ``POST /mlflow`` (and ``GET /health``) until interrupted.

    Returns
    -------
    int
        ``EXIT_OK`` once interrupted.

    Raises
    ------
    InvalidInputError
        No secret, a registry that is not MLflow's, or a bad ``--listen``.
    EnvironmentProblem
        No Prefect API is configured, or the address cannot be listened on.
    """
    secret = _secret()
    from parity.core.prefect_env import configure

    configure()  # defaults for Prefect itself, set before it is first imported (it freezes them then)
    from parity.registry.events import prefect_api_url
    from parity.registry.mlflow_announce import require_mlflow
    from parity.registry.mlflow_webhook import make_server, parse_listen

    store, address = require_mlflow(registry), parse_listen(listen)
    if prefect_api_url() is None:
        raise EnvironmentProblem(
            "no Prefect API is configured, so there is nobody to announce versions to. Set PREFECT_API_URL "
            "(e.g. `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`) and start again."
        )
    try:
        server = make_server(store, secret, address)
    except OSError as err:
        raise EnvironmentProblem(
            f"cannot listen on {listen}: {err.strerror}; pick another --listen."
        ) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"listening on {server.url} for webhooks of {store.location} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


def create_webhook(
    url: Annotated[
        str,
        typer.Option(
            "--url", metavar="URL", help="where `parity webhook serve` listens: http://HOST:PORT/mlflow"
        ),
    ],
    registry: WebhookRegistryOption = "mlflow:",
) -> int:
    """Create the webhook, or update the one Parity created before (idempotent).

    Returns
    -------
    int
        ``EXIT_OK``.

    Raises
    ------
    InvalidInputError
        No secret, a registry that is not MLflow's, or a URL that is not http(s).
    RegistryError
        The MLflow server refused the webhook or did not answer.
    """
    secret = _secret()
    from parity.registry.mlflow_announce import require_mlflow
    from parity.registry.mlflow_webhook import WEBHOOK_EVENT, WEBHOOK_NAME, ensure_webhook

    store = require_mlflow(registry)
    action, webhook_id = ensure_webhook(store, url, secret)
    print(f"{action} webhook {WEBHOOK_NAME} ({webhook_id}) on {store.location}: {WEBHOOK_EVENT} -> {url}")
    return EXIT_OK
