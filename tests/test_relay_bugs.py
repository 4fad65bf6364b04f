"""The relay bugs the review found (issue 13), each through the facade, each failing on
the relay before the fix: stops cut short that raise, tools that hang the close, task
exceptions that vanish, a callback per chunk while the loop stalls, idle scheduling from
the next connection's model, and unbounded usage."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from screenshare_widget import gemini
from screenshare_widget.backend import ServerMessage, ToolCall, Usage
from screenshare_widget.config import SessionConfig
from screenshare_widget.relay import Relay, RelayState
from screenshare_widget.tools import Toolbox

from .conftest import wait_until
from .fakes import FakeBackend, FakeSession, RecordingSink, live, push

#: Usage reports listed at most (session_log.MAX_USAGE_KEPT).
USAGE_KEPT = 2_000


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
