"""The widget's comm side: trait writes from other threads, the budget from two threads."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

import pytest
import traitlets

from screenshare_widget import ScreenShareAssistant
from screenshare_widget import page as page_module
from screenshare_widget import widget as widget_module
from screenshare_widget.backend import Usage
from screenshare_widget.page import PageSink, UiMirror
from screenshare_widget.session_log import Window
from screenshare_widget.tools import ToolActivity

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


#: The two ways a page's change reaches the kernel: our page's ``set`` message, and the
#: widget state update of a page that writes traits itself (ipywidgets' ``update``).
PAGE_WRITES = {
    "set message": lambda w: w._handle_custom_msg(
        {"kind": "set", "name": "video_paused", "value": True}, []
    ),
    "state update": lambda w: w._handle_msg(
        {"content": {"data": {"method": "update", "state": {"video_paused": True},
                              "buffer_paths": []}}, "buffers": []}
    ),
}  # fmt: skip


@pytest.mark.parametrize("how", list(PAGE_WRITES))
def test_a_users_invalid_value_raises_in_their_thread_while_the_page_writes(
    widget: ScreenShareAssistant, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The comm thread is held in the middle of writing the page's video_paused=True; the
    user's invalid max_fps meanwhile raises in the user's thread, and the page's change
    stands (not rolled back, no error on the comm thread)."""
    w = widget
    writing, user_done = threading.Event(), threading.Event()
    set_trait = w.set_trait

    def held_write(name: str, value: Any) -> None:
        set_trait(name, value)
        if name == "video_paused":
            writing.set()
            user_done.wait(5)

    w.set_trait = held_write  # type: ignore[method-assign]
    comm_thread = threading.Thread(target=PAGE_WRITES[how], args=(w,))
    with caplog.at_level(logging.WARNING, logger="screenshare_widget"):
        comm_thread.start()
        try:
            assert writing.wait(5), "the page's change was never written"
            with pytest.raises(traitlets.TraitError, match="max_fps must be"):
                w.max_fps = 2.0
            assert w.max_fps == 1.0 and w.video_paused is True
        finally:
            user_done.set()
            comm_thread.join(5)
    assert not comm_thread.is_alive()
    assert (w.max_fps, w.video_paused) == (1.0, True)
    assert caplog.records == [], "an error on the comm thread"


def test_a_page_may_change_only_its_own_traits(
    widget: ScreenShareAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """A state update or ``set`` for any other trait, or of the wrong type, is refused and
    counted; the traits stay as they were."""
    w = widget
    with caplog.at_level(logging.WARNING, logger="screenshare_widget"):
        w._handle_msg(
            {"content": {"data": {"method": "update", "state": {"status": "live"},
                                  "buffer_paths": []}}, "buffers": []}
        )  # fmt: skip
        w._handle_custom_msg({"kind": "set", "name": "max_fps", "value": 0.5}, [])
        w._handle_custom_msg({"kind": "set", "name": "video_paused", "value": "yes"}, [])
    assert (w.status, w.max_fps, w.video_paused) == ("idle", 1.0, False)
    assert w._page.rejected == 3
    assert "may not set the trait 'status'" in caplog.text
    # The page's instruction box: applied like an assignment from Python.
    w._handle_custom_msg({"kind": "set", "name": "system_instruction", "value": "Be brief."}, [])
    assert w.system_instruction == "Be brief." and w.instruction_version == 2


def _state_update(name: str, value: Any) -> dict[str, Any]:
    """ipywidgets' ``update`` of trait ``name``, as a page that writes traits itself sends."""
    return {"content": {"data": {"method": "update", "state": {name: value},
                                 "buffer_paths": []}}, "buffers": []}  # fmt: skip


@pytest.mark.parametrize("how", ["set message", "state update"])
def test_the_page_sets_the_volume_and_mute_as_python_does(
    widget: ScreenShareAssistant, how: str
) -> None:
    w = widget

    def from_page(name: str, value: Any) -> None:
        if how == "set message":
            w._handle_custom_msg({"kind": "set", "name": name, "value": value}, [])
        else:
            w._handle_msg(_state_update(name, value))

    from_page("volume", 0.3)
    from_page("muted", True)
    assert (w.volume, w.muted) == (0.3, True)
    from_page("volume", 0)  # the slider's end: a JSON 0, an int
    from_page("muted", False)
    assert (w.volume, w.muted) == (0.0, False) and type(w.volume) is float
    assert (w._page.rejected, w.error) == (0, "")


def test_a_bad_volume_from_the_page_is_refused_clearly_and_the_session_goes_on(
    widget: ScreenShareAssistant, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of range: refused by the trait, and the cell says so; not a number (or not a
    bool for mute): refused as a malformed message. Nothing is clamped, nothing stops."""
    w = widget
    w._handle_custom_msg({"kind": "start"}, [])
    wait_until(lambda: w.status == "live", what="live")
    with caplog.at_level(logging.WARNING, logger="screenshare_widget"):
        w._handle_custom_msg({"kind": "set", "name": "volume", "value": 1.5}, [])
        assert w.error == (
            "The volume from the page was not applied: volume must be between 0 and 1 "
            "(a linear gain)"
        )
        for name, value in (("volume", "loud"), ("volume", True), ("muted", "yes")):
            w._handle_custom_msg({"kind": "set", "name": name, "value": value}, [])
    assert (w.volume, w.muted) == (1.0, False)
    assert w._page.rejected == 4
    assert "'volume' must be a finite number" in caplog.text
    assert "'muted' must be true or false" in caplog.text
    assert w.status == "live"
    w._handle_custom_msg({"kind": "audio", "seq": 0}, [b"\1\0" * 160])
    wait_until(lambda: backend.sessions[0].audio == [b"\1\0" * 160], what="audio relayed")


def test_devices_that_come_and_go_are_events_and_an_unplugged_mic_ends_the_audio(
    widget: ScreenShareAssistant, backend: FakeBackend
) -> None:
    """The page says a device came or went: each is an event in ``assistant.events``; an
    unplugged microphone also ends the audio stream (the service answers what was said so
    far); the session goes on. A stale view's, or a malformed one, is refused."""
    w = widget
    w._handle_custom_msg({"kind": "start", "capture": "c1"}, [])
    wait_until(lambda: w.status == "live", what="live")
    for what, label in [("screen_ended", "tab"), ("screen_shared", "window"),
                        ("mic_ended", "USB mic"), ("mic_changed", "Headset")]:  # fmt: skip
        w._handle_custom_msg({"kind": "device", "what": what, "label": label, "capture": "c1"}, [])
    wait_until(lambda: backend.sessions[0].audio_ended == 1, what="the audio stream's end")
    told = [(e.detail["change"], e.detail["label"]) for e in w.events if e.kind == "device"]
    assert told == [("screen_ended", "tab"), ("screen_shared", "window"),
                    ("mic_ended", "USB mic"), ("mic_changed", "Headset")]  # fmt: skip
    w._handle_custom_msg({"kind": "device", "what": "mic_ended", "capture": "old"}, [])
    w._handle_custom_msg({"kind": "device", "what": "unplugged", "capture": "c1"}, [])
    assert w._page.rejected == 2
    assert len([e for e in w.events if e.kind == "device"]) == 4
    assert w.status == "live" and backend.sessions[0].audio_ended == 1
    w._handle_custom_msg({"kind": "audio", "seq": 0, "capture": "c1"}, [b"\1\0" * 160])
    wait_until(lambda: backend.sessions[0].audio == [b"\1\0" * 160], what="audio relayed")


def test_a_value_a_trait_refuses_is_returned_not_logged(
    widget: ScreenShareAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    mirror = widget._ui
    with caplog.at_level(logging.WARNING, logger="screenshare_widget"):
        assert "max_fps must be" in mirror.set_checked("max_fps", 5.0)
        assert mirror.set_checked("max_fps", 0.5) == ""
    assert widget.max_fps == 0.5
    assert caplog.records == []


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


# ---- the live registry's locks ------------------------------------------------------------------


def _locked_elsewhere(lock: Any) -> bool:
    """Whether some thread holds ``lock`` (tried from a thread of its own, which a reentrant
    lock does not let in)."""
    taken: list[bool] = []

    def attempt() -> None:
        got = lock.acquire(blocking=False)
        if got:
            lock.release()
        taken.append(got)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(5)
    return taken == [False]


class _ProbeLock:
    """A mirror's lock that notes each time it is taken while its thread holds another
    probe, or while the registry's lock is held."""

    held = threading.local()

    def __init__(self, name: str, registry_lock: Any, notes: list[str]) -> None:
        self.name, self._registry_lock, self._notes = name, registry_lock, notes
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        mine: Counter[str] = self.held.__dict__.setdefault("locks", Counter())
        others = sorted(name for name, n in mine.items() if n and name != self.name)
        if others:
            self._notes.append(f"{self.name} taken holding {others}")
        if _locked_elsewhere(self._registry_lock):
            self._notes.append(f"{self.name} taken under the registry's lock")
        self._lock.acquire()
        mine[self.name] += 1

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.held.locks[self.name] -= 1
        self._lock.release()


class _Counted(traitlets.HasTraits):
    others_live = traitlets.Int(0)


def test_the_live_registry_never_writes_a_widget_under_its_lock() -> None:
    """A recount writes each widget's count after releasing the registry's lock, one
    widget's lock at a time: a thread holding a mirror's lock that then needs the registry's
    (a collection) cannot deadlock with it."""
    registry = page_module._LiveRegistry()
    notes: list[str] = []
    widgets = {name: _Counted() for name in ("a", "b")}
    mirrors = {name: UiMirror(cast(Any, w)) for name, w in widgets.items()}
    for name, mirror in mirrors.items():
        mirror.lock = _ProbeLock(name, registry._lock, notes)  # type: ignore[assignment]
    registry.update(mirrors["a"], True)
    registry.update(mirrors["b"], True)
    assert (widgets["a"].others_live, widgets["b"].others_live) == (1, 1)
    registry.update(mirrors["a"], False)
    assert (widgets["a"].others_live, widgets["b"].others_live) == (0, 0)
    assert notes == []


def test_a_collected_assistant_takes_no_lock_of_the_registry(
    widget: ScreenShareAssistant,
) -> None:
    """The collector may run a widget's finalizer on a thread that holds a mirror's lock
    while another thread is inside the registry: the finalizer must not wait for it."""
    held, done = threading.Event(), threading.Event()

    def hold_the_registry() -> None:
        with page_module.LIVE._lock:
            held.set()
            done.wait(5)

    holder = threading.Thread(target=hold_the_registry)
    holder.start()
    try:
        assert held.wait(5)
        finalizer = threading.Thread(target=widget_module._release, args=(widget._relay,))
        finalizer.start()
        finalizer.join(2)
        assert not finalizer.is_alive(), "the finalizer waited for the registry's lock"
    finally:
        done.set()
        holder.join(5)
        finalizer.join(5)


# ---- tool-call numbers ------------------------------------------------------------------------


class _PageTools:
    """A page's list of tool calls, kept as js/controller.js keeps it: a snapshot replaces
    it (numbered from 0), a ``tool`` message puts its call at ``index``."""

    def __init__(self) -> None:
        self.tools: list[dict[str, Any] | None] = []

    def __call__(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        if content["kind"] == "snapshot":
            self.tools = list(content["tools"])
        elif content["kind"] == "tool" and content["index"] >= 0:
            index = content["index"]
            self.tools += [None] * (index + 1 - len(self.tools))
            self.tools[index] = content["tool"]

    @property
    def shown(self) -> list[str]:
        """The ids and outcomes of the calls listed, in order (what view.js shows)."""
        return [f"{t['id']}:{t['outcome']}" for t in self.tools if t is not None]


def test_a_page_that_opens_after_the_window_moved_lists_each_call_once(
    widget: ScreenShareAssistant,
) -> None:
    """Five calls into a window of three: a page that opens then lists the three kept, and
    the relay's later messages (a kept call ending, a new call) land on the right entries,
    in that page and in one that opened earlier (every page gets every snapshot)."""
    w = widget
    calls: Window[ToolActivity] = Window(3)
    w._relay._log.tool_calls = calls
    early, late = _PageTools(), _PageTools()
    pages = [early]

    def send(content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        for page in pages:
            page(content, buffers)

    w.send = send  # type: ignore[method-assign]
    sink = PageSink()
    sink.bind(w._page)
    at = datetime.now(UTC)

    def call(n: int) -> None:
        number = calls.append(ToolActivity(f"c{n}", "look", {}, at))
        sink.on_tool(number, ToolActivity(f"c{n}", "look", {}, at))

    def finish(n: int) -> None:  # as dialogue.py ends a call, kept or not
        before = calls.get(n) or ToolActivity(f"c{n}", "look", {}, at)
        done = dataclasses.replace(before, outcome="ok")
        calls.replace(n, done)
        sink.on_tool(n, done)

    w._page.receive({"kind": "hello"}, [])
    for n in range(5):
        call(n)
    assert early.shown == [f"c{n}:running" for n in range(5)]
    pages.append(late)
    w._page.receive({"kind": "hello"}, [])  # the late page opens: both get its snapshot
    assert early.shown == late.shown == ["c2:running", "c3:running", "c4:running"]
    finish(4)
    call(5)
    finish(1)  # dropped from the window: no page lists it
    expected = ["c2:running", "c3:running", "c4:ok", "c5:running"]
    assert early.shown == late.shown == expected
    assert expected[-3:] == [f"{c.id}:{c.outcome}" for c in calls]
