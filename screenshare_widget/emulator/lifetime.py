"""What the emulator does to a live connection on a clock: its lifetime, ``{}`` and timed faults.

Internal module. Each function runs as one named task beside a connection's reader (see
:meth:`LiveEmulator._serve`) and counts from the connection's ``setupComplete``:

- :func:`supervise` enforces the :class:`Lifetimes`: ``goAway`` ahead of the connection's
  end, then the close at the end; the audio+video session limit, which ends the session. It
  sleeps between deadlines, so it is on time whatever the client does. With
  :attr:`Realism.service_lifetimes`, ``timeLeft`` is whole seconds and the end closes 1011
  "Deadline expired before operation could complete." (R5, R6).
- :func:`send_empty` sends ``{}`` every few seconds (R1).
- :func:`inject` applies a timed :class:`Fault` (drop, close or stall).

Cancelling any of them (the reader ended) stops it at once; nothing is left to undo.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .connection import EmulatorConnection
from .faults import Fault
from .realism import Realism
from .sessions import (
    CLOSE_AV_LIMIT,
    CLOSE_DEADLINE,
    CLOSE_LIFETIME,
    REASON_AV_LIMIT,
    REASON_DEADLINE,
    REASON_LIFETIME,
    Lifetimes,
    SessionStore,
    duration_string,
    whole_seconds_string,
)
from .traffic import Traffic
from .wire import pick

logger = logging.getLogger(__name__)


@dataclass
class _Plan:
    """One connection's deadlines (the loop's ``time()``); ``go_away`` is cleared once sent."""

    end: float | None
    go_away: float | None
    av_limit_s: float | None
    time_left: Callable[[float], str]
    end_close: tuple[int, str]


def _plan(
    conn: EmulatorConnection, limits: Lifetimes, realism: Realism, start: float
) -> _Plan | None:
    """The deadlines of ``conn`` from its ``setupComplete`` at ``start``; None: no limit."""
    service = realism.service_lifetimes
    end_close = (CLOSE_DEADLINE, REASON_DEADLINE) if service else (CLOSE_LIFETIME, REASON_LIFETIME)
    av_limit = limits.av_limit_s
    if av_limit is not None and pick(conn.setup, "context_window_compression") is not None:
        av_limit = None  # compression lifts the limit
    if limits.connection_s is None and av_limit is None:
        return None
    lead = limits.go_away_lead_s()
    end = start + limits.connection_s if limits.connection_s is not None else None
    return _Plan(
        end=end,
        go_away=end - lead if end is not None and lead is not None else None,
        av_limit_s=av_limit,
        time_left=whole_seconds_string if service else duration_string,
        end_close=end_close,
    )


async def supervise(
    conn: EmulatorConnection, sessions: SessionStore, limits: Lifetimes, realism: Realism
) -> None:
    """Enforce ``limits`` on ``conn`` until it ends or no deadline is left."""
    start = await conn.wait_setup_complete()
    sessions.start(conn.session, conn.index, start)
    plan = _plan(conn, limits, realism, start)
    if plan is None:
        return
    av_seen = asyncio.ensure_future(conn.wait_audio_and_video()) if plan.av_limit_s else None
    try:
        while await _step(conn, sessions, plan, av_seen):
            pass
    finally:
        if av_seen is not None:
            av_seen.cancel()


async def _step(
    conn: EmulatorConnection,
    sessions: SessionStore,
    plan: _Plan,
    av_seen: asyncio.Future[None] | None,
) -> bool:
    """Act on what is due, else wait for the next deadline; False when nothing is left."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    deadlines: list[float] = []
    if plan.av_limit_s is not None and av_seen is not None and av_seen.done():
        left = plan.av_limit_s - conn.session.time_s(now)
        if left <= 0:
            logger.info("connection %d: session limit reached", conn.index)
            sessions.end_session(conn.session)
            await conn.close(CLOSE_AV_LIMIT, REASON_AV_LIMIT)
            return False
        deadlines.append(now + left)
    if plan.go_away is not None:
        if now >= plan.go_away:
            assert plan.end is not None
            await conn.go_away(plan.time_left(plan.end - loop.time()))
            plan.go_away = None
            return True
        deadlines.append(plan.go_away)
    if plan.end is not None:
        if now >= plan.end:
            logger.info("connection %d: lifetime reached", conn.index)
            await conn.close(*plan.end_close)
            return False
        deadlines.append(plan.end)
    return await _wait(deadlines, av_seen)


async def _wait(deadlines: list[float], av_seen: asyncio.Future[None] | None) -> bool:
    """Sleep to the first deadline, or less if audio and video are first seen meanwhile."""
    loop = asyncio.get_running_loop()
    waiting = av_seen if av_seen is not None and not av_seen.done() else None
    timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
    if waiting is None:
        if timeout is None:
            return False
        await asyncio.sleep(timeout)
    else:
        await asyncio.wait([waiting], timeout=timeout)
    return True


async def send_empty(conn: EmulatorConnection, every_s: float) -> None:
    """Send ``{}`` every ``every_s`` seconds from ``setupComplete`` on (R1)."""
    start = await conn.wait_setup_complete()
    loop = asyncio.get_running_loop()
    ticks = 0
    while True:
        ticks += 1
        await asyncio.sleep(max(0.0, start + ticks * every_s - loop.time()))
        await conn.send({})


async def inject(conn: EmulatorConnection, fault: Fault, traffic: Traffic) -> None:
    """Apply a drop, close or stall ``fault.after_s`` after ``setupComplete``."""
    loop = asyncio.get_running_loop()
    start = await conn.wait_setup_complete()
    delay = start + fault.after_s - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
    logger.info("connection %d: injecting a %s fault", conn.index, fault.kind)
    traffic.add_fault(conn.index, fault.kind)
    if fault.kind == "drop":
        conn.abort()
    elif fault.kind == "close":
        await conn.close(fault.code, fault.reason)
    elif fault.kind == "stall":
        await conn.stall(fault.duration_s)
