"""Running an emulator on a loop of its own, in a daemon thread, for synchronous callers.

Internal module. :class:`ThreadHost` starts a server's ``start()`` coroutine on a new loop
in a named daemon thread, blocks until it listens (re-raising a startup failure), and on
:meth:`ThreadHost.stop` runs its ``aclose()`` there and waits, bounded, for the thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class ThreadHost:
    """One server's thread and loop: ``start`` and ``aclose`` run there, nowhere else."""

    def __init__(
        self,
        start: Callable[[], Awaitable[None]],
        aclose: Callable[[], Awaitable[None]],
        *,
        name: str,
        start_timeout_s: float,
        stop_timeout_s: float,
    ) -> None:
        self._start, self._aclose = start, aclose
        self._name = name
        self._start_timeout_s, self._stop_timeout_s = start_timeout_s, stop_timeout_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread and wait (at most ``start_timeout_s``) for the server to listen.

        Idempotent while the thread lives; re-raises what ``start()`` raised."""
        with self._lock:
            if self.running:
                return
            ready = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._main, args=(ready, failure), name=self._name, daemon=True
            )
            thread.start()
            if not ready.wait(self._start_timeout_s):
                raise RuntimeError("the Live emulator did not start in time")
            if failure:
                thread.join(self._stop_timeout_s)
                raise failure[0]
            self._thread = thread

    def _main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self._start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await self._aclose()

        try:
            asyncio.run(main())
        finally:
            self._loop = None
            self._stop = None

    def stop(self) -> None:
        """Close the server on its loop and wait at most ``stop_timeout_s`` for the thread.

        From any thread (from the server's own, it does not wait). Idempotent."""
        with self._lock:
            thread, loop, event = self._thread, self._loop, self._stop
            self._thread = None
        if thread is None:
            return
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop already closed
                pass
        if threading.current_thread() is not thread:
            thread.join(self._stop_timeout_s)
            if thread.is_alive():
                logger.warning("Live emulator thread did not stop in %.0f s", self._stop_timeout_s)
