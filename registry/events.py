"""Prefect events about registered models: what training code (or the registry) tells the orchestrator.

The event a registration emits, and that the event-triggered deployment listens for::

    event    = "parity.model.registered"
    resource = {"prefect.resource.id": "parity.model.<name>.<version>",
                "prefect.resource.name": "<name>:<version>",
                "parity.model.name": "<name>", "parity.model.version": "<version>"}
    payload  = {"schema": 1, "name": "<name>", "version": <int>,
                "registry": "<absolute registry path, or the registry's URI (mlflow+http://host:port)>"}

(the payload is :class:`parity.core.records.RegisteredPayload`, sent as its JSON).

Training code that registers models by other means can emit the same event with :func:`emit_registered`
(or ``prefect.events.emit_event`` with the fields above). An announcement that may be repeated (an MLflow
webhook that is retried, a webhook and the poller both seeing one version) carries
:func:`registered_event_id`, so that Prefect's trigger service acts on it once. Nothing is sent unless a Prefect API is
configured (``PREFECT_API_URL``): a registration never starts a temporary server just to announce itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parity.core.records import RegisteredPayload

from .schemes import is_uri

REGISTERED = "parity.model.registered"
#: How long a registration waits for the Prefect server to take its event before giving up with a warning.
#: The events client's own steps are bounded by 10 s windows (websockets' ``open_timeout`` for each of the
#: :data:`EMIT_CONNECT_ATTEMPTS` connection attempts, then the close handshake) plus an HTTP version check,
#: so a busy server needs room for several of them: the old 15 s was missed on a 2-core machine at load 10
#: (issue 9). A dead API is not waited for: its connection is refused at once.
EMIT_TIMEOUT_SECONDS = 60.0
#: Connection attempts of the events client (Prefect's default is 10, with a 1 s pause after the third):
#: two ride out one slow handshake without stretching a registration against an API that is down.
EMIT_CONNECT_ATTEMPTS = 2

logger = logging.getLogger("parity.events")


def model_resource(name: str, version: int) -> dict[str, str]:
    """The Prefect resource of one model version (labels are strings, as Prefect requires)."""
    return {
        "prefect.resource.id": f"parity.model.{name}.{version}",
        "prefect.resource.name": f"{name}:{version}",
        "parity.model.name": name,
        "parity.model.version": str(version),
    }


#: The namespace of :func:`registered_event_id` (a uuid5 of its own: ids no other event can have).
REGISTERED_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "parity:" + REGISTERED)


def registered_payload(name: str, version: int, registry: str | os.PathLike[str]) -> RegisteredPayload:
    """The payload of ``parity.model.registered``: what the triggered flow needs to find the model.

    A folder is sent as an absolute path; a registry URI (``mlflow+http://...``) as it is.
    """
    where = str(registry) if is_uri(str(registry)) else str(Path(registry).resolve())
    return RegisteredPayload(name=name, version=int(version), registry=where)


def registered_event_id(registry_location: str, name: str, version: int) -> uuid.UUID:
    """The one event id of the announcement of a version: the same for every repeat of it.

    Prefect's trigger service skips an event id it has seen (``event_has_been_seen``, remembered for about 30
    minutes), so a webhook that MLflow retries, or a version both the webhook and the poller announce,
    starts one validation.

    Parameters
    ----------
    registry_location : str
        The registry's :attr:`~parity.registry.registries.Registry.location` (``mlflow+http://host:port``).
    name, version : the model version

    Returns
    -------
    uuid.UUID
        A uuid5, deterministic in its three arguments.
    """
    return uuid.uuid5(REGISTERED_NAMESPACE, f"{registry_location}\n{name}\n{int(version)}")


def prefect_api_url() -> str | None:
    """The configured Prefect API, or None (then Parity emits nothing)."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def send_event(
    event: str,
    resource: Mapping[str, str],
    payload: Mapping[str, Any],
    timeout: float = EMIT_TIMEOUT_SECONDS,
    event_id: uuid.UUID | None = None,
) -> str:
    """Send one event to the configured Prefect API and wait until it is sent.

    Unlike ``prefect.events.emit_event``, which queues the event for a background worker, this returns
    only once the server took the event, so a short-lived process (``parity register``) cannot exit
    before it is out.

    Parameters
    ----------
    event : str
        The event name, e.g. ``parity.model.registered``.
    resource : mapping
        The Prefect resource (``prefect.resource.id`` and labels).
    payload : mapping
        JSON-serialisable event data.
    timeout : float
        Seconds to wait for the server.
    event_id : uuid.UUID, optional
        The event's id (default: a new one); repeats of one announcement share it (see
        :func:`registered_event_id`).

    Returns
    -------
    str
        The event's id.

    Raises
    ------
    TimeoutError
        The server did not take the event within ``timeout`` seconds.
    Exception
        Whatever the Prefect events client raised (no API configured, connection refused...).
    """
    from prefect.events import Event, Resource
    from prefect.events.clients import get_events_client

    message = Event(event=event, resource=Resource(dict(resource)), payload=dict(payload))
    if event_id is not None:
        message = message.model_copy(update={"id": event_id})

    async def _send() -> None:
        async with get_events_client(reconnection_attempts=EMIT_CONNECT_ATTEMPTS - 1) as client:
            await client.emit(message)

    outcome: dict[str, BaseException] = {}

    def _run() -> None:  # a thread of its own: the caller may already be inside an event loop
        try:
            asyncio.run(_send())
        except BaseException as err:
            outcome["error"] = err

    # The thread runs in a copy of the caller's context: Prefect's settings live in a context variable, and a
    # bare thread would see the defaults instead (no API: an ephemeral server of its own, not the caller's).
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(_run,), name="parity-event", daemon=True
    )
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"the Prefect API did not take event {event} within {timeout:.0f} s.")
    if "error" in outcome:
        raise outcome["error"]
    return str(message.id)


def emit_registered(
    name: str, version: int, registry: str | os.PathLike[str], event_id: uuid.UUID | None = None
) -> str | None:
    """Announce a registered model version as ``parity.model.registered``, when a Prefect API is configured.

    Never raises: a registration is complete whether or not anyone heard about it, so a failure to send is
    logged as a warning naming the command that re-sends it.

    Parameters
    ----------
    name, version : the registered model version
    registry : path-like or str
        The registry holding it (a folder is sent as an absolute path, a URI as it is: the triggered flow
        reads the version from there).
    event_id : uuid.UUID, optional
        The event's id (default: a new one; see :func:`registered_event_id`).

    Returns
    -------
    str or None
        The event id, or None when nothing was sent (no API configured, or sending failed).
    """
    try:
        if prefect_api_url() is None:
            return None
        return send_event(
            REGISTERED,
            model_resource(name, version),
            registered_payload(name, version, registry).to_json(),
            event_id=event_id,
        )
    except Exception as err:
        logger.warning(
            "%s:%s is registered, but the %s event was not sent (%s: %s). Validate it with "
            "`parity run --model %s:%s`, or re-send the event from Python with "
            "parity.registry.events.emit_registered(%r, %s, %r).",
            name,
            version,
            REGISTERED,
            type(err).__name__,
            err,
            name,
            version,
            name,
            version,
            str(registry),
        )
        return None
