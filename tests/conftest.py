"""Shared test helpers, and the order the suite runs in: cheapest first.

Every test belongs to one tier, cheapest to most real (STYLE.md habit 14):

0. ``unit``: plain data, pure functions, the relay on a fake session and a fake clock;
1. ``emulator``: the real ``google-genai`` SDK against the local Live emulator, on loopback;
2. ``kernel``: a real Jupyter kernel driven through ``jupyter_client``;
3. ``browser``: JupyterLab (or a static harness) in Debian's chromium through Playwright.

A module's tier comes from its marks, or else from :data:`EMULATOR_MODULES`; the hook below
adds the ``emulator`` mark to those modules and runs the tiers in that order (``slow`` tests
last within their tier), so ``-m "not emulator and not kernel and not browser"`` is the quick
loop and a failure in a cheap test shows before the browser starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from screenshare_widget.relay import Relay
    from screenshare_widget.timings import Timings

    from .fakes import FakeBackend, RecordingSink

#: Modules whose tests talk to the local Live emulator through the real SDK (tier 1).
EMULATOR_MODULES: frozenset[str] = frozenset(
    {
        "test_compare",
        "test_emulator",
        "test_emulator_faults",
        "test_emulator_realism",
        "test_faults",
        "test_gemini",
        "test_long_session",
        "test_real_service",
        "test_relay_real_service",
        "test_smoke",
    }
)

#: The tiers by mark, cheapest first; an unmarked test is tier 0.
TIERS: tuple[str, ...] = ("emulator", "kernel", "browser")


def _tier(item: pytest.Item) -> tuple[int, int]:
    marks = {mark.name for mark in item.iter_markers()}
    tier = max((TIERS.index(name) + 1 for name in marks & set(TIERS)), default=0)
    return tier, int("slow" in marks)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the emulator modules, then sort the tests cheapest first (a stable sort: within
    a tier, tests keep their file order, so module and package fixtures are set up once)."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rsplit(".", 1)[-1] in EMULATOR_MODULES:
            item.add_marker(pytest.mark.emulator)
    items.sort(key=_tier)


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
def timings() -> Timings | None:
    """The relay fixture's timings: None for the defaults; a test changes them with
    ``@pytest.mark.parametrize("timings", [Timings(backoff_first_s=0.01)])``."""
    return None


@pytest.fixture
def relay(backend: FakeBackend, sink: RecordingSink, timings: Timings | None) -> Iterator[Relay]:
    """A relay on the fake backend (with ``timings``), closed after the test."""
    from screenshare_widget.config import SessionConfig
    from screenshare_widget.relay import Relay

    r = Relay(backend.connect, SessionConfig(), sink, name="test-relay", timings=timings)
    yield r
    r.close()
