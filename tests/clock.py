"""A fake clock for conversation tests: virtual time that moves only when the test says.

:class:`FakeClock` implements :class:`screenshare_widget.timings.Clock`. ``sleep`` waits
until :meth:`FakeClock.advance` moves the virtual time past its deadline; ``advance`` runs
the loop until it is idle between deadlines, so a chain of sleeps (a backoff, then a
connection, then a keepalive) unfolds in order within one call, and no test sleeps a fixed
real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

#: Loop iterations that count as "the loop is idle" (every ready callback ran).
SETTLE_ROUNDS = 50
#: The wall time at virtual time 0.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """Virtual seconds since the test began; :meth:`now` is :data:`EPOCH` plus them."""

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + max(0.0, seconds), next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """Sleeps waiting (cancelled ones included until their deadline)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def settle(self) -> None:
        """Let every task run until it waits for something (time, or another event)."""
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleep at its deadline in order and
        letting the loop settle after each."""
        target = self.t + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, deadline)
            if not future.done():
                future.set_result(None)
            await self.settle()
        self.t = target
        await self.settle()
