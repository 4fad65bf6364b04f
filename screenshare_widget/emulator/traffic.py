"""What the emulator received and sent (its traffic): a thread-safe log for tests and demos.

Internal module; the types are re-exported from :mod:`screenshare_widget.emulator`.

The emulator's thread appends; any thread reads snapshots (every property returns a new
list). Media payloads are kept up to :data:`MAX_MEDIA_BYTES` in total, dropping the oldest
first, so a long demo does not grow without bound; the totals behind
:meth:`Traffic.audio_seconds` count everything ever received. Message summaries and texts
are kept up to :data:`MAX_MESSAGES` each; per-connection facts (setup, session, close) take
a few hundred bytes per connection.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

#: Largest total of audio and frame payloads kept (bytes); the oldest are dropped first.
MAX_MEDIA_BYTES: Final = 64 * 1024 * 1024
#: Most client message summaries, and most texts, kept; the oldest are dropped first.
MAX_MESSAGES: Final = 200_000
#: Poll period of :meth:`Traffic.wait_for` (seconds).
POLL_S: Final = 0.01


@dataclass(frozen=True)
class ReceivedAudio:
    """One audio blob from a client: ``t`` is ``time.time()`` at arrival (seconds)."""

    t: float
    data: bytes
    mime: str
    connection: int

    @property
    def rate(self) -> int:
        """Sample rate from the mime type (Hz), 16000 when it does not say."""
        return pcm_rate(self.mime)

    @property
    def seconds(self) -> float:
        """Duration, assuming 16-bit mono PCM at :attr:`rate` (seconds)."""
        return len(self.data) / (2 * self.rate)


@dataclass(frozen=True)
class ReceivedFrame:
    """One image from a client; ``width`` and ``height`` from the JPEG SOF (0 if unknown)."""

    t: float
    data: bytes
    mime: str
    connection: int
    width: int
    height: int


@dataclass(frozen=True)
class ReceivedText:
    """Text a client sent (``realtime_input.text`` or a ``client_content`` text part)."""

    t: float
    text: str
    connection: int


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A server message the emulator sent.

    ``t`` is ``time.time()`` as it was handed to the socket (seconds); ``keys`` its (first)
    top-level key then, for ``serverContent``, the keys inside it that are set
    (``("serverContent", "modelTurn")``), or ``("raw",)`` for a frame sent as is; ``audio``
    the PCM of its audio parts (24 kHz PCM16, empty when it has none).
    """

    t: float
    connection: int
    keys: tuple[str, ...]
    audio: bytes = b""


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """Any client message: its ``kind`` and a summary with base64 payloads as their length."""

    t: float
    connection: int
    kind: str
    summary: dict[str, Any]


def pcm_rate(mime: str, default: int = 16_000) -> int:
    """The ``rate=`` parameter of a PCM mime type such as ``audio/pcm;rate=16000`` (Hz)."""
    for param in mime.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "rate":
            try:
                rate = int(value.strip())
            except ValueError:
                return default
            return rate if rate > 0 else default
    return default


class Traffic:
    """Everything the emulator received (and sent), across all connections: ``emu.traffic``.

    Connections are numbered from 0 in the order the emulator accepted them.
    """

    def __init__(
        self, *, max_media_bytes: int = MAX_MEDIA_BYTES, max_messages: int = MAX_MESSAGES
    ) -> None:
        self._lock = threading.Lock()
        self._max_media_bytes = max_media_bytes
        self._max_messages = max_messages
        self._connections = 0
        self._reset()

    def _reset(self) -> None:
        self._setups: list[dict[str, Any]] = []
        self._audio: deque[ReceivedAudio] = deque()
        self._frames: deque[ReceivedFrame] = deque()
        self._texts: deque[ReceivedText] = deque(maxlen=self._max_messages)
        self._messages: deque[ReceivedMessage] = deque(maxlen=self._max_messages)
        self._sent: deque[SentMessage] = deque()
        self._sent_audio_bytes = 0
        self._closes: list[tuple[int, int, str]] = []
        self._media_bytes = 0
        self._audio_seconds: dict[int, float] = {}
        self._key_present: dict[int, bool] = {}
        self._sessions: dict[int, str] = {}
        self._resumed: dict[int, bool] = {}
        self._faults: list[tuple[int, str]] = []

    # ---- writers (the emulator) -------------------------------------------------------------

    def new_connection(self, *, key_present: bool) -> int:
        """Count a newly accepted connection and return its index (from 0)."""
        with self._lock:
            index = self._connections
            self._connections += 1
            self._key_present[index] = key_present
            return index

    def add_setup(self, setup: dict[str, Any]) -> None:
        """Record a raw ``setup`` object."""
        with self._lock:
            self._setups.append(setup)

    def add_message(self, message: ReceivedMessage) -> None:
        """Record a client message summary."""
        with self._lock:
            self._messages.append(message)

    def add_sent(self, message: SentMessage) -> None:
        """Record a server message the emulator sent (the oldest go past the limits)."""
        with self._lock:
            self._sent.append(message)
            self._sent_audio_bytes += len(message.audio)
            while self._sent and (
                len(self._sent) > self._max_messages
                or self._sent_audio_bytes > self._max_media_bytes
            ):
                self._sent_audio_bytes -= len(self._sent.popleft().audio)

    def add_audio(self, audio: ReceivedAudio) -> None:
        """Record an audio blob and add its duration to the connection's total."""
        with self._lock:
            self._audio.append(audio)
            self._audio_seconds[audio.connection] = (
                self._audio_seconds.get(audio.connection, 0.0) + audio.seconds
            )
            self._media_bytes += len(audio.data)
            self._trim()

    def add_frame(self, frame: ReceivedFrame) -> None:
        """Record an image frame."""
        with self._lock:
            self._frames.append(frame)
            self._media_bytes += len(frame.data)
            self._trim()

    def add_text(self, text: ReceivedText) -> None:
        """Record client text."""
        with self._lock:
            self._texts.append(text)

    def add_session(self, connection: int, session: str, *, resumed: bool) -> None:
        """Record which session an accepted connection belongs to, and if it resumed it."""
        with self._lock:
            self._sessions[connection] = session
            self._resumed[connection] = resumed

    def add_fault(self, connection: int, kind: str) -> None:
        """Record that a fault of ``kind`` was applied to a connection."""
        with self._lock:
            self._faults.append((connection, kind))

    def add_close(self, connection: int, code: int, reason: str) -> None:
        """Record a close the emulator initiated or observed."""
        with self._lock:
            self._closes.append((connection, code, reason))

    def _trim(self) -> None:
        # Drop the oldest media (audio or frame, whichever arrived first) past the budget.
        while self._media_bytes > self._max_media_bytes and (self._audio or self._frames):
            take_audio = bool(self._audio) and (
                not self._frames or self._audio[0].t <= self._frames[0].t
            )
            if take_audio:
                self._media_bytes -= len(self._audio.popleft().data)
            else:
                self._media_bytes -= len(self._frames.popleft().data)

    # ---- readers (tests, demos) -------------------------------------------------------------

    @property
    def connections(self) -> int:
        """How many WebSocket connections the emulator accepted (:meth:`clear` keeps it)."""
        with self._lock:
            return self._connections

    @property
    def setups(self) -> list[dict[str, Any]]:
        """Raw ``setup`` objects, in arrival order (one per connection that sent one)."""
        with self._lock:
            return list(self._setups)

    @property
    def audio(self) -> list[ReceivedAudio]:
        """Audio blobs received (the most recent :data:`MAX_MEDIA_BYTES` of media)."""
        with self._lock:
            return list(self._audio)

    @property
    def frames(self) -> list[ReceivedFrame]:
        """Image frames received (the most recent :data:`MAX_MEDIA_BYTES` of media)."""
        with self._lock:
            return list(self._frames)

    @property
    def texts(self) -> list[ReceivedText]:
        """Text received."""
        with self._lock:
            return list(self._texts)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every client message (the most recent :data:`MAX_MESSAGES`)."""
        with self._lock:
            return list(self._messages)

    @property
    def sent(self) -> list[SentMessage]:
        """Server messages sent, in order (the most recent :data:`MAX_MESSAGES`, with at most
        :data:`MAX_MEDIA_BYTES` of audio among them)."""
        with self._lock:
            return list(self._sent)

    @property
    def closes(self) -> list[tuple[int, int, str]]:
        """``(connection, code, reason)`` for each close, in order."""
        with self._lock:
            return list(self._closes)

    @property
    def sessions(self) -> dict[int, str]:
        """Session id of each accepted connection: ``{connection: session_id}``.

        Connections refused at setup (bad key, model or handle, a ``"reject"`` fault) have
        none. Connections of one session share its id; see :attr:`resumed`.
        """
        with self._lock:
            return dict(self._sessions)

    @property
    def resumed(self) -> dict[int, bool]:
        """Whether each accepted connection resumed its session with a handle."""
        with self._lock:
            return dict(self._resumed)

    @property
    def faults(self) -> list[tuple[int, str]]:
        """``(connection, kind)`` for each fault applied, in order (a stall when it starts)."""
        with self._lock:
            return list(self._faults)

    def key_present(self, connection: int) -> bool:
        """Whether that connection sent a non-empty ``x-goog-api-key`` (never the key)."""
        with self._lock:
            return self._key_present.get(connection, False)

    def audio_seconds(self, connection: int | None = None) -> float:
        """Total PCM16 audio received (seconds, to the nanosecond), on one connection or all."""
        with self._lock:
            if connection is None:
                return round(sum(self._audio_seconds.values()), 9)
            return round(self._audio_seconds.get(connection, 0.0), 9)

    def wait_for(self, predicate: Callable[[Traffic], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` is true or ``timeout`` seconds passed.

        Returns the predicate's last value. Polls every :data:`POLL_S`; call it from a thread
        other than the one running the emulator (use :meth:`wait_for_async` on its loop).
        """
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)

    async def wait_for_async(self, predicate: Callable[[Traffic], bool], timeout: float) -> bool:  # noqa: ASYNC109 (public API)
        """Like :meth:`wait_for` but sleeps with ``asyncio``; cancellation just stops waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if predicate(self):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_S)

    def clear(self) -> None:
        """Forget everything received; the connection count stays, so indices stay unique."""
        with self._lock:
            self._reset()
