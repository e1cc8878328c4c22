"""Announcing an MLflow model version to Prefect, once: the webhook receiver and the poller share this.

An announcement is the ``parity.model.registered`` event with the registry's URI as its ``registry`` and
:func:`~parity.registry.events.registered_event_id` as its id (every repeat of it is the same event to
Prefect), followed by the tag ``parity.announced = "<event id> <UTC time>"`` on the version. The tag tells
the poller the version was announced; one older than :data:`LOST_AFTER` without a verdict counts as lost and
is announced again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from .events import REGISTERED, model_resource, registered_event_id, registered_payload, send_event
from .mlflow import TAG_ANNOUNCED, TAG_VERDICT, MlflowRegistry
from .store import ModelRef

#: An announcement without a verdict this long after it counts as lost (its run crashed, or no deployment
#: listened): longer than a validation takes, and beyond Prefect's ~30-minute memory of seen event ids, so
#: the repeat (with the same id) starts a run again.
LOST_AFTER = timedelta(hours=1)


def announced_tag(event_id: str, when: datetime) -> str:
    """The value of ``parity.announced``: the event id and the UTC time, separated by a space."""
    return f"{event_id} {when.astimezone(UTC).isoformat(timespec='seconds')}"


def announced_at(tags: Mapping[str, str]) -> datetime | None:
    """When the version was last announced, from its tags (None: never, or a tag Parity cannot read)."""
    _, _, when = tags.get(TAG_ANNOUNCED, "").partition(" ")
    try:
        stamp = datetime.fromisoformat(when.strip())
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def needs_announcing(tags: Mapping[str, str], now: datetime | None = None) -> bool:
    """Whether a version with these tags still waits for an announcement.

    Parameters
    ----------
    tags : mapping
        The version's tags.
    now : datetime, optional
        The current time (default: now, UTC).

    Returns
    -------
    bool
        False when it has a verdict or a recent announcement (younger than :data:`LOST_AFTER`).
    """
    if TAG_VERDICT in tags:
        return False
    when = announced_at(tags)
    return when is None or (now or datetime.now(UTC)) - when >= LOST_AFTER


def announce(registry: MlflowRegistry, ref: ModelRef) -> str:
    """Send ``parity.model.registered`` for ``ref`` with its deterministic id, then tag it announced.

    Parameters
    ----------
    registry : MlflowRegistry
    ref : ModelRef

    Returns
    -------
    str
        The event id (the same for every announcement of this version).

    Raises
    ------
    TimeoutError, Exception
        Prefect did not take the event (see :func:`~parity.registry.events.send_event`); nothing is tagged.
    RegistryError
        The event was sent but the tag could not be written (the poller may send it again: harmless).
    """
    event_id = registered_event_id(registry.location, ref.name, ref.version)
    payload = registered_payload(ref.name, ref.version, registry.location)
    sent = send_event(REGISTERED, model_resource(ref.name, ref.version), payload.to_json(), event_id=event_id)
    registry.set_tags(ref, {TAG_ANNOUNCED: announced_tag(sent, datetime.now(UTC))})
    return sent


def require_mlflow(registry: str) -> MlflowRegistry:
    """The MLflow registry ``registry`` names.

    Raises
    ------
    InvalidInputError
        ``registry`` is a folder or another kind: only MLflow registries are announced this way.
    """
    from parity.core.errors import InvalidInputError

    from .registries import open_registry

    opened = open_registry(registry)
    if not isinstance(opened, MlflowRegistry):
        raise InvalidInputError(
            f"registry {registry!r} is not an MLflow registry: expected mlflow+http://HOST:PORT. A file "
            "registry announces its versions itself when they are registered, and the nightly sweep "
            "(deployment nightly-sweep) validates any it missed."
        )
    return opened
