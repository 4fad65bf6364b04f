"""One daemon thread running one asyncio loop, with a bounded close.

Internal module. The relay's conversation runs on a :class:`LoopThread` so it goes on
while a notebook cell is busy. The thread starts on the first :meth:`LoopThread.submit`
(or :meth:`LoopThread.ensure`); :meth:`LoopThread.close` runs a last coroutine, cancels
whatever is left, closes the loop and joins the thread, all within its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_T = TypeVar("_T")


class LoopThread:
    """A daemon thread named ``name`` and its asyncio loop. Safe from any thread.

    ``on_start`` runs on the thread, with its new loop set, before anything else: after a
    :meth:`close`, the next :meth:`ensure` starts a new thread and loop."""

    def __init__(
        self, name: str, on_start: Callable[[], None] | None = None, *, end_timeout_s: float = 10.0
    ) -> None:
        self.name = name
        self._on_start = on_start
        self._end_timeout_s = end_timeout_s
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._ending: threading.Thread | None = None  # the thread of the loop closed last

    def ensure(self) -> asyncio.AbstractEventLoop:
        """The running loop, starting the thread if there is none. After a :meth:`close`
        that did not wait (or timed out), the old thread is waited for first, at most
        ``end_timeout_s``: two loops never run at once. ``RuntimeError`` if it is still
        running then."""
        with self._lock:
            if self.loop is not None:
                return self.loop
            self._wait_for_the_last()
            ready = threading.Event()
            loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(loop)
                if self._on_start is not None:
                    self._on_start()
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    _cancel_all(loop)
                    loop.close()

            thread = threading.Thread(target=run, name=self.name, daemon=True)
            thread.start()
            ready.wait()
            self.loop, self.thread = loop, thread
            return loop

    def _wait_for_the_last(self) -> None:
        """Wait (lock held) until the thread of the loop closed last ended, at most
        ``end_timeout_s``: its tasks still use what ``on_start`` renews."""
        last = self._ending
        if last is None:
            return
        if last is threading.current_thread():
            raise RuntimeError(f"the {self.name} loop is closing: start again from elsewhere")
        last.join(self._end_timeout_s)
        if last.is_alive():
            raise RuntimeError(
                f"the {self.name} thread has not ended {self._end_timeout_s:g} s after its "
                "close (a task ignores cancellation): try again later"
            )
        self._ending = None

    def submit(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        """Run ``coro`` on the loop (starting the thread if needed); its future. When no
        loop can start (:meth:`ensure` raises), ``coro`` is closed and the error raised."""
        try:
            loop = self.ensure()
        except RuntimeError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call_soon(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` soon on the loop (it must not block); False, and nothing runs, when
        the loop is not running or closed."""
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return False
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    @property
    def on_thread(self) -> bool:
        """Whether the caller runs on this thread."""
        return threading.current_thread() is self.thread

    def close(
        self,
        last: Callable[[], Coroutine[Any, Any, None]] | None = None,
        *,
        wait: bool = True,
        timeout: float = 10.0,
    ) -> None:
        """Run ``last()`` (if given) on the loop, then stop it: whatever still runs is
        cancelled and the loop closed. With ``wait`` (off the loop's thread), block until
        the thread ended, at most ``timeout`` seconds (a task that ignores cancellation is
        left to the daemon thread, with a warning). Idempotent."""
        with self._lock:
            loop, thread = self.loop, self.thread
            if thread is not None:
                self._ending = thread
            self.loop = self.thread = None
        if loop is None or thread is None:
            return

        async def finish() -> None:
            try:
                if last is not None:
                    await last()
            finally:
                loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(finish(), loop)
        except RuntimeError:  # the loop already closed
            return
        if wait and threading.current_thread() is not thread:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("the %s thread did not end within %g s", self.name, timeout)


def _cancel_all(loop: asyncio.AbstractEventLoop, timeout: float = 5.0) -> None:
    """Cancel every task left on ``loop`` and let them end, at most ``timeout`` seconds."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(TimeoutError):
            loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
