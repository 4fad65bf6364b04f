"""What outlives the page: the kernel's watch on the page, live assistants side by side, a
collected widget, and errors that a changed setting mends (no kernel, no browser)."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ipywidgets.widgets import widget as ipywidget

from screenshare_widget import ScreenShareAssistant
from screenshare_widget import page as page_module
from screenshare_widget.backend import LiveError
from screenshare_widget.liveness import PageWatch
from screenshare_widget.relay import RelayState
from screenshare_widget.timings import Timings

from .conftest import wait_until
from .fakes import FakeBackend

#: The page timeout these tests use (s of the page watch's clock, which the tests move).
TIMEOUT_S = 10.0


#: The relay ticks (and checks the page watch) every 20 ms of real time.
TICKS = Timings(ack_interval_s=0.02)


class PageTime:
    """The page watch's clock (s), moved only by the test, and a count of the relay's ticks
    that checked the watch: a test waits for those, never for a fixed time."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.checks = 0
        self._running: Callable[[], bool] = lambda: True

    def __call__(self) -> float:
        return self.t

    def follow(self, w: ScreenShareAssistant) -> None:
        """Count each check of ``w``'s page watch (one per relay tick, while a session runs)."""
        link = w._page
        check = link.watch_page
        widget = weakref.ref(w)  # the clock must not keep a dropped widget alive
        self._running = lambda: (
            getattr(widget(), "status", "") in ("connecting", "live", "reconnecting")
        )

        def counted() -> None:
            check()
            self.checks += 1

        link.watch_page = counted  # type: ignore[method-assign]

    def ticks(self, count: int = 2) -> None:
        """Wait until the relay checked the watch ``count`` more times (it checks only while
        a session runs)."""
        until = self.checks + count
        wait_until(lambda: self.checks >= until, 5, f"{count} checks of the page watch")

    def passes(self) -> None:
        """Wait for the next check, or for the session to have ended."""
        until = self.checks + 1
        wait_until(lambda: self.checks >= until or not self._running(), 5, "a check")

    def advance(
        self, seconds: float, step: float = 1.0, each: Callable[[], None] | None = None
    ) -> None:
        """Move the clock ``seconds`` on, ``step`` at a time; after each step, run ``each``
        (a beat, say) and let a check see the time."""
        left = seconds
        while left > 1e-9:
            self.t += min(step, left)
            left -= step
            if each is not None:
                each()
            self.passes()


class PageSends:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.clock = PageTime()

    def __call__(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.sent.append(content)


def make(backend: FakeBackend, **kwargs: Any) -> tuple[ScreenShareAssistant, PageSends]:
    """An assistant whose page is played by the test; ``rec.clock`` is its watch's clock."""
    kwargs.setdefault("page_timeout_s", TIMEOUT_S)
    rec = PageSends()
    w = ScreenShareAssistant(
        _connector=backend.connect, _page_clock=rec.clock, _timings=TICKS, **kwargs
    )
    rec.clock.follow(w)
    w.send = rec  # type: ignore[method-assign]
    return w, rec


@pytest.fixture
def widget(backend: FakeBackend) -> Iterator[tuple[ScreenShareAssistant, PageSends]]:
    w, rec = make(backend)
    yield w, rec
    w.close()


def page(w: ScreenShareAssistant, content: dict[str, Any], buffers: list[bytes] | None = None):
    w._on_custom_message(w, content, buffers or [])


def beat(w: ScreenShareAssistant, capture: str = "", page_id: str = "p1") -> None:
    page(w, {"kind": "beat", "page": page_id, "capture": capture, "views": 1})


def keep_beating(
    w: ScreenShareAssistant, rec: PageSends, seconds: float, capture: str = "", **kw: Any
) -> None:
    """The page beats every 2 s of the watch's clock, for ``seconds`` of it."""
    rec.clock.advance(seconds, 2.0, lambda: beat(w, capture, **kw))


# ---- the watch itself (pure) -----------------------------------------------------------------


def test_a_watch_ends_a_session_whose_owner_went_silent() -> None:
    watch = PageWatch(10.0)
    watch.own(0.0, "cap")
    watch.session_started(0.0)
    watch.heard(4.0, "cap")
    assert not watch.check(5.0)
    assert not watch.check(13.9)  # 9.9 s since the owner was heard
    assert watch.check(14.1)
    assert watch.silent_s == pytest.approx(10.1)
    assert not watch.armed and not watch.check(30.0)  # it fires once


def test_only_the_owners_capture_keeps_the_session() -> None:
    watch = PageWatch(10.0)
    watch.own(0.0, "cap")
    watch.session_started(0.0)
    for t in range(1, 10):
        watch.heard(float(t), "")  # another page's beats, or the same page without capture
        assert not watch.check(float(t))
    assert watch.check(10.5)


def test_deaf_time_is_not_silence() -> None:
    watch = PageWatch(10.0)
    watch.own(0.0, "cap")
    watch.session_started(0.0)
    assert not watch.check(5.0)
    for t in range(6, 60):  # a cell holds the thread that hears the page for 54 s
        assert not watch.check(float(t), deaf=True)
    assert not watch.check(63.0)  # 5 + 4 s counted
    assert watch.check(64.5)


def test_a_session_started_from_python_is_watched_only_with_a_page_about() -> None:
    headless = PageWatch(10.0)
    headless.session_started(100.0)
    assert not headless.armed and not headless.check(1000.0)

    watch = PageWatch(10.0)
    watch.heard(95.0)
    watch.session_started(100.0)  # from Python: any page counts
    assert watch.armed and watch.owner is None
    watch.heard(104.0, "")
    assert not watch.check(110.0)
    assert watch.check(114.5)


def test_an_owner_from_an_earlier_session_does_not_carry_over() -> None:
    watch = PageWatch(10.0)
    watch.own(0.0, "old")
    watch.session_started(0.0)
    watch.session_ended()
    watch.heard(50.0)
    watch.session_started(51.0)  # from Python, later
    assert watch.owner is None
    with pytest.raises(ValueError, match="must be positive"):
        PageWatch(0)


def test_a_share_that_joins_a_running_session_owns_it() -> None:
    watch = PageWatch(10.0)
    watch.session_started(0.0)  # from Python, before any page was heard from
    assert not watch.armed
    watch.own(5.0, "cap")  # the user shares into it
    assert watch.armed and watch.owner == "cap"
    watch.heard(8.0, "cap")
    assert not watch.check(17.0)
    assert watch.check(18.5)


def test_a_page_that_appears_arms_a_session_from_python() -> None:
    watch = PageWatch(10.0)
    watch.session_started(0.0)
    assert not watch.armed
    watch.heard(30.0)  # the widget is displayed: its page beats
    assert watch.armed
    assert not watch.check(39.0)
    assert watch.check(40.5)
    watch.heard(41.0)  # once lost, it stays lost for this session
    assert not watch.armed


def test_a_session_from_python_after_a_share_has_no_owner() -> None:
    watch = PageWatch(10.0)
    watch.heard(0.0)
    watch.session_started(0.0)
    watch.own(1.0, "cap")
    watch.session_ended()  # the page's Stop
    watch.heard(20.0, "")  # the page, idle, beats on
    watch.session_started(21.0)  # ask() from Python
    assert watch.owner is None and watch.armed
    watch.heard(29.0, "")
    assert not watch.check(35.0)


# ---- the widget: the session belongs to a live page -----------------------------------------


def test_a_session_whose_page_went_silent_ends_and_says_why(widget, backend) -> None:
    w, rec = widget
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "live")
    rec.clock.advance(TIMEOUT_S - 0.5)
    rec.clock.ticks(2)
    assert w.status == "live"  # silent, not yet for long enough
    rec.clock.advance(1.0)
    wait_until(lambda: w.status == "idle", 5, "the session to end")
    assert backend.sessions[0].closed
    assert w.error.startswith("The page sharing with this assistant was not heard from for")
    lost = [e for e in w.events if e.kind == "page_lost"]
    assert len(lost) == 1 and lost[0].detail["silent_s"] >= TIMEOUT_S
    assert any(m["kind"] == "stop" and m["reason"] == w.error for m in rec.sent)
    # A page that comes back can share again: the error goes with the new session.
    page(w, {"kind": "start", "capture": "c2"})
    wait_until(lambda: w.status == "live")
    assert w.error == ""


def test_beats_and_media_of_the_owner_keep_the_session(widget, backend) -> None:
    w, rec = widget
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "live")
    keep_beating(w, rec, 3 * TIMEOUT_S, capture="c1")
    assert w.status == "live"
    seq = iter(range(1_000))

    def chunk() -> None:  # a page that sends only audio is there too
        page(w, {"kind": "audio", "capture": "c1", "seq": next(seq)}, [b"\0\0" * 160])

    rec.clock.advance(3 * TIMEOUT_S, 0.5, chunk)
    assert w.status == "live"
    assert not [e for e in w.events if e.kind == "page_lost"]


def test_another_page_without_the_capture_does_not_keep_it(widget, backend) -> None:
    w, rec = widget
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "live")
    # The page that shared closed; a reopened notebook beats, sharing nothing.
    keep_beating(w, rec, TIMEOUT_S + 2.0, capture="", page_id="reopened")
    wait_until(lambda: w.status == "idle", 5, "the session to end")
    assert "The page sharing with this assistant was not heard from" in w.error


def test_a_session_from_python_with_no_page_is_not_watched(widget, backend) -> None:
    w, rec = widget
    w.start()
    wait_until(lambda: w.status == "live")
    rec.clock.advance(3 * TIMEOUT_S, 2.0)
    assert w.status == "live" and w.error == ""


def test_a_session_from_python_ends_when_the_page_about_goes(widget, backend) -> None:
    w, rec = widget
    beat(w)
    w.say("hello")
    wait_until(lambda: w.status == "live")
    keep_beating(w, rec, 3 * TIMEOUT_S)
    assert w.status == "live"
    rec.clock.advance(TIMEOUT_S + 1.0, 2.0)  # the page went
    wait_until(lambda: w.status == "idle", 5, "the session to end")
    assert w.error.startswith("No page of this assistant was heard from for")


def test_a_cell_holding_the_pages_thread_is_not_the_pages_silence(backend) -> None:
    """The page's messages handled on a loop (the kernel's main loop without subshells) that a
    blocking cell holds: they queue; the session must outlive the cell."""
    w, rec = make(backend)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-shell", daemon=True)
    thread.start()

    async def deliver(content: dict[str, Any]) -> None:
        page(w, content)

    try:
        asyncio.run_coroutine_threadsafe(deliver({"kind": "start", "capture": "c1"}), loop)
        wait_until(lambda: w.status == "live")
        held, cell_ends = threading.Event(), threading.Event()
        loop.call_soon_threadsafe(lambda: (held.set(), cell_ends.wait(30)))
        held.wait(5)
        rec.clock.advance(3 * TIMEOUT_S, 0.5)  # the cell runs; the page's beats queue
        assert w.status == "live", w.error
        # The cell ends; the page is really gone: the session ends once the silence counts.
        cell_ends.set()
        rec.clock.advance(TIMEOUT_S + 1.0, 0.5)
        wait_until(lambda: w.status == "idle", 5, "the session to end after the cell")
    finally:
        cell_ends.set()
        w.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_running_cell_that_holds_the_pages_messages_is_not_silence(widget, backend) -> None:
    """ipykernel 6, or comm subshells off: the page's messages wait until the cell ends,
    even one that awaits (``await assistant.ask(...)``) with the loop free."""
    w, rec = widget
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "live")
    rec.clock.advance(0.5)
    page_module.CELLS.running_since = rec.clock.t  # a cell begins, after the page's last word
    try:
        rec.clock.advance(4 * TIMEOUT_S, 2.0)
        assert w.status == "live", w.error
    finally:
        page_module.CELLS.running_since = None  # it ends: the page's silence counts now
    rec.clock.advance(TIMEOUT_S + 1.0, 2.0)
    wait_until(lambda: w.status == "idle", 5, "the session to end after the cell")


def test_every_ending_is_an_event_and_a_page_that_opens_later_hears_it(widget, backend) -> None:
    w, rec = widget
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "live")
    page(w, {"kind": "stop", "reason": "The page was closed, so sharing stopped.", "capture": "c1"})
    wait_until(lambda: w.status == "idle")
    page(w, {"kind": "hello"})  # the page reloaded
    snapshot = rec.sent[-1]
    assert snapshot["kind"] == "snapshot"
    assert snapshot["ended"] == "The page was closed, so sharing stopped."
    w.start()
    wait_until(lambda: w.status == "live")
    page(w, {"kind": "hello"})
    assert rec.sent[-1]["ended"] == ""  # nothing ended: a session runs
    w.stop()
    stopped = [dict(e.detail) for e in w.events if e.kind == "stopped"]
    assert stopped == [
        {"by": "page", "reason": "The page was closed, so sharing stopped."},
        {"by": "python", "reason": "Stopped from Python (assistant.stop())."},
    ]


def test_a_stop_from_a_stale_capture_is_ignored(widget, backend) -> None:
    w, rec = widget
    page(w, {"kind": "start", "capture": "old"})
    wait_until(lambda: w.status == "live")
    page(w, {"kind": "start", "capture": "new"})  # sharing moved to another window
    assert {"kind": "capture", "capture": "new"} in rec.sent
    page(w, {"kind": "stop", "reason": "No view", "capture": "old"})
    rec.clock.ticks(2)  # a stop taken would have ended the session, and the ticks
    assert w.status == "live" and w.rejected_messages == 1
    page(w, {"kind": "stop", "reason": "Stopped by the user.", "capture": "new"})
    wait_until(lambda: w.status == "idle")


# ---- several assistants, a collected one ------------------------------------------------------


def test_each_live_assistant_says_how_many_others_are_live(backend) -> None:
    first, _ = make(backend)
    second, _ = make(backend)
    try:
        first.start()
        wait_until(lambda: first.status == "live")
        assert (first.others_live, second.others_live) == (0, 0)
        second.start()
        wait_until(lambda: second.status == "live")
        wait_until(lambda: (first.others_live, second.others_live) == (1, 1))
        first.stop()
        wait_until(lambda: (first.others_live, second.others_live) == (0, 0))
        first.start()
        wait_until(lambda: (first.others_live, second.others_live) == (1, 1))
        second.close()
        assert first.others_live == 0
    finally:
        first.close()
        second.close()


def test_a_share_into_a_session_from_python_is_watched(widget, backend) -> None:
    w, rec = widget
    w.start()  # before any page was heard from: not watched
    wait_until(lambda: w.status == "live")
    page(w, {"kind": "start", "capture": "c1"})  # the user shares into it, then closes the tab
    rec.clock.advance(TIMEOUT_S + 1.0, 2.0)
    wait_until(lambda: w.status == "idle", 5, "the session to end")
    assert "The page sharing with this assistant" in w.error


def test_a_question_from_python_after_a_share_is_not_cut_by_the_old_page(widget, backend) -> None:
    w, rec = widget
    beat(w)
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "live")
    page(w, {"kind": "stop", "reason": "Stopped by the user.", "capture": "c1"})
    wait_until(lambda: w.status == "idle")
    w.say("and now from Python")
    wait_until(lambda: w.status == "live")
    keep_beating(w, rec, 3 * TIMEOUT_S)  # the page, idle, is there
    assert w.status == "live", w.error


def test_a_collected_assistant_ends_its_session(backend) -> None:
    w, _ = make(backend)
    w.start()
    relay = w._relay
    wait_until(lambda: relay.state is RelayState.LIVE)
    thread = relay._thread
    assert thread is not None
    ref = weakref.ref(w)
    # A host that lets go of a widget (ipywidgets and the comm manager hold every widget until
    # it is closed; marimo re-runs cells): nothing of ours may keep it, or its session, alive.
    ipywidget._instances.pop(w.model_id, None)
    w.comm.on_msg(None)
    del w
    for _ in range(3):
        gc.collect()
    assert ref() is None, gc.get_referrers(ref()) if ref() else None
    wait_until(lambda: backend.sessions[0].closed, 5, "the session to close")
    thread.join(10)
    assert not thread.is_alive()
    assert relay.state is RelayState.IDLE


def test_a_collected_assistant_no_longer_counts_as_live(backend) -> None:
    survivor, _ = make(backend)
    try:
        survivor.start()
        gone, _ = make(backend)
        gone.start()
        wait_until(lambda: survivor.others_live == 1)
        ipywidget._instances.pop(gone.model_id, None)
        gone.comm.on_msg(None)
        del gone
        gc.collect()
        wait_until(lambda: survivor.others_live == 0, 5, "the survivor to count again")
    finally:
        survivor.close()


# ---- errors that a changed setting mends ------------------------------------------------------


def test_an_unknown_model_error_goes_when_the_model_is_changed(widget, backend) -> None:
    w, rec = widget
    message = "The model x is not available for the Live API (1008): pass model=..."
    backend.fail_connects = [LiveError(message, code=1008, fatal=True, blames=("model",))]
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "error")
    assert w.error == message
    w.voice = "Kore"  # not what the error blames
    assert w.error == message
    w.model = "gemini-live-2.5-flash-native-audio"
    wait_until(lambda: w.status == "idle")
    assert w.error == ""


def test_an_error_not_about_settings_stays(widget, backend) -> None:
    w, _ = widget
    message = "API key not valid: set GEMINI_API_KEY or pass client=."
    backend.fail_connects = [LiveError(message, code=1007, fatal=True)]
    page(w, {"kind": "start", "capture": "c1"})
    wait_until(lambda: w.status == "error")
    w.model = "gemini-live-2.5-flash-native-audio"
    for _ in range(3):  # a stop scheduled on the relay's loop would have run by now
        w._relay.run_coroutine(asyncio.sleep(0)).result(5)
    assert w.status == "error" and w.error == message
