"""The relay bugs the review found (issue 13), each through the facade, each failing on
the relay before the fix: stops cut short that raise, tools that hang the close, task
exceptions that vanish, a callback per chunk while the loop stalls, idle scheduling from
the next connection's model, unbounded usage, commands whose failures vanished, a restart
on a loop still ending, and an inbox left waiting for a drain the old loop dropped."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from screenshare_widget import gemini
from screenshare_widget.backend import LiveError, ServerMessage, ToolCall, Usage
from screenshare_widget.config import SessionConfig
from screenshare_widget.relay import Relay, RelayState
from screenshare_widget.timings import Timings
from screenshare_widget.tools import Toolbox

from .conftest import wait_until
from .fakes import FakeBackend, FakeSession, RecordingSink, closing_after, live, push, timed

#: Usage reports listed at most (session_log.MAX_USAGE_KEPT).
USAGE_KEPT = 2_000


def sink_of(relay: Relay) -> RecordingSink:
    sink = relay._sink
    assert isinstance(sink, RecordingSink)
    return sink


def tool_relay(backend: FakeBackend, *functions: Callable[..., Any], model: str = "") -> Relay:
    config = SessionConfig(model=model) if model else SessionConfig()
    toolbox = Toolbox(list(functions), declare=gemini.declare)
    return Relay(backend.connect, config, RecordingSink(), name="test-relay", toolbox=toolbox)


def test_a_stop_cut_short_by_the_loop_is_no_error(
    relay: Relay, backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() from another thread cancels a stop still waiting: ``stop()`` gets a
    *concurrent.futures* CancelledError, which is not asyncio's."""
    live(relay, backend)

    async def cut_short() -> None:
        raise asyncio.CancelledError  # as the loop's close cancels what still runs

    monkeypatch.setattr(relay.conversation, "stop", cut_short)
    relay.stop()  # returns: no exception


def test_a_tool_that_ignores_cancellation_does_not_hang_the_stop(backend: FakeBackend) -> None:
    release = threading.Event()

    async def stubborn() -> str:
        """Waits, and ignores being cancelled."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.to_thread(release.wait, 30)
        return "late"

    relay = tool_relay(backend, stubborn)
    try:
        session = live(relay, backend)
        push(relay, session, ServerMessage(tool_calls=(ToolCall("c1", "stubborn", {}),)))
        wait_until(lambda: relay.tool_calls)
        began = time.monotonic()
        relay.stop()
        assert relay.state is RelayState.IDLE  # not stuck in CLOSING
        assert time.monotonic() - began < 4.0  # the tool's cleanup is bounded
    finally:
        release.set()
        relay.close()


def test_a_tool_task_that_fails_is_recorded_not_lost(backend: FakeBackend) -> None:
    class BrokenAnswers(FakeSession):
        async def send_tool_response(self, *args: object, **kwargs: object) -> None:
            raise KeyError("a bug in the adapter")

    def lookup() -> str:
        """Looks something up."""
        return "found"

    backend.session_type = BrokenAnswers
    relay = tool_relay(backend, lookup)
    try:
        session = live(relay, backend)
        push(relay, session, ServerMessage(tool_calls=(ToolCall("c1", "lookup", {}),)))
        wait_until(lambda: any(e.kind == "task_failed" for e in relay.events), 3)
        failed = next(e for e in relay.events if e.kind == "task_failed")
        assert failed.detail["task"] == "relay.tool.lookup"
        assert "KeyError" in str(failed.detail["error"])
    finally:
        relay.close()


def test_chunks_fed_while_the_loop_is_busy_take_one_callback(
    relay: Relay, backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = live(relay, backend)
    loop = relay._loop
    assert loop is not None
    scheduled: list[object] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Callable[..., object], *args: Any, **kwargs: Any) -> asyncio.Handle:
        scheduled.append(callback)
        return original(callback, *args, **kwargs)

    gate = threading.Event()
    assert relay.call_soon(lambda: gate.wait(5) and None)  # the loop is stuck in a callback
    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    chunks = [bytes([i]) * 1280 for i in range(20)]
    for chunk in chunks:
        relay.feed_audio(chunk)
    waiting = len(scheduled)
    gate.set()
    wait_until(lambda: len(session.audio) == len(chunks))
    assert session.audio == chunks
    assert waiting == 1, f"{waiting} callbacks queued on a stalled loop for {len(chunks)} chunks"


def test_a_tool_answer_is_scheduled_as_the_live_connections_model_allows(
    backend: FakeBackend,
) -> None:
    """``when_idle`` follows the model of the connection the call came on, not the model
    the settings now name for the next connection."""

    def lookup() -> str:
        """Looks something up."""
        return "found"

    relay = tool_relay(backend, lookup, model="gemini-3.8-live")  # async tools
    try:
        session = live(relay, backend)
        relay.config = dataclasses.replace(relay.config, model="gemini-3.1-flash-live-preview")
        push(relay, session, ServerMessage(tool_calls=(ToolCall("c1", "lookup", {}),)))
        wait_until(lambda: session.tool_responses)
        (_, _, _, when_idle) = session.tool_responses[0]
        assert when_idle is True
    finally:
        relay.close()


def test_usage_stays_bounded_with_exact_totals(relay: Relay, backend: FakeBackend) -> None:
    session = live(relay, backend)
    n = USAGE_KEPT + 200
    for _ in range(n):
        push(relay, session, ServerMessage(usage=Usage(10, 5, 15, {"prompt:AUDIO": 10})))
    wait_until(lambda: sum(1 for e in relay.events if e.kind == "usage") >= n, 20)
    assert len(relay.usage) <= USAGE_KEPT
    assert sum(u.total_tokens for u in relay.usage) == 15 * n
    assert sum(u.by_modality["prompt:AUDIO"] for u in relay.usage) == 10 * n


@timed(max_pending_texts=2)
def test_a_text_refused_on_the_loop_reaches_the_user_as_an_error(
    relay: Relay, backend: FakeBackend, sink: RecordingSink
) -> None:
    """Each text passes the caller's check while the loop is busy; the loop refuses the
    third: that refusal is an error the user sees, not a future nobody reads."""
    live(relay, backend)
    gate = threading.Event()
    assert relay.call_soon(lambda: gate.wait(5) and None)  # the loop is busy
    futures = [relay.say(f"text {i}") for i in range(3)]  # nobody reads these futures
    gate.set()
    with pytest.raises(RuntimeError, match="2 texts already wait"):
        futures[2].result(5)
    wait_until(lambda: "2 texts already wait" in relay.error, 3, "the refusal in relay.error")
    assert any("2 texts already wait" in error for _, error in sink.states)
    assert relay.state is RelayState.LIVE


def test_a_start_that_fails_on_the_loop_is_logged_and_reported(
    relay: Relay,
    sink: RecordingSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug in start")

    monkeypatch.setattr(relay.conversation, "start", broken)
    relay.start()  # returns at once; the failure comes on the loop
    wait_until(lambda: "a bug in start" in relay.error, 3, "the failure in relay.error")
    assert any("a bug in start" in error for _, error in sink.states)
    assert "a bug in start" in caplog.text


def test_a_start_right_after_a_close_that_did_not_wait_runs_on_one_loop(
    backend: FakeBackend,
) -> None:
    # The old loop is still closing when start() comes.
    slow_close = closing_after(backend, lambda: asyncio.sleep(0.3))
    relay = Relay(slow_close, SessionConfig(), RecordingSink(), name="test-relay")
    try:
        first = live(relay, backend)
        old = relay._thread
        relay.close(wait=False)
        second = live(relay, backend, count=2)
        assert old is not None and not old.is_alive()  # it ended before the new loop began
        assert first.closed
        chunk = b"\x01\x00" * 640
        relay.feed_audio(chunk)
        wait_until(lambda: second.audio == [chunk], 3, "the audio on the new connection")
        assert relay.state is RelayState.LIVE
    finally:
        relay.close()


def test_a_drain_the_old_loop_dropped_does_not_block_the_next_loops_inbox(
    relay: Relay, backend: FakeBackend
) -> None:
    live(relay, backend)
    # A drain scheduled in the old loop's last tick, which loop.close() then dropped:
    relay._audio_in.put((b"\x02\x00" * 8, 0.0), lambda drain: True)
    relay.close()
    session = live(relay, backend, count=2)
    chunk = b"\x01\x00" * 640
    relay.feed_audio(chunk)
    wait_until(lambda: session.audio == [chunk], 3, "the audio on the new loop")


def test_handovers_and_tool_calls_stay_bounded_through_the_relay(backend: FakeBackend) -> None:
    def lookup() -> str:
        """Looks something up."""
        return "found"

    timings = Timings(
        backoff_first_s=0.01,
        backoff_max_s=0.02,
        max_reconnects=50,
        max_handovers_kept=3,
        max_tool_calls_kept=4,
    )
    toolbox = Toolbox([lookup], declare=gemini.declare)
    relay = Relay(
        backend.connect, SessionConfig(), RecordingSink(), toolbox=toolbox, timings=timings
    )
    try:
        session = live(relay, backend)
        for i in range(6):
            push(relay, session, ServerMessage(tool_calls=(ToolCall(f"c{i}", "lookup", {}),)))
        wait_until(lambda: len(session.tool_responses) == 6, 5, "six tool answers")
        for count in range(2, 7):
            push(relay, session, LiveError("dropped", code=1006, fatal=False))
            session = live(relay, backend, count=count)
        relay.feed_audio(b"\x01\x00" * 640)  # the last handover ends with the first audio
        wait_until(lambda: len(sink_of(relay).handovers) == 5, 5, "five handovers")
        assert len(relay.handovers) == 3
        assert list(relay.handovers) == sink_of(relay).handovers[-3:]
        assert [call.id for call in relay.tool_calls] == ["c2", "c3", "c4", "c5"]
        assert {index for index, _ in sink_of(relay).tools} == set(range(6))
    finally:
        relay.close()
