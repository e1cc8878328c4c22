"""Reading Parity's outgoing events back through the Prefect client, for the tests that check them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


async def read_events(client, name: str, since: datetime) -> list:
    """Events called ``name`` that occurred since ``since`` (at most 50)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    page = await client.read_events(
        filter=EventFilter(
            event=EventNameFilter(name=[name]),
            occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(minutes=1)),
        ),
        limit=50,
    )
    return page.events
