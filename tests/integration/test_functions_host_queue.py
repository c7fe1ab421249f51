"""Functions dev host, queue triggers: base64, dequeue count, visibility timeout, `<queue>-poison`."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from localdev.azurite import Azurite
from tests.integration.functions_host_support import b64, make_app, running_host, unb64, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def queue(azurite: Azurite, name: str) -> QueueClient:
    return QueueClient.from_connection_string(azurite.connection_string, name)


def peek(client: QueueClient) -> list[str]:
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    except Exception:
        return []


def test_queue_host(azurite: Azurite, tmp_path: Path) -> None:
    work, bad = unique("work"), unique("bad")
    app = make_app(tmp_path, "queueapp", azurite, {"WORK_QUEUE": work, "BAD_QUEUE": bad})
    work_q, bad_q = queue(azurite, work), queue(azurite, bad)
    work_q.create_queue()
    bad_q.create_queue()
    with running_host(app, tmp_path / "host.log", host_id=f"queuetest-{uuid.uuid4().hex[:6]}"):
        sent = work_q.send_message(b64("hello"))
        work_q.send_message("this is not base64!")
        bad_q.send_message(b64("doomed"))

        [got] = wait_for(lambda: app.records("on_message"))
        assert got["body"] == "hello"
        assert got["id"] == sent.id
        assert got["dequeue_count"] == 1
        assert got["pop_receipt"]
        assert got["inserted"]
        assert got["expires"]
        assert [unb64(m) for m in wait_for(lambda: peek(queue(azurite, f"{work}-out")))] == ["done:hello"]

        # The message that is not base64 fails binding 3 times (maxDequeueCount), then is poisoned as-is.
        assert wait_for(lambda: peek(queue(azurite, f"{work}-poison")), timeout=20) == ["this is not base64!"]
        # The failing function: tries 1..3, visibilityTimeout (2 s) apart, then a copy in bad-poison.
        assert [unb64(m) for m in wait_for(lambda: peek(queue(azurite, f"{bad}-poison")), timeout=20)] == ["doomed"]
        assert peek(work_q) == []
        assert peek(bad_q) == []

    assert len(app.records("on_message")) == 1, "a processed message ran again"
    tries = app.records("always_fails")
    assert [t["dequeue_count"] for t in tries] == [1, 2, 3]
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(tries)]
    assert all(gap >= 1.8 for gap in gaps), f"retried before visibilityTimeout: {gaps}"
    log = (tmp_path / "host.log").read_text()
    assert log.count("Executed 'Functions.on_message' (Failed") == 3
    assert "not valid base64" in log
    assert "ValueError: this message is never good enough" in log
