"""The media buffers and the tool calls of a conversation, each with its bound and policy.

Internal module. Used on the relay loop only, except :class:`Inbox` (any thread in, the
loop out).

- :class:`Inbox`: hands items from any thread to the loop with at most one scheduled
  callback at a time, however many items come while the loop is busy (a stalled loop does
  not pile up one callback per microphone chunk). Bound ``inbox_max_items``
  (:data:`~.timings.INBOX_MAX_ITEMS`); policy: drop the oldest.
- :class:`MicBuffer`: microphone audio waiting for the connection. Bound
  ``mic_buffer_bytes`` (:data:`~.timings.MIC_BUFFER_BYTES`); policy: drop the oldest.
- :class:`FrameSlot`: the screen frame waiting for the connection. Bound: one; policy:
  latest wins.
- :class:`TextQueue`: typed texts waiting for the connection. Bound ``max_pending_texts``
  (:data:`~.timings.MAX_PENDING_TEXTS`); policy: refuse more, with an error to the caller.
- :class:`Unanswered`: what the user said or typed since the model last answered, for
  replay on the next connection. Bound :data:`~.timings.REPLAY_MAX_BYTES`; policy: drop
  the oldest audio, counting the voiced seconds lost.
- :class:`ToolRunner`: the running tool calls, as named tasks whose failures are logged
  and reported; cancelling them waits at most ``tool_cancel_timeout_s``.
- :func:`send_whole`: a send that, once started, completes across a cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from .protocol import INPUT_RATE_HZ, SAMPLE_BYTES
from .timings import (
    INBOX_MAX_ITEMS,
    MAX_PENDING_TEXTS,
    REPLAY_MAX_BYTES,
    REPLAY_PREROLL_BYTES,
    REPLAY_QUIET_BYTES,
)

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_T = TypeVar("_T")


class Inbox(Generic[_T]):
    """Items handed over from any thread, drained on a loop in order.

    :meth:`put` appends under a lock and schedules one drain, unless one is already
    scheduled: while the loop is busy, items gather here and one callback takes them all.
    It holds only what arrived since the loop last ran, at most ``limit`` items
    (:data:`~.timings.INBOX_MAX_ITEMS`); policy: drop the oldest, counted in
    :attr:`dropped`. A new loop calls :meth:`reset`: a drain scheduled on the old one
    may have been dropped with it.
    """

    def __init__(self, take: Callable[[_T], None], limit: int = INBOX_MAX_ITEMS) -> None:
        self._take = take
        self._limit = max(1, limit)
        self._items: deque[_T] = deque(maxlen=self._limit)
        self._lock = threading.Lock()
        self._scheduled = False
        #: Items dropped by the bound so far.
        self.dropped = 0

    def put(self, item: _T, schedule: Callable[[Callable[[], None]], bool]) -> bool:
        """Append ``item``; ``schedule`` runs a callback on the loop (False: no loop, and
        the item is dropped). Returns whether the item will be taken."""
        with self._lock:
            if len(self._items) == self._limit:
                self.dropped += 1
            self._items.append(item)
            if self._scheduled:
                return True
            self._scheduled = True
        if schedule(self._drain):
            return True
        with self._lock:
            self._scheduled = False
            self._items.clear()
        return False

    def reset(self) -> None:
        """Forget what waits and any drain scheduled (a new loop: the old one is gone)."""
        with self._lock:
            self._items.clear()
            self._scheduled = False

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, deque(maxlen=self._limit)
            self._scheduled = False
        for item in items:
            self._take(item)


class MicBuffer:
    """Microphone chunks (and whether each is voiced) waiting for the connection, at most
    ``limit_bytes``. Policy: drop the oldest (never the newest chunk), counted in
    :attr:`dropped_bytes`."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._chunks: deque[tuple[bytes, bool]] = deque()
        self._bytes = 0
        #: Audio dropped by the bound so far (bytes).
        self.dropped_bytes = 0
        #: Set when a chunk waits.
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def size_bytes(self) -> int:
        """Audio waiting (bytes)."""
        return self._bytes

    def put(self, pcm: bytes, voiced: bool) -> None:
        """Add a chunk at the end, dropping the oldest past the bound."""
        self._chunks.append((pcm, voiced))
        self._bytes += len(pcm)
        while self._bytes > self._limit and len(self._chunks) > 1:
            old, _ = self._chunks.popleft()
            self._bytes -= len(old)
            self.dropped_bytes += len(old)
        self.ready.set()

    def take(self) -> tuple[bytes, bool] | None:
        """The oldest chunk, removed (None if empty)."""
        if not self._chunks:
            return None
        pcm, voiced = self._chunks.popleft()
        self._bytes -= len(pcm)
        return pcm, voiced

    def put_back(self, pcm: bytes, voiced: bool) -> None:
        """A chunk whose send failed goes first again (for the next connection)."""
        self._chunks.appendleft((pcm, voiced))
        self._bytes += len(pcm)

    def clear(self) -> None:
        """Forget everything waiting."""
        self._chunks.clear()
        self._bytes = 0


@dataclass(frozen=True)
class WaitingFrame:
    """A screen frame waiting to be sent: JPEG, size (px), the page's ``seq`` and reason."""

    jpeg: bytes
    width: int
    height: int
    seq: int = -1
    reason: str = ""


class FrameSlot:
    """The screen frame waiting for the connection. Bound: one. Policy: latest wins,
    counted in :attr:`superseded`."""

    def __init__(self) -> None:
        self._frame: WaitingFrame | None = None
        #: Frames replaced by a newer one before they were sent.
        self.superseded = 0
        #: Set when a frame waits.
        self.ready = asyncio.Event()

    def put(self, frame: WaitingFrame) -> None:
        """Make ``frame`` the one waiting."""
        if self._frame is not None:
            self.superseded += 1
        self._frame = frame
        self.ready.set()

    def take(self) -> WaitingFrame | None:
        """The frame waiting, removed (None if none)."""
        frame, self._frame = self._frame, None
        return frame

    def clear(self) -> None:
        """Forget the frame waiting."""
        self._frame = None


class TextQueue:
    """Typed texts waiting for the connection, in order. Bound ``limit``; policy: refuse
    more (:meth:`check` raises ``RuntimeError``)."""

    def __init__(self, limit: int = MAX_PENDING_TEXTS) -> None:
        self._limit = limit
        self._items: deque[PendingText] = deque()
        #: Set when a text waits.
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[PendingText]:
        return iter(list(self._items))

    def check(self) -> None:
        """Raise ``RuntimeError`` if the queue is full (any thread: a length is atomic)."""
        if len(self._items) >= self._limit:
            raise RuntimeError(
                f"{self._limit} texts already wait for the connection; try again later"
            )

    def put(self, item: PendingText) -> None:
        """Queue ``item`` (after :meth:`check`)."""
        self.check()
        self._items.append(item)
        self.ready.set()

    def first(self) -> PendingText | None:
        """The oldest text, left in place until :meth:`sent`."""
        return self._items[0] if self._items else None

    def sent(self, item: PendingText) -> None:
        """``item`` went out: it leaves the queue."""
        if self._items and self._items[0] is item:
            self._items.popleft()

    def clear(self) -> None:
        """Forget everything waiting."""
        self._items.clear()


async def send_whole(
    send: Coroutine[Any, Any, None], sent: Callable[[], None], finish_timeout_s: float
) -> None:
    """Await a send that, once started, finishes even if the pump is cancelled meanwhile
    (a handover), so the chunk it carries is neither lost nor sent twice; ``sent()`` runs
    whenever it did complete. Cancellation waits for it at most ``finish_timeout_s``, then
    propagates (a send still running then is abandoned: it ends on its own, and a failure
    is logged)."""
    task = asyncio.ensure_future(send)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), finish_timeout_s)
        if task.done() and not task.cancelled() and task.exception() is None:
            sent()
        elif not task.done():
            task.add_done_callback(_log_failure)
        raise
    sent()


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("a send abandoned at a handover failed: %r", task.exception())


class ToolRunner:
    """The running tool calls by id, each a named task.

    A task that ends with an exception (a bug: the relay's own tool wrapper catches the
    tool's errors) is logged and passed to ``on_failure``; none vanishes. :meth:`cancel_all`
    cancels them all and waits at most ``cancel_timeout_s``: a tool that ignores
    cancellation is left behind with a warning, so the connection's end never hangs.
    """

    def __init__(
        self, cancel_timeout_s: float, on_failure: Callable[[str, BaseException], None]
    ) -> None:
        self._timeout = cancel_timeout_s
        self._on_failure = on_failure
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self.tasks)

    def start(self, key: str, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as the task of call ``key``."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks[key] = task
        task.add_done_callback(partial(self._done, key))

    def _done(self, key: str, task: asyncio.Task[None]) -> None:
        if self.tasks.get(key) is task:
            del self.tasks[key]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("tool task %s failed", task.get_name(), exc_info=exc)
            self._on_failure(task.get_name(), exc)

    def cancel(self, key: str) -> None:
        """Cancel call ``key`` if it runs (a ``toolCallCancellation``)."""
        task = self.tasks.get(key)
        if task is not None:
            task.cancel()

    async def cancel_all(self, why: str) -> None:
        """Cancel every running call and wait for them, at most ``cancel_timeout_s``.
        Cancelling this wait leaves the calls cancelled and propagates."""
        tasks = list(self.tasks.values())
        if not tasks:
            return
        logger.info("cancelling %d tool call(s): %s", len(tasks), why)
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=self._timeout)
        if pending:
            names = ", ".join(sorted(task.get_name() for task in pending))
            logger.warning(
                "%d tool call(s) ignored cancellation for %g s and are left running: %s",
                len(pending),
                self._timeout,
                names,
            )


@dataclass
class PendingText:
    """Typed text waiting to be sent; ``reply`` waits for the answer (``ask``)."""

    text: str
    reply: ReplyWaiter | None = None


@dataclass
class ReplyWaiter:
    """Waits for the model turn that answers a text: the first model turn that began after
    the text was sent (``turn`` is that turn's number, set when it was sent)."""

    future: asyncio.Future[str]
    turn: int | None = None


@dataclass(frozen=True)
class Said:
    """Input that went to the model: a microphone chunk (``pcm``, ``voiced``) or a typed
    ``text`` (with the ``ask`` waiting for its answer, if any)."""

    pcm: bytes = b""
    voiced: bool = False
    text: str = ""
    reply: ReplyWaiter | None = None


@dataclass(frozen=True)
class Taken:
    """What :meth:`Unanswered.take` hands over: the input, oldest first; the voiced seconds
    dropped by the bound; and whether the speech held is a barge-in (said during a reply
    the user interrupted) rather than the question before a reply."""

    items: list[Said]
    lost_s: float = 0.0
    barge_in: bool = False


class Unanswered:
    """What the user said or typed since the model last answered, to replay on the next
    connection: the real service can go quiet after a goAway, or a connection can drop,
    with a question heard but not answered (research D2).

    Bounded by :data:`REPLAY_MAX_BYTES` of audio. Policy: drop the oldest audio, counting
    the voiced seconds lost in :attr:`lost_s`; texts are kept (there are at most
    :data:`MAX_PENDING_TEXTS` between answers, and an ``ask`` waits for each). Quiet audio
    is kept only as :data:`REPLAY_PREROLL_BYTES` before the first voiced chunk and
    :data:`REPLAY_QUIET_BYTES` after each, enough for the service to hear where speech starts
    and ends. Used on the relay loop only.
    """

    def __init__(self) -> None:
        self._items: deque[Said] = deque()
        self._bytes = 0
        self._mark = 0  # items before it were sent before the model's current reply began
        self._voiced = 0  # voiced chunks held
        self._quiet_run = 0  # bytes of quiet audio since the last voiced chunk
        self._barge_in = False  # the speech held was said over a reply, then interrupted it
        #: Voiced audio dropped by the bound since the last :meth:`take` (seconds).
        self.lost_s = 0.0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def audio_s(self) -> float:
        """Audio held (seconds)."""
        return self._bytes / (INPUT_RATE_HZ * SAMPLE_BYTES)

    @property
    def has_texts(self) -> bool:
        """Whether a typed text waits for its answer."""
        return any(item.text for item in self._items)

    def audio(self, pcm: bytes, voiced: bool) -> None:
        """A microphone chunk went out."""
        if voiced:
            self._quiet_run = 0
        else:
            self._quiet_run += len(pcm)
            if self._voiced and self._quiet_run > REPLAY_QUIET_BYTES:
                return  # a long pause: its end is enough
        self._items.append(Said(pcm=pcm, voiced=voiced))
        self._bytes += len(pcm)
        self._voiced += voiced
        if not self._voiced:
            # No speech yet: only the pre-roll of quiet audio is worth keeping.
            while self._bytes > REPLAY_PREROLL_BYTES and self._drop_oldest_audio():
                pass
        while self._bytes > REPLAY_MAX_BYTES and self._drop_oldest_audio():
            pass

    def text(self, text: str, reply: ReplyWaiter | None = None) -> None:
        """A typed text went out (``reply``: the ``ask`` waiting for its answer)."""
        self._items.append(Said(text=text, reply=reply))

    def reply_began(self) -> None:
        """The model began a reply: what was said before it is what it answers."""
        self._mark = len(self._items)
        self._barge_in = False

    def interrupted(self) -> None:
        """The user barged in: what came before the reply was answered (in part); the
        barge-in, said during the reply, was not."""
        self._drop_answered()
        self._barge_in = True

    def answered(self) -> None:
        """The reply ended normally: what came before it was answered, and audio during it
        was not a question (the service did not take it as one). Texts typed during the
        reply still wait for their answer."""
        self._drop_answered()
        self._items = deque(item for item in self._items if not item.pcm)
        self._bytes = self._voiced = self._quiet_run = 0
        self._barge_in = False

    def said_over_reply(self, barge_in: bool) -> None:
        """Say whether the speech held is a barge-in (it was before a :meth:`take`)."""
        self._barge_in = barge_in

    def take(self) -> Taken:
        """Everything held, and what was lost; empties it."""
        taken = Taken(list(self._items), self.lost_s, self._barge_in)
        self.clear()
        return taken

    def clear(self) -> None:
        """Forget everything (the session ended)."""
        self._items.clear()
        self._bytes = self._voiced = self._mark = self._quiet_run = 0
        self._barge_in = False
        self.lost_s = 0.0

    def _drop_answered(self) -> None:
        for _ in range(min(self._mark, len(self._items))):
            item = self._items.popleft()
            self._bytes -= len(item.pcm)
            self._voiced -= item.voiced
        self._mark = 0

    def _drop_oldest_audio(self) -> bool:
        """Drop the oldest audio chunk (texts stay); False if there is none."""
        for i, item in enumerate(self._items):
            if item.pcm:
                del self._items[i]
                self._bytes -= len(item.pcm)
                self._voiced -= item.voiced
                if i < self._mark:
                    self._mark -= 1
                if item.voiced:
                    self.lost_s += len(item.pcm) / (INPUT_RATE_HZ * SAMPLE_BYTES)
                return True
        return False
