"""Shared test helpers."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

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
