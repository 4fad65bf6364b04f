"""Shared test helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from screenshare_widget.relay import Relay

    from .fakes import FakeBackend, RecordingSink

#: One millisecond, for readable timeouts.
MS = 0.001


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until it is truthy; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(10 * MS)
    pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")


@pytest.fixture
def backend() -> FakeBackend:
    """A fake Live backend whose connections the test scripts."""
    from .fakes import FakeBackend

    return FakeBackend()


@pytest.fixture
def sink() -> RecordingSink:
    """A relay sink that records every call."""
    from .fakes import RecordingSink

    return RecordingSink()


@pytest.fixture
def relay(backend: FakeBackend, sink: RecordingSink) -> Iterator[Relay]:
    """A relay on the fake backend, closed after the test."""
    from screenshare_widget.config import SessionConfig
    from screenshare_widget.relay import Relay

    r = Relay(backend.connect, SessionConfig(), sink, name="test-relay")
    yield r
    r.close()
