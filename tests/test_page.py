"""The widget's comm side: trait writes from other threads, the budget from two threads."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import traitlets

from screenshare_widget import ScreenShareAssistant
from screenshare_widget.backend import Usage

from .conftest import wait_until
from .fakes import FakeBackend


@pytest.fixture
def widget(backend: FakeBackend) -> Iterator[ScreenShareAssistant]:
    w = ScreenShareAssistant(_connector=backend.connect)
    w.send = lambda *a, **k: None  # type: ignore[method-assign]
    yield w
    w.close()


def test_a_users_invalid_value_raises_in_their_thread_while_the_relay_writes(
    widget: ScreenShareAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay's thread is held in the middle of its write of status="connecting"; the
    user's invalid max_fps meanwhile raises in the user's thread and changes nothing, and
    the relay's writes all stand (none rolled back, no error on the relay's thread)."""
    w = widget
    writing, user_done = threading.Event(), threading.Event()
    set_trait = w.set_trait

    def held_write(name: str, value: Any) -> None:
        set_trait(name, value)
        if (name, value) == ("status", "connecting"):
            writing.set()
            user_done.wait(5)

    w.set_trait = held_write  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="screenshare_widget"):
        w.start()
        assert writing.wait(5), "the relay never wrote its status"
        try:
            with pytest.raises(traitlets.TraitError, match="max_fps must be above 0"):
                w.max_fps = 2.0
            assert w.max_fps == 1.0 and w.status == "connecting"
        finally:
            user_done.set()
        wait_until(lambda: w.status == "live", what="the relay's later writes")
    assert w.max_fps == 1.0
    assert caplog.records == [], "an error on the relay's thread"


class _RacingSet(set[str]):
    """The guard's steps taken: the first look-up of "lower_fps" by each of two threads
    meets the other's at a barrier, so that both look before either adds (when nothing
    orders them)."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2)

    def __contains__(self, item: object) -> bool:
        found = super().__contains__(item)
        if item == "lower_fps":
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait(0.5)
        return found


def test_the_budget_takes_a_step_once_when_two_threads_report_at_once(
    widget: ScreenShareAssistant,
) -> None:
    """The relay's thread (a usage report) and the user's (new prices) take the budget's
    steps at the same moment: the frame rate is lowered once, and said once."""
    w = widget
    w.budget_tokens = 1000
    w._budget.guard.taken = _RacingSet()
    w._relay.usage.append(Usage(600, 0, 600))  # 60 %: time to lower the frame rate
    threads = [threading.Thread(target=w._update_spend) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    steps = [e.detail["step"] for e in w.events if e.kind == "budget"]
    assert steps == ["lower_fps"]
    assert w.max_fps == 0.2
    w.budget_tokens = 0  # a new budget undoes the step it took, back to what was set
    assert w.max_fps == 1.0
