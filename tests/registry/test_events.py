"""The registration event against an API that is down: no wait for the send window, a warning that says
how to re-send, and the registration itself untouched."""

from __future__ import annotations

import logging
import socket

import pytest

from parity.registry.events import EMIT_CONNECT_ATTEMPTS, EMIT_TIMEOUT_SECONDS, emit_registered


@pytest.fixture
def dead_api_url():
    """A Prefect API URL on a loopback port that is bound but never listens: connections are refused."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/api"
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url


def test_a_dead_api_is_refused_not_waited_for(dead_api_url, tmp_path, caplog):
    # The URL reaches the sending thread through the caller's context (temporary_settings is a context
    # variable): a bare thread saw no API and sent the event to an ephemeral server of its own, "successfully".
    with caplog.at_level(logging.WARNING, logger="parity.events"):
        assert emit_registered("churn", 3, tmp_path / "registry") is None

    (record,) = [r for r in caplog.records if r.name == "parity.events"]
    message = record.getMessage()
    assert message.startswith("churn:3 is registered, but the parity.model.registered event was not sent")
    # refused by the dead port, not given up on after the send window: a refused connection is not retried
    # until the window ends
    assert "TimeoutError" not in message and f"within {EMIT_TIMEOUT_SECONDS:.0f} s" not in message
    assert "`parity run --model churn:3`" in message
    assert f"emit_registered('churn', 3, {str(tmp_path / 'registry')!r})" in message


def test_the_send_window_leaves_room_for_every_connection_attempt():
    # websockets gives each attempt 10 s to open; the window must not end inside the last attempt
    assert EMIT_TIMEOUT_SECONDS > 10 * EMIT_CONNECT_ATTEMPTS + 10
