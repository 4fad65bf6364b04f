"""The bounded buffers and the cross-thread inbox, each with its bound and policy."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest

from screenshare_widget.pumps import (
    FrameSlot,
    Inbox,
    MicBuffer,
    PendingText,
    TextQueue,
    ToolRunner,
    WaitingFrame,
    send_whole,
)


class Seen(logging.Handler):
    """Sets :attr:`seen` when a record whose message holds ``text`` is logged (on the loop)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_the_mic_buffer_drops_the_oldest_past_its_bound_never_the_newest() -> None:
    buffer = MicBuffer(limit_bytes=100)
    for i in range(5):
        buffer.put(bytes([i]) * 40, voiced=i % 2 == 1)
    assert buffer.size_bytes == 80 and buffer.dropped_bytes == 120
    assert buffer.take() == (bytes([3]) * 40, True)
    buffer.put_back(bytes([3]) * 40, True)  # a failed send goes first again
    assert buffer.take() == (bytes([3]) * 40, True)
    big = MicBuffer(limit_bytes=10)
    big.put(b"x" * 50, voiced=False)  # one chunk over the bound is still kept
    assert len(big) == 1 and big.dropped_bytes == 0


def test_the_frame_slot_keeps_the_latest_and_counts_the_rest() -> None:
    slot = FrameSlot()
    for i in range(3):
        slot.put(WaitingFrame(bytes([i]), 8, 4, seq=i))
    assert slot.superseded == 2
    frame = slot.take()
    assert frame is not None and frame.seq == 2
    assert slot.take() is None


def test_the_text_queue_refuses_past_its_bound() -> None:
    queue = TextQueue(limit=2)
    first, second = PendingText("a"), PendingText("b")
    queue.put(first)
    queue.put(second)
    with pytest.raises(RuntimeError, match="2 texts already wait"):
        queue.put(PendingText("c"))
    assert queue.first() is first
    queue.sent(second)  # not the first: nothing leaves
    assert len(queue) == 2
    queue.sent(first)
    assert queue.first() is second


def test_the_inbox_schedules_one_drain_however_many_items_come() -> None:
    taken: list[int] = []
    scheduled: list[Callable[[], None]] = []

    def schedule(fn: Callable[[], None]) -> bool:
        scheduled.append(fn)
        return True

    inbox: Inbox[int] = Inbox(taken.append)
    threads = [
        threading.Thread(target=lambda k=k: [inbox.put(k * 100 + i, schedule) for i in range(100)])
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(scheduled) == 1  # the loop was "busy": one callback for 400 items
    scheduled[0]()
    assert sorted(taken) == sorted(k * 100 + i for k in range(4) for i in range(100))
    for k in range(4):  # each thread's items in its order
        mine = [x for x in taken if x // 100 == k]
        assert mine == sorted(mine)
    inbox.put(7, schedule)  # after a drain, the next item schedules again
    assert len(scheduled) == 2


def test_the_inbox_drops_items_when_no_loop_takes_them() -> None:
    taken: list[int] = []
    inbox: Inbox[int] = Inbox(taken.append)
    assert inbox.put(1, lambda fn: False) is False
    calls: list[Callable[[], None]] = []
    assert inbox.put(2, lambda fn: calls.append(fn) or True) is True
    calls[0]()
    assert taken == [2]


async def test_tool_runner_bounds_a_tool_that_ignores_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: list[tuple[str, BaseException]] = []
    runner = ToolRunner(cancel_timeout_s=0.05, on_failure=lambda n, e: failures.append((n, e)))
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # ignores the cancellation

    runner.start("c1", stubborn(), "relay.tool.stubborn")
    task = runner.tasks["c1"]
    await asyncio.sleep(0)
    await asyncio.wait_for(runner.cancel_all("test"), 1.0)  # bounded: returns
    assert "ignored cancellation" in caplog.text and "relay.tool.stubborn" in caplog.text
    release.set()
    await asyncio.wait([task], timeout=1.0)  # the runner's callback came first
    assert failures == [] and len(runner) == 0


async def test_tool_runner_reports_a_task_that_failed() -> None:
    failures: list[tuple[str, BaseException]] = []
    runner = ToolRunner(cancel_timeout_s=1.0, on_failure=lambda n, e: failures.append((n, e)))

    async def broken() -> None:
        raise KeyError("bug")

    runner.start("c1", broken(), "relay.tool.broken")
    await asyncio.wait([runner.tasks["c1"]], timeout=1.0)  # the runner's callback came first
    assert [(name, type(exc)) for name, exc in failures] == [("relay.tool.broken", KeyError)]
    assert len(runner) == 0


def test_the_inbox_keeps_the_newest_past_its_bound_and_a_reset_forgets_a_lost_drain() -> None:
    taken: list[int] = []
    drains: list[Callable[[], None]] = []

    def schedule(fn: Callable[[], None]) -> bool:
        drains.append(fn)
        return True

    inbox: Inbox[int] = Inbox(taken.append, limit=3)
    for i in range(10):  # the loop is busy: they gather, past the bound the oldest go
        inbox.put(i, schedule)
    assert len(drains) == 1 and inbox.dropped == 7
    drains[0]()
    assert taken == [7, 8, 9]
    inbox.put(10, lambda fn: True)  # scheduled on a loop that closed before running it
    inbox.put(11, schedule)
    assert len(drains) == 1  # it still waits for the lost drain
    inbox.reset()  # a new loop
    inbox.put(12, schedule)
    assert len(drains) == 2
    drains[1]()
    assert taken == [7, 8, 9, 12]


async def test_a_send_abandoned_after_its_finish_timeout_logs_its_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    sent: list[int] = []

    async def slow_send() -> None:
        await release.wait()
        raise ConnectionResetError("the socket closed under the send")

    logged = Seen("a send abandoned at a handover failed")
    logging.getLogger("screenshare_widget.pumps").addHandler(logged)
    try:
        pump = asyncio.create_task(send_whole(slow_send(), lambda: sent.append(1), 0.01))
        await asyncio.sleep(0)  # the send is under way
        pump.cancel()  # a handover
        with pytest.raises(asyncio.CancelledError):
            await pump  # after the finish timeout: the send is abandoned
        assert not logged.seen.is_set()
        release.set()
        await asyncio.wait_for(logged.seen.wait(), 2.0)
    finally:
        logging.getLogger("screenshare_widget.pumps").removeHandler(logged)
    assert "ConnectionResetError" in caplog.text and sent == []
