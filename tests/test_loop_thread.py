"""The relay's loop thread: submit, call_soon, and a close that never hangs."""

from __future__ import annotations

import asyncio
import threading
import time

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
