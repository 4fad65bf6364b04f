"""The relay's loop thread: submit, call_soon, and a close that never hangs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from screenshare_widget.loop_thread import LoopThread

from .conftest import wait_until


def test_submit_runs_on_the_named_thread_and_call_soon_after_close_is_refused() -> None:
    host = LoopThread("test-loop")
    assert host.call_soon(lambda: None) is False  # not started

    async def where() -> str:
        return threading.current_thread().name

    assert host.submit(where()).result(2) == "test-loop"
    ran: list[int] = []
    assert host.call_soon(lambda: ran.append(1))
    wait_until(lambda: ran == [1])
    host.close()
    assert host.call_soon(lambda: ran.append(2)) is False
    assert ran == [1]
    host.close()  # idempotent


def test_close_runs_the_last_coroutine_and_cancels_what_is_left() -> None:
    host = LoopThread("test-loop")
    cancelled = threading.Event()
    finished = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def last() -> None:
        finished.set()

    host.submit(forever())
    host.close(last)
    assert finished.is_set() and cancelled.is_set()


def test_close_is_bounded_when_a_task_ignores_cancellation() -> None:
    host = LoopThread("test-loop")
    release = threading.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass  # ignores it, and goes on

    host.submit(stubborn())
    began = time.monotonic()
    host.close(timeout=0.5)
    assert time.monotonic() - began < 3.0
    release.set()


def alive(name: str) -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == name and thread.is_alive())


async def nothing() -> None:
    return None


def test_a_start_right_after_a_close_that_did_not_wait_waits_for_the_old_thread() -> None:
    """A second loop must not start while the first still runs: ``on_start`` renews what
    the old loop's tasks still use."""
    starts: list[int] = []
    host = LoopThread("test-restart", on_start=lambda: starts.append(alive("test-restart")))

    async def slow_last() -> None:
        await asyncio.sleep(0.3)

    host.submit(nothing()).result(2)
    host.close(slow_last, wait=False)
    host.submit(nothing()).result(5)
    assert starts == [1, 1], starts  # the old thread had ended when the new one began
    host.close()


def test_a_start_while_the_old_loop_cannot_end_in_time_is_a_clear_error() -> None:
    release = threading.Event()
    host = LoopThread("test-stuck", end_timeout_s=0.2)

    async def blocking_last() -> None:
        release.wait(5)  # blocks the old loop's thread

    host.submit(nothing()).result(2)
    host.close(blocking_last, wait=False)
    try:
        with pytest.raises(RuntimeError, match="has not ended"):
            host.ensure()
    finally:
        release.set()
    host.submit(nothing()).result(5)  # once it ended, a new loop starts
    assert alive("test-stuck") == 1
    host.close()
    assert alive("test-stuck") == 0
