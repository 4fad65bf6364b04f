"""What a conversation keeps for the user: transcript, events, frames, usage, handovers,
tool calls and counters, each with a bound.

Internal module. :class:`SessionLog` holds them; the relay writes on its loop and users
read from any thread (each collection is a thread-safe sequence with snapshots).

Bounds and policies: events and frames keep the newest (``events.MAX_EVENTS_KEPT``,
``events.MAX_FRAMES_KEPT``); usage reports list the newest :data:`MAX_USAGE_KEPT` and fold
older ones into one report at the front, so token totals stay exact; handovers and tool
calls keep the newest :data:`~.timings.MAX_HANDOVERS_KEPT` and
:data:`~.timings.MAX_TOOL_CALLS_KEPT` (``Timings.max_handovers_kept``, ...), with
:attr:`Window.total` counting all (tool calls keep their absolute numbers, as the sink
saw them).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Protocol, TypeVar

from .backend import Usage
from .events import Event, EventKind, Events, Frames, Handover, SentFrame
from .locked import LockedSequence
from .timings import MAX_HANDOVERS_KEPT as MAX_HANDOVERS_KEPT
from .timings import MAX_TOOL_CALLS_KEPT as MAX_TOOL_CALLS_KEPT
from .timings import Timings
from .tools import ToolActivity
from .transcript import Transcript

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

T = TypeVar("T")

#: Usage reports listed one by one; older ones are folded into the first (exact totals).
MAX_USAGE_KEPT: Final = 2_000


class RelayTap(Protocol):
    """Sees what the relay records (a recorder). Called on the relay thread; must not block."""

    def on_event(self, event: Event) -> None:
        """A session event was recorded."""

    def on_mic(self, pcm: bytes) -> None:
        """Microphone audio arrived from the page (PCM16 LE mono, 16 kHz)."""

    def on_frame(self, frame: SentFrame) -> None:
        """A screen frame went to the model."""

    def on_model_audio(self, pcm: bytes) -> None:
        """Model speech arrived (PCM16 LE mono, 24 kHz)."""


@dataclass
class RelayCounters:
    """Running counts, for tests, benchmarks and ``assistant.stats``."""

    audio_chunks_in: int = 0
    audio_bytes_sent: int = 0
    dropped_audio_bytes: int = 0
    frames_in: int = 0
    frames_sent: int = 0
    superseded_frames: int = 0
    audio_chunks_out: int = 0
    audio_bytes_out: int = 0
    connections: int = 0
    reconnects: int = 0


def emit(fn: Callable[..., None], *args: Any) -> None:
    """Call a sink method; a sink that fails is logged and never breaks the relay."""
    try:
        fn(*args)
    except Exception:
        logger.exception("the widget failed to take a relay update")


class _Sequence(LockedSequence[T]):
    """A locked sequence that compares equal to any sequence with the same items."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self.snapshot() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class Window(_Sequence[T]):
    """The newest ``limit`` items, oldest first; :attr:`total` counts every item added, and
    an item keeps its absolute number (``total`` at the time it was added)."""

    def __init__(self, limit: int) -> None:
        super().__init__(deque(maxlen=limit))
        #: Items ever added.
        self.total = 0

    def append(self, item: T) -> int:
        """Add ``item``; returns its absolute number."""
        with self._lock:
            self._items.append(item)
            self.total += 1
            return self.total - 1

    def replace(self, number: int, item: T) -> bool:
        """Make ``item`` the one numbered ``number``; False if that one was dropped."""
        with self._lock:
            index = number - (self.total - len(self._items))
            if not 0 <= index < len(self._items):
                return False
            self._items[index] = item
            return True

    def get(self, number: int) -> T | None:
        """Item number ``number``, None if it was dropped."""
        with self._lock:
            index = number - (self.total - len(self._items))
            return self._items[index] if 0 <= index < len(self._items) else None


class UsageReports(_Sequence[Usage]):
    """The session's usage reports, oldest first, at most ``limit`` listed: past that, the
    two oldest are folded into one whose counts are their sums (dated by the later), so
    the sums over the list, and the cost made from them, stay those of every report."""

    def __init__(self, limit: int = MAX_USAGE_KEPT) -> None:
        self._reports: deque[Usage] = deque()
        super().__init__(self._reports)
        self._limit = max(2, limit)

    def append(self, usage: Usage) -> None:
        """Add a report, folding the oldest past the bound."""
        with self._lock:
            self._reports.append(usage)
            if len(self._reports) > self._limit:
                first, second = self._reports.popleft(), self._reports.popleft()
                self._reports.appendleft(_fold(first, second))


def _fold(a: Usage, b: Usage) -> Usage:
    by = dict(a.by_modality)
    for key, count in b.by_modality.items():
        by[key] = by.get(key, 0) + count
    return Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        response_tokens=a.response_tokens + b.response_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
        by_modality=by,
        at=b.at,
    )


class SessionLog:
    """Everything a conversation keeps for the user, over stops and reconnections; and the
    tap (a recorder) that sees events, microphone audio, frames and model audio as they
    come. ``handovers_kept`` and ``tool_calls_kept`` bound those two lists."""

    def __init__(
        self,
        *,
        handovers_kept: int = MAX_HANDOVERS_KEPT,
        tool_calls_kept: int = MAX_TOOL_CALLS_KEPT,
    ) -> None:
        self.transcript = Transcript()
        self.events = Events()
        self.frames = Frames()
        self.usage = UsageReports()
        self.handovers: Window[Handover] = Window(handovers_kept)
        self.tool_calls: Window[ToolActivity] = Window(tool_calls_kept)
        self.counters = RelayCounters()
        #: Called (on the relay thread) with each event, mic chunk and sent frame while set.
        self.tap: RelayTap | None = None

    @classmethod
    def within(cls, timings: Timings) -> SessionLog:
        """A log with the bounds ``timings`` give."""
        return cls(
            handovers_kept=timings.max_handovers_kept, tool_calls_kept=timings.max_tool_calls_kept
        )

    def log_event(self, kind: EventKind, at: datetime, **detail: object) -> Event:
        """Add an event dated ``at`` (UTC) and show it to the tap."""
        event = Event(at, kind, MappingProxyType(detail))
        self.events.append(event)
        self.to_tap("on_event", event)
        return event

    def to_tap(self, method: str, arg: object) -> None:
        """Give ``arg`` to the tap's ``method``; a tap that fails is logged."""
        tap = self.tap
        if tap is not None:
            try:
                getattr(tap, method)(arg)
            except Exception:
                logger.exception("the recorder failed to take %s", method.removeprefix("on_"))
