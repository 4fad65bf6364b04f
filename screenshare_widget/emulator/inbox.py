"""The unread client messages of one emulator connection, for its script to take.

Internal module. The connection's reader puts every parsed client message in an
:class:`Inbox`; a script takes them by kind (:meth:`Inbox.next_event`) or waits for an
amount of audio (:meth:`Inbox.wait_audio`). The inbox is bounded (policy: the oldest unread
messages go first); the emulator's traffic log keeps everything regardless.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from .wire import ClientEvent, snake

#: Unread client messages kept: at most this many messages (10,000 is about 1,000 s of the
#: page's 100 ms audio chunks) and this many media bytes; the oldest are dropped first.
INBOX_LIMIT: Final = 10_000
INBOX_MAX_BYTES: Final = 64 * 1024 * 1024


class Inbox:
    """Bounded unread client messages, and the audio received in all (seconds)."""

    def __init__(self) -> None:
        self._events: deque[ClientEvent] = deque()
        self._bytes = 0
        self._changed = asyncio.Condition()
        self._audio_s = 0.0

    @property
    def audio_seconds(self) -> float:
        """PCM16 audio received so far (seconds, to the nanosecond)."""
        return round(self._audio_s, 9)

    async def put(self, event: ClientEvent, audio_s: float) -> None:
        """Queue ``event`` (carrying ``audio_s`` seconds of audio) and wake the waiters."""
        async with self._changed:
            self._events.append(event)
            self._bytes += event.media_bytes
            while len(self._events) > INBOX_LIMIT or (
                self._bytes > INBOX_MAX_BYTES and len(self._events) > 1
            ):
                self._bytes -= self._events.popleft().media_bytes
            self._audio_s += audio_s
            self._changed.notify_all()

    def _take(self, wanted: str | None) -> ClientEvent | None:
        for i, event in enumerate(self._events):
            if wanted is None or event.kind == wanted:
                del self._events[i]
                self._bytes -= event.media_bytes
                return event
        return None

    async def next_event(self, kind: str | None, timeout: float | None) -> ClientEvent:  # noqa: ASYNC109 (the script API's)
        """The oldest unread message of ``kind`` (any if ``None``; either casing); others
        stay queued. ``TimeoutError`` after ``timeout`` s; cancelling only stops waiting."""
        wanted = snake(kind) if kind is not None else None
        async with asyncio.timeout(timeout), self._changed:
            while (event := self._take(wanted)) is None:
                await self._changed.wait()
            return event

    async def wait_audio(self, seconds: float, timeout: float) -> None:  # noqa: ASYNC109 (the script API's)
        """Wait until ``seconds`` of audio arrived in all; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.audio_seconds >= seconds)
