"""The relay: one Live conversation's lifecycle, pumps and buffers.

Internal module. A :class:`Relay` runs on its own thread with its own asyncio loop, so the
conversation goes on while a notebook cell is busy. Everything arriving from the page is
handed over with :meth:`Relay.feed_audio` / :meth:`Relay.feed_frame`, which only schedule
work on the relay's loop and return (they are safe from any thread). Everything going to
the page leaves through a :class:`RelaySink`, called on the relay thread.

States and the moves between them are explicit (:class:`RelayState`, ``_TRANSITIONS``);
``_set_state`` is the only place that changes the state, and it mirrors it to the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from types import MappingProxyType
from typing import Any, Final, Protocol, TypeVar

import numpy as np

from .backend import Connector, LiveError, LiveSession, ServerMessage, ToolCall, Usage
from .config import SessionConfig, model_profile
from .events import Event, EventKind, Events, Frames, Handover, SentFrame
from .instructions import AppliedBy, Instruction, Instructions
from .protocol import INPUT_RATE_HZ, SAMPLE_BYTES
from .tools import ToolActivity, Toolbox, activity, finished
from .transcript import Transcript, Turn

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_T = TypeVar("_T")

# ---- bounds and timings ----------------------------------------------------------------------

#: Microphone audio held while the connection is not ready or the network is slow (bytes of
#: 16 kHz PCM16): about one second. Policy: drop the oldest, counted in ``dropped_audio_bytes``.
MIC_BUFFER_BYTES: Final = INPUT_RATE_HZ * SAMPLE_BYTES
#: How often the page is told how far the uplink got (s).
ACK_INTERVAL_S: Final = 0.5
#: Reconnect backoff: first delay, cap (s), and attempts before giving up.
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 8.0
MAX_RECONNECTS: Final = 6
#: Close codes that, before ``setupComplete`` on a resume, mean the handle was refused:
#: 1008 "invalid or expired", and 1011 on the real service, which also refuses a resume
#: while the session's earlier socket is still open (research D5); 1007 too.
REFUSAL_CODES: Final = frozenset({1007, 1008, 1011})
#: A connection that stayed up this long resets the reconnect budget (s).
STABLE_AFTER_S: Final = 30.0
#: Upper bound on tearing a connection down (s).
CLOSE_TIMEOUT_S: Final = 5.0
#: Hand over to a fresh connection this long before a goAway's deadline at the latest (s).
GOAWAY_MARGIN_S: Final = 2.0
#: After a goAway, while the model is not replying, the handover waits for the microphone
#: to pause at most this long (s); what the user said meanwhile is replayed on the new
#: connection, so nothing is lost by not waiting longer. The real service goes quiet after
#: a goAway (research D2), so waiting for it to answer would be dead air.
GOAWAY_USER_WAIT_S: Final = 1.5
#: After a goAway, a reply counts as over when none of it came for this long (s): the real
#: service may stop in the middle of a reply, or never send the ``turnComplete`` after
#: ``generationComplete``.
MODEL_SILENT_S: Final = 1.0
#: Ping the service this often while no ping is outstanding (s).
KEEPALIVE_INTERVAL_S: Final = 10.0
#: A connection is declared dead after this long with neither a server message nor a pong
#: (s). Real pongs come 8-30 s late (research D1), so a late pong alone never ends a
#: connection that keeps delivering messages, and an idle one gets this long.
SILENCE_LIMIT_S: Final = 40.0
#: Microphone audio kept for replay on the next connection, since the last answered turn
#: (bytes of 16 kHz PCM16): 20 s. Policy: drop the oldest, and say how much was lost.
REPLAY_MAX_BYTES: Final = 20 * INPUT_RATE_HZ * SAMPLE_BYTES
#: Quiet audio kept before the first voiced chunk of the replay (bytes): 0.5 s, so the
#: service hears the start of the speech.
REPLAY_PREROLL_BYTES: Final = INPUT_RATE_HZ * SAMPLE_BYTES // 2
#: Quiet audio kept after each voiced chunk of the replay (bytes): 2 s, more than any
#: service's end-of-speech wait (the real one: about 0.7 s), so utterances stay apart.
REPLAY_QUIET_BYTES: Final = 2 * INPUT_RATE_HZ * SAMPLE_BYTES
#: A refused resume is tried once more after this long (s): the service may not yet have
#: seen the close of the session's old socket.
REFUSAL_RETRY_S: Final = 1.0
#: A pause in the conversation, where a handover loses nothing: the model is silent, what the
#: user said has been answered, and the microphone stayed below :data:`VOICE_RMS` this long (s).
PAUSE_S: Final = 0.3
#: RMS of a PCM16 microphone chunk above which it counts as voice (about -42 dBFS).
VOICE_RMS: Final = 256.0
#: How long a cancelled pump waits for its send in flight to finish (s).
SEND_FINISH_TIMEOUT_S: Final = 1.0
#: Microphone quiet this long (on the page's clock) ends a ``speech_end`` event's utterance (s).
SPEECH_END_S: Final = 0.5
#: How often a pending handover checks for a pause (s).
HANDOVER_POLL_S: Final = 0.05
#: Typed texts waiting for the connection. Policy: refuse more, with an error to the caller.
MAX_PENDING_TEXTS: Final = 32
#: The handover reason when a new system instruction needs a new connection.
INSTRUCTION_HANDOVER: Final = "new system instruction"
#: How long ``ask`` waits for the model's answer by default (s).
ASK_TIMEOUT_S: Final = 60.0
#: A new instruction's handover waits for a pause at most this long; then it goes at the
#: first moment the model is silent, even if something the user said is still unanswered (s).
INSTRUCTION_WAIT_S: Final = 20.0


class RelayState(enum.Enum):
    """Where the conversation is. The value is what the widget's ``status`` shows."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    FAILED = "error"


_TRANSITIONS: Final[dict[RelayState, frozenset[RelayState]]] = {
    RelayState.IDLE: frozenset({RelayState.CONNECTING}),
    RelayState.CONNECTING: frozenset(
        {RelayState.LIVE, RelayState.RECONNECTING, RelayState.CLOSING, RelayState.FAILED}
    ),
    RelayState.LIVE: frozenset({RelayState.RECONNECTING, RelayState.CLOSING, RelayState.FAILED}),
    RelayState.RECONNECTING: frozenset({RelayState.LIVE, RelayState.CLOSING, RelayState.FAILED}),
    RelayState.CLOSING: frozenset({RelayState.IDLE}),
    RelayState.FAILED: frozenset({RelayState.CONNECTING, RelayState.IDLE}),
}


class RelaySink(Protocol):
    """Where the relay's output goes (the widget). Called on the relay thread; must not block."""

    def on_state(self, state: RelayState, error: str) -> None:
        """The state changed; ``error`` is a human sentence, "" unless failed or retrying."""

    def on_audio(self, pcm: bytes, gen: int) -> None:
        """Model speech (PCM16 LE mono, 24 kHz) of playback generation ``gen``."""

    def on_interrupted(self, gen: int) -> None:
        """The user barged in: flush playback; ``gen`` is the new generation."""

    def on_turn_complete(self, gen: int) -> None:
        """The model's audio for this turn is complete (generationComplete or turnComplete;
        it may come twice)."""

    def on_turns(self, changed: list[tuple[int, Turn]]) -> None:
        """Transcript turns were added or changed (index, new value)."""

    def on_usage(self, usage: Usage) -> None:
        """The service reported token usage."""

    def on_tick(self) -> None:
        """Every :data:`ACK_INTERVAL_S` while a session runs (for uplink acks)."""

    def on_handover(self, handover: Handover) -> None:
        """The conversation moved to a new connection."""

    def on_instruction(self, instruction: Instruction) -> None:
        """A version of the system instruction reached the model (it is applied)."""

    def on_tool(self, index: int, call: ToolActivity) -> None:
        """Tool call number ``index`` started or ended."""

    def on_frame(self, frame: SentFrame, seq: int) -> None:
        """Screen frame ``seq`` (as the page numbered it, -1 if unknown) went to the model."""


class QuietSink:
    """A :class:`RelaySink` with no page behind it (replays, the smoke session): the relay
    itself keeps the transcript, usage, handovers, instruction versions, tool calls and
    frames."""

    def on_state(self, state: RelayState, error: str) -> None:
        """Nothing to show."""

    def on_audio(self, pcm: bytes, gen: int) -> None:
        """Nobody listens."""

    def on_interrupted(self, gen: int) -> None:
        """Nothing plays."""

    def on_turn_complete(self, gen: int) -> None:
        """Nothing plays."""

    def on_turns(self, changed: list[tuple[int, Turn]]) -> None:
        """The relay keeps the transcript."""

    def on_usage(self, usage: Usage) -> None:
        """The relay keeps the usage."""

    def on_tick(self) -> None:
        """No uplink to acknowledge."""

    def on_handover(self, handover: Handover) -> None:
        """The relay keeps the handovers."""

    def on_instruction(self, instruction: Instruction) -> None:
        """The relay keeps the versions."""

    def on_tool(self, index: int, call: ToolActivity) -> None:
        """The relay keeps the calls."""

    def on_frame(self, frame: SentFrame, seq: int) -> None:
        """The relay keeps the frames."""


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


class _Handover(Exception):
    """Move to a new connection: the service announced the end of this one (goAway), or a
    new system instruction needs a new setup. ``reason`` goes into the :class:`Handover`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionEnded(Exception):
    """The session stopped or failed before the model answered a question."""


@dataclass
class _Text:
    """Typed text waiting to be sent; ``reply`` waits for the answer (``ask``)."""

    text: str
    reply: _ReplyWaiter | None = None


@dataclass
class _ReplyWaiter:
    """Waits for the model turn that answers a text: the first model turn that began after
    the text was sent (``turn`` is that turn's number, set when it was sent)."""

    future: asyncio.Future[str]
    turn: int | None = None


@dataclass(frozen=True)
class _Said:
    """Input that went to the model: a microphone chunk (``pcm``, ``voiced``) or a typed
    ``text`` (with the ``ask`` waiting for its answer, if any)."""

    pcm: bytes = b""
    voiced: bool = False
    text: str = ""
    reply: _ReplyWaiter | None = None


@dataclass(frozen=True)
class Taken:
    """What :meth:`Unanswered.take` hands over: the input, oldest first; the voiced seconds
    dropped by the bound; and whether the speech held is a barge-in (said during a reply
    the user interrupted) rather than the question before a reply."""

    items: list[_Said]
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
        self._items: deque[_Said] = deque()
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
        self._items.append(_Said(pcm=pcm, voiced=voiced))
        self._bytes += len(pcm)
        self._voiced += voiced
        if not self._voiced:
            # No speech yet: only the pre-roll of quiet audio is worth keeping.
            while self._bytes > REPLAY_PREROLL_BYTES and self._drop_oldest_audio():
                pass
        while self._bytes > REPLAY_MAX_BYTES and self._drop_oldest_audio():
            pass

    def text(self, text: str, reply: _ReplyWaiter | None = None) -> None:
        """A typed text went out (``reply``: the ``ask`` waiting for its answer)."""
        self._items.append(_Said(text=text, reply=reply))

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


class Relay:
    """One conversation with a Live backend, on its own thread and loop.

    ``start()`` opens a session (if none is running) and returns at once; ``stop()`` ends it.
    Both are idempotent and safe from any thread. The transcript survives stops and
    reconnections.
    """

    def __init__(
        self,
        connect: Connector,
        config: SessionConfig,
        sink: RelaySink,
        *,
        name: str = "screenshare-relay",
        toolbox: Toolbox | None = None,
    ) -> None:
        self._connect = connect
        self._config = config
        self._config_lock = threading.Lock()
        self.instructions = Instructions(config.system_instruction)
        self._connected_version = 0  # the instruction version the current connection has
        self._instruction_ready: asyncio.Event | None = None
        self._texts: deque[_Text] = deque()
        self._text_ready: asyncio.Event | None = None
        self._model_turns = 0  # model turns begun so far (answers to texts are counted)
        self._waiters: list[_ReplyWaiter] = []
        #: Called (on the relay thread) with each event, mic chunk and sent frame while set.
        self.tap: RelayTap | None = None
        self._session: LiveSession | None = None  # the open connection, if any
        #: The user's tools; declared to each new connection.
        self.toolbox = toolbox if toolbox is not None else Toolbox()
        #: Every tool call of the session, oldest first, as it stands now.
        self.tool_calls: list[ToolActivity] = []
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}  # running calls by id
        self._sink = sink
        self._name = name
        self.transcript = Transcript()
        self.events = Events()
        self.frames = Frames()
        self.usage: list[Usage] = []
        self.counters = RelayCounters()
        self._state = RelayState.IDLE
        self._error = ""
        #: The error that ended the last session in FAILED (None since the next start).
        self.failure: LiveError | None = None
        self._state_lock = threading.Lock()
        self._gen = 0
        self._handle: str | None = None
        self._model_speaking = False
        # The model's current reply: when its last message came (monotonic), and whether
        # its generation completed.
        self._reply_heard_at = 0.0
        self._generation_done = False
        # An interrupted came without turnComplete: the next turnComplete before any new
        # output closes the interrupted turn (the real service sends both; research D4).
        self._interrupted_tail = False
        # A reply was under way when its connection ended: the page may still play it.
        self._flush_on_reply = False
        self._heard_at = 0.0  # monotonic time of the last server message or pong
        #: What the user said or typed since the last answer, for the next connection.
        self.unanswered = Unanswered()
        self.handovers: list[Handover] = []
        self._pending_handover: tuple[datetime, str, bool] | None = None
        self._replayed = (0.0, 0, 0.0)  # audio (s), texts and lost audio (s) of the replay
        self._last_audio_sent: float | None = None  # monotonic time of the last audio sent
        self._last_voice_at: float | None = None  # monotonic time the mic last carried voice
        self._last_voice_wall: datetime | None = None  # the same, as a UTC datetime
        # The user spoke since the model's last answer: a handover now would lose the question.
        self._awaiting_answer = False
        self._speaking = False  # the microphone carries voice (for speech_start/end events)
        self._clock_offset: float | None = None  # the kernel's clock minus the page's (s)
        self._opened_at: float | None = None  # monotonic time the current connection opened
        # Created on the relay thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._audio: deque[tuple[bytes, bool]] = deque()  # chunks and whether voiced
        self._audio_bytes = 0
        self._audio_ready: asyncio.Event | None = None
        # Screen frames wait in this single slot. Policy: latest wins, counted in
        # ``superseded_frames``.
        self._frame: tuple[bytes, int, int, int, str] | None = None  # JPEG, size, seq, reason
        self._frame_ready: asyncio.Event | None = None

    # ---- public, any thread -----------------------------------------------------------------

    @property
    def state(self) -> RelayState:
        """The current state."""
        return self._state

    @property
    def config(self) -> SessionConfig:
        """The settings the next connection uses."""
        return self._config

    @config.setter
    def config(self, config: SessionConfig) -> None:
        """Change settings for the next connection; a new system instruction goes through
        :meth:`set_instruction` (it also reaches the running session)."""
        with self._config_lock:
            changed = self._replace_config(config)
        if changed:
            self._instruction_changed()

    def update_config(self, **changes: Any) -> SessionConfig:
        """Change some settings for the next connection in one atomic read-modify-write
        (``relay.update_config(max_fps=2.0)``), with the effects of the :attr:`config`
        setter; returns the new settings. Invalid changes raise as ``dataclasses.replace``
        and :class:`SessionConfig` do, and change nothing. Safe from any thread."""
        with self._config_lock:
            config = replace(self._config, **changes)
            changed = self._replace_config(config)
            config = self._config
        if changed:
            self._instruction_changed()
        return config

    def _replace_config(self, config: SessionConfig) -> bool:
        """Make ``config`` current (lock held); True if its system instruction is new."""
        changed = config.system_instruction != self._config.system_instruction
        if changed:
            self.instructions.add(config.system_instruction)
        self._config = config
        return changed

    def _instruction_changed(self) -> None:
        loop, ready = self._loop, self._instruction_ready
        if loop is not None and ready is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(ready.set)

    def call_soon(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` soon on the relay's loop (it must not block); False, and nothing runs,
        when the loop is not running or already closed. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return False
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    def set_instruction(self, text: str) -> Instruction:
        """Make ``text`` the system instruction; returns its version.

        A running session gets it for its next turn: by a context update where the model
        supports it, else by a resumption handover at the next pause in the conversation.
        Without a session, the next connection starts with it. Safe from any thread.
        """
        if not isinstance(text, str):
            raise TypeError("system_instruction must be a string")
        with self._config_lock:
            version = self.instructions.add(text)
            self._config = replace(self._config, system_instruction=text)
        self._instruction_changed()
        return version

    def say(self, text: str) -> Future[None]:
        """Send typed text to the model; returns at once (the future is done once queued).

        The text joins the transcript as a typed user turn. Without a session, one starts
        (no screen or microphone needed). Safe from any thread.
        """
        return self.run_coroutine(self._say(_Text(_check_text(text, len(self._texts)))))

    def ask(self, text: str, timeout: float = ASK_TIMEOUT_S) -> Future[str]:
        """Send typed text and resolve with the text of the model's answer when its turn
        completes (or is cut short: then with what it said so far).

        Fails with ``TimeoutError`` after ``timeout`` seconds without an answer and with
        :class:`SessionEnded` if the session stops or fails first. Cancelling the future
        stops the wait only: the text was sent. Safe from any thread.
        """
        checked = _check_text(text, len(self._texts))
        return self.run_coroutine(self._ask(checked, timeout))

    @property
    def error(self) -> str:
        """The last error as a human sentence, "" if none."""
        return self._error

    @property
    def generation(self) -> int:
        """The playback generation: it grows by one at each interruption."""
        return self._gen

    def start(self) -> None:
        """Open a session unless one is already running. Returns at once."""
        self._call(self._start)

    def stop(self, *, wait: bool = True, timeout: float = CLOSE_TIMEOUT_S + 1) -> None:
        """End the session (a clean end, not an error). With ``wait``, block until it ended
        or ``timeout`` seconds passed. Safe to call when nothing runs."""
        if self._loop is None:
            return
        future = self._call(self._stop)
        if wait and threading.current_thread() is not self._thread:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                future.result(timeout)

    def close(self, *, wait: bool = True) -> None:
        """Stop the session and end the relay's thread. With ``wait`` (and off the relay's
        thread), block until both ended, at most about twice :data:`CLOSE_TIMEOUT_S`;
        without, return at once. Idempotent."""
        with self._thread_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def finish() -> None:
            try:
                await self._stop()
            finally:
                loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(finish(), loop)
        except RuntimeError:  # the loop already closed
            return
        if wait and threading.current_thread() is not thread:
            thread.join(2 * CLOSE_TIMEOUT_S)

    def feed_audio(self, pcm: bytes, t_ms: float = 0.0) -> None:
        """Hand over microphone audio (PCM16 LE mono, 16 kHz); ``t_ms`` is when the page
        captured its end (ms since the epoch, 0 for now), so speech is dated when it was
        spoken, not when it arrived. Never blocks."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._put_audio, pcm, t_ms)

    def feed_frame(
        self, jpeg: bytes, width: int = 0, height: int = 0, *, seq: int = -1, reason: str = ""
    ) -> None:
        """Hand over a screen frame (JPEG, size in pixels; the page's ``seq`` and why it sent
        it). Never blocks; a newer frame replaces a waiting one."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._put_frame, jpeg, width, height, seq, reason)

    def end_audio(self) -> Future[None]:
        """Say the microphone stream ended, so the service answers an utterance still open
        (a replay's end). Safe from any thread."""
        return self.run_coroutine(self._end_audio())

    def at_rest(self) -> bool:
        """Whether the conversation is at a turn boundary: the model is silent, nothing the
        user said or typed waits for an answer, and the microphone is quiet."""
        return not self._texts and self._in_pause()

    def run_coroutine(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        """Run ``coro`` on the relay's loop (starting the thread if needed)."""
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    # ---- thread and loop --------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._thread_lock:
            if self._loop is not None:
                return self._loop
            ready = threading.Event()
            loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(loop)
                self._audio_ready = asyncio.Event()
                self._frame_ready = asyncio.Event()
                self._instruction_ready = asyncio.Event()
                self._text_ready = asyncio.Event()
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    _cancel_all(loop)
                    loop.close()

            thread = threading.Thread(target=run, name=self._name, daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            return loop

    def _call(self, fn: Callable[[], Awaitable[None]]) -> Future[None]:
        async def wrapper() -> None:
            await fn()

        return self.run_coroutine(wrapper())

    # ---- state ------------------------------------------------------------------------------

    def _set_state(self, new: RelayState, error: str = "") -> None:
        with self._state_lock:
            old = self._state
            if new is old:
                if error == self._error:
                    return
            elif new not in _TRANSITIONS[old]:
                raise RuntimeError(f"relay cannot move from {old.value} to {new.value}")
            self._state = new
            self._error = error
        logger.debug("relay %s -> %s %s", old.value, new.value, error)
        self._emit(self._sink.on_state, new, error)

    def _emit(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("the widget failed to take a relay update")

    # ---- buffers (relay loop) ---------------------------------------------------------------

    def _put_audio(self, pcm: bytes, t_ms: float = 0.0) -> None:
        self.counters.audio_chunks_in += 1
        if self._state in (RelayState.IDLE, RelayState.CLOSING, RelayState.FAILED):
            self.counters.dropped_audio_bytes += len(pcm)
            return
        self._tap("on_mic", pcm)
        began, ended = self._chunk_span(pcm, t_ms)
        voiced = is_voice(pcm)
        if voiced:
            self._last_voice_wall = ended
            self._last_voice_at = time.monotonic()
            if not self._speaking:
                self._speaking = True
                self._record("speech_start", at=began)
                self.transcript.speech_started(began)
            if not self._model_speaking:  # (while it speaks, voice is echo or a barge-in)
                self._awaiting_answer = True
        elif (
            # Quiet is measured on the page's clock, not by arrival: chunks held up by a
            # busy kernel arrive in a burst, and a pause in sending is quiet too.
            self._speaking
            and self._last_voice_wall is not None
            and (ended - self._last_voice_wall).total_seconds() >= SPEECH_END_S
        ):
            self._speech_ended()
        self._audio.append((pcm, voiced))
        self._audio_bytes += len(pcm)
        while self._audio_bytes > MIC_BUFFER_BYTES and len(self._audio) > 1:
            old, _ = self._audio.popleft()
            self._audio_bytes -= len(old)
            self.counters.dropped_audio_bytes += len(old)
        assert self._audio_ready is not None
        self._audio_ready.set()

    def _put_frame(
        self, jpeg: bytes, width: int, height: int, seq: int = -1, reason: str = ""
    ) -> None:
        self.counters.frames_in += 1
        if self._state in (RelayState.IDLE, RelayState.CLOSING, RelayState.FAILED):
            return
        if self._frame is not None:
            self.counters.superseded_frames += 1
        self._frame = (jpeg, width, height, seq, reason)
        assert self._frame_ready is not None
        self._frame_ready.set()

    def _clear_buffers(self) -> None:
        self._audio.clear()
        self._audio_bytes = 0
        self._frame = None
        self._texts.clear()
        self.unanswered.clear()

    def _chunk_span(self, pcm: bytes, t_ms: float) -> tuple[datetime, datetime]:
        """When a 16 kHz PCM16 chunk began and ended, from the page's capture time of its
        end (ms since the epoch; 0 for now). The page's clock is corrected by its offset
        from the kernel's, taken as the smallest seen this session (arrival only adds to
        it), when that is over :data:`CLOCK_SKEW_S`."""
        now = time.time()
        end = now
        if t_ms:
            page = t_ms / 1000
            offset = now - page
            if self._clock_offset is None or offset < self._clock_offset:
                self._clock_offset = offset
            skew = self._clock_offset
            end = page + (skew if abs(skew) > CLOCK_SKEW_S else 0.0)
        length = len(pcm) / (INPUT_RATE_HZ * SAMPLE_BYTES)
        return datetime.fromtimestamp(end - length, UTC), datetime.fromtimestamp(end, UTC)

    def _speech_ended(self) -> None:
        """The utterance ended with the last voiced chunk, not when the quiet was noticed."""
        self._speaking = False
        self._record("speech_end", at=self._last_voice_wall)
        if self._last_voice_wall is not None:
            self.transcript.speech_ended(self._last_voice_wall)

    def _end_speech(self) -> None:
        """The session ends: speech going on ends with it, and the next begins afresh."""
        if self._speaking:
            self._speech_ended()
        self._last_voice_wall = None

    async def _end_audio(self) -> None:
        if self._speaking:
            self._speech_ended()
        session = self._session
        if session is not None and self._state is RelayState.LIVE:
            await session.end_audio()

    # ---- typed text (relay loop) ------------------------------------------------------------

    async def _say(self, item: _Text) -> None:
        if len(self._texts) >= MAX_PENDING_TEXTS:
            raise RuntimeError(
                f"{MAX_PENDING_TEXTS} texts already wait for the connection; try again later"
            )
        if self._state in (RelayState.IDLE, RelayState.FAILED, RelayState.CLOSING):
            await self._start()
        self._turns(self.transcript.add_typed(item.text))
        self._texts.append(item)
        assert self._text_ready is not None
        self._text_ready.set()

    async def _ask(self, text: str, limit_s: float) -> str:
        waiter = _ReplyWaiter(asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await self._say(_Text(text, waiter))
            async with asyncio.timeout(limit_s):
                return await waiter.future
        except TimeoutError:
            raise TimeoutError(f"The model did not answer within {limit_s:g} s.") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _text_sent(self, item: _Text) -> None:
        if self._texts and self._texts[0] is item:
            self._texts.popleft()
        self._awaiting_answer = True
        self.unanswered.text(item.text, item.reply)
        self._record("text", text=item.text, chars=len(item.text))
        if item.reply is not None:
            item.reply.turn = self._model_turns + 1
        if self._pending_handover is not None and self._last_audio_sent is None:
            self._finish_handover(None)

    def _answered(self, turn: Turn) -> None:
        """Model turn number ``self._model_turns`` ended as ``turn``: resolve the questions it
        answers."""
        for waiter in list(self._waiters):
            if waiter.turn is not None and waiter.turn <= self._model_turns:
                self._waiters.remove(waiter)
                if not waiter.future.done():
                    waiter.future.set_result(turn.text.strip())

    def _abandon_questions(self, why: str) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(SessionEnded(why))
        self._waiters.clear()

    # ---- lifecycle (relay loop) -------------------------------------------------------------

    async def _start(self) -> None:
        if self._task is not None and not self._task.done():
            if self._state is not RelayState.CLOSING:
                return
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        self.failure = None
        self._clock_offset = None  # a new session may come from another page
        # Nothing of the last session's conversation state carries over.
        self._awaiting_answer = self._interrupted_tail = self._generation_done = False
        self._flush_on_reply = False
        # A new session starts fresh: the model does not get the context of one that was
        # stopped (the transcript, in Python, goes on). Handovers within a session resume.
        self._handle = None
        self._set_state(RelayState.CONNECTING)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="relay.run")

    async def _stop(self) -> None:
        task = self._task
        if task is None or task.done():
            if self._state is RelayState.FAILED:
                self._set_state(RelayState.IDLE)
            return
        self._set_state(RelayState.CLOSING)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(task)

    async def _run(self) -> None:
        """Connect, pump, and reconnect on recoverable ends until stopped or failed.

        Recoverable ends (goAway, drops, 1011, a stalled server) reconnect with the latest
        resumable handle, with capped exponential backoff and jitter, at most
        :data:`MAX_RECONNECTS` times in a row. A refused handle (a close with one of
        :data:`REFUSAL_CODES` before ``setupComplete``) gets one more try, or none when the
        reason says the handle is invalid, then a fresh session without it. Fatal errors
        (bad key, unknown model, rejected settings) end in FAILED at once.
        Cancelling it (``stop()``) closes the connection and ends in IDLE.
        """
        ticker = asyncio.get_running_loop().create_task(self._tick(), name="relay.tick")
        attempts = 0
        ended: str | None = None  # why the previous connection ended; None before the first
        fresh_retry = False  # a refused handle was dropped; the next refusal is final
        refusals = 0  # refusals of the current handle in a row
        try:
            while True:
                handle = self._handle
                self._opened_at = None
                try:
                    await self._connection(handle, ended)
                except _Handover as handover:
                    attempts = 0
                    ended = handover.reason
                    self._reconnecting("")
                    continue
                except LiveError as exc:
                    opened = self._opened_at is not None
                    if opened:
                        fresh_retry = False
                        refusals = 0
                        if time.monotonic() - (self._opened_at or 0.0) > STABLE_AFTER_S:
                            attempts = 0
                    refused = (
                        handle is not None
                        and not opened
                        and exc.code in REFUSAL_CODES
                        and "api key" not in exc.reason.lower()  # no use retrying a bad key
                    )
                    if refused and not fresh_retry:
                        refusals += 1
                        said = f"{exc.code}: {exc.reason or exc.message}"
                        if refusals < 2 and "handle" not in exc.reason.lower():
                            # Maybe the old connection is not closed yet on the service's
                            # side (it refuses a concurrent resume with 1011): once more.
                            logger.warning("the service refused to resume (%s); once more", said)
                            self._set_state(RelayState.RECONNECTING, exc.message)
                            await asyncio.sleep(REFUSAL_RETRY_S)
                            continue
                        logger.warning(
                            "the service refused to resume (%s); starting a fresh session", said
                        )
                        self._handle = None
                        fresh_retry = True
                        refusals = 0
                        refusal = f"the service refused to resume ({said})"
                        ended = f"{ended}, then {refusal}" if ended else refusal
                        continue
                    if exc.fatal or attempts >= MAX_RECONNECTS:
                        self._fail(exc, attempts)
                        return
                    attempts += 1
                    ended = f"{exc.code}: {exc.reason}" if exc.code else exc.message
                    logger.warning("Live connection ended (%s); reconnecting", exc.message)
                    self._reconnecting(exc.message)
                    await asyncio.sleep(_backoff(attempts))
                except Exception as exc:  # a bug, not a network event: say so and stop
                    logger.exception("the relay failed")
                    self._fail(
                        LiveError(
                            f"The relay failed unexpectedly ({type(exc).__name__}: {exc}).",
                            fatal=True,
                        ),
                        attempts,
                    )
                    return
        except asyncio.CancelledError:
            self._end_model_turn(interrupted=True)
            self._end_speech()
            self._emit(self._sink.on_turns, self._indexed(self.transcript.close_open()))
            self._clear_buffers()
            self._abandon_questions("The session stopped before the model answered.")
            if self._state is not RelayState.CLOSING:
                self._set_state(RelayState.CLOSING)
            self._set_state(RelayState.IDLE)
            raise
        finally:
            ticker.cancel()

    def _reconnecting(self, message: str) -> None:
        self.counters.reconnects += 1
        self._finish_handover(None)
        if self._model_speaking:
            # The new connection will not continue this answer: it was cut short, unless
            # all of it had come (only turnComplete was missing). A cut answer's question
            # goes again to the new connection: its ask() waits for that answer.
            done = self._generation_done
            self._end_model_turn(interrupted=not done, resolve=done)
            if done:
                self.unanswered.answered()
                self._awaiting_answer = self.unanswered.has_texts
            # The page may still play this reply when the next begins: flush it then.
            self._flush_on_reply = True
        self._interrupted_tail = False
        self._set_state(RelayState.RECONNECTING, message)

    async def _replay(self, session: LiveSession) -> None:
        """Send the new connection what the user said or typed since the last answer, so a
        question the old connection heard but did not answer is not lost. A send that
        fails puts what was not sent back, for the next connection; cancellation too."""
        taken = self.unanswered.take()
        items = taken.items
        if not any(item.voiced or item.text for item in items):
            items = []  # quiet audio only: nothing to answer
        if not items and not taken.lost_s:
            return
        audio_s = sum(len(item.pcm) for item in items) / (INPUT_RATE_HZ * SAMPLE_BYTES)
        texts = sum(1 for item in items if item.text)
        if any(item.voiced for item in items):
            # The new connection transcribes the speech again: the same turn, unless the
            # speech is a barge-in no turn has claimed yet.
            self._turns(self.transcript.expect_retranscription(question=not taken.barge_in))
        # The answers come in the order of the questions: renumber the asks waiting.
        questions, in_speech = 0, False
        for item in items:
            if item.voiced and not in_speech:
                questions += 1
            in_speech = item.voiced or (in_speech and not item.text)
            if item.text:
                questions += 1
                if item.reply is not None and not item.reply.future.done():
                    item.reply.turn = self._model_turns + questions
        sent = 0
        try:
            for item in items:
                if item.text:
                    await session.send_text(item.text)
                    self.unanswered.text(item.text, item.reply)
                else:
                    await session.send_audio(item.pcm)
                    self.unanswered.audio(item.pcm, item.voiced)
                sent += 1
        finally:
            for item in items[sent:]:  # for the next connection
                if item.text:
                    self.unanswered.text(item.text, item.reply)
                else:
                    self.unanswered.audio(item.pcm, item.voiced)
            self.unanswered.lost_s += taken.lost_s if sent < len(items) else 0.0
            self.unanswered.said_over_reply(taken.barge_in)  # still what it was
        lost_s = taken.lost_s
        self._record("replay", audio_s=round(audio_s, 3), texts=texts, lost_s=round(lost_s, 3))
        logger.info("replayed %.1f s of audio and %d text(s) on the new connection", audio_s, texts)
        self._replayed = (audio_s, texts, lost_s)
        if self._last_audio_sent is None:  # no microphone to measure the gap by
            self._finish_handover(None)

    def _fail(self, exc: LiveError, attempts: int) -> None:
        message = exc.message
        if attempts >= MAX_RECONNECTS and not exc.fatal:
            last = f"{exc.code}: {exc.reason}" if exc.code else exc.reason or exc.message
            message = (
                f"The Live connection kept failing ({last}): gave up after {attempts} "
                "reconnection attempts. Check the network, then Share again."
            )
        logger.error("Live session failed: %s", message)
        self.failure = exc
        self._finish_handover(None)
        self._end_model_turn(interrupted=True)
        self._end_speech()
        self._emit(self._sink.on_turns, self._indexed(self.transcript.close_open()))
        self._clear_buffers()
        self._abandon_questions(f"The session failed before the model answered: {message}")
        self._set_state(RelayState.FAILED, message)

    async def _connection(self, handle: str | None, ended: str | None) -> None:
        """One connection: open it (resuming ``handle``), run the pumps until one ends, close
        it. ``ended`` says why the previous connection ended (None for the first)."""
        with self._config_lock:
            config, version = self._config, self.instructions.current.version
        try:
            declarations = self.toolbox.declarations(
                non_blocking=model_profile(config.model).async_tools
            )
        except (TypeError, ValueError, RuntimeError) as exc:
            raise LiveError(
                f"The tools cannot be used: {exc}", fatal=True, blames=("tools",)
            ) from None
        config = replace(config, tools=declarations)
        async with self._connect(config, handle) as session:
            self._session = session
            self.counters.connections += 1
            self._opened_at = time.monotonic()
            if ended is not None:
                self._pending_handover = (datetime.now(UTC), ended, handle is not None)
            by: AppliedBy = "handover" if ended == INSTRUCTION_HANDOVER else "setup"
            self._instruction_applied(version, by)
            go_away: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            try:
                self._heard_at = time.monotonic()
                if ended is not None:
                    await self._replay(session)
                self._set_state(RelayState.LIVE)
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._send_audio(session), name="relay.send_audio")
                    group.create_task(self._send_frames(session), name="relay.send_frames")
                    group.create_task(self._receive(session, go_away), name="relay.receive")
                    group.create_task(self._keepalive(session), name="relay.keepalive")
                    group.create_task(self._hand_over(go_away), name="relay.hand_over")
                    group.create_task(self._send_texts(session), name="relay.send_texts")
                    group.create_task(
                        self._apply_instructions(session, config.model),
                        name="relay.apply_instructions",
                    )
            except BaseExceptionGroup as group_error:
                # The first pump to fail ended the others; surface its exception as is.
                raise _first(group_error) from None
            finally:
                self._session = None
                await self._cancel_tools("the connection ended")

    def _instruction_applied(self, version: int, by: AppliedBy) -> None:
        """The model has instruction ``version`` (and every earlier one) from now on."""
        self._connected_version = version
        self.transcript.instruction = version
        for applied in self.instructions.mark_applied(version, by):
            if applied.version == version:
                self._record("instruction", version=version, by=by, text=applied.text)
                self._emit(self._sink.on_instruction, applied)

    async def _apply_instructions(self, session: LiveSession, model: str) -> None:
        """Give the model (``model``, this connection's) each new instruction version: by a
        context update where the model supports it, else by a handover (``_Handover``) at
        the next pause, or after :data:`INSTRUCTION_WAIT_S` when the model is silent."""
        ready = self._instruction_ready
        assert ready is not None
        loop = asyncio.get_running_loop()
        while True:
            latest = self.instructions.current
            if latest.version > self._connected_version:
                if model_profile(model).context_update:
                    await session.update_instruction(latest.text)
                    self._instruction_applied(latest.version, "context_update")
                    continue  # a newer version may have come meanwhile
                waited_until = loop.time() + INSTRUCTION_WAIT_S
                while not (  # noqa: ASYNC110 (a pause is a span of time, not an event)
                    self._in_pause() or (loop.time() > waited_until and not self._model_speaking)
                ):
                    await asyncio.sleep(HANDOVER_POLL_S)
                raise _Handover(INSTRUCTION_HANDOVER)
            await ready.wait()
            ready.clear()

    def _finish_handover(self, gap_ms: float | None) -> None:
        """Record the pending handover (if any) with the audio gap it caused."""
        pending, self._pending_handover = self._pending_handover, None
        if pending is None:
            return
        at, reason, resumed = pending
        replayed_s, texts, lost_s = self._replayed
        self._replayed = (0.0, 0, 0.0)
        handover = Handover(
            at=at,
            reason=reason,
            resumed=resumed,
            gap_ms=gap_ms,
            replayed_s=round(replayed_s, 3),
            replayed_texts=texts,
            lost_s=round(lost_s, 3),
        )
        self.handovers.append(handover)
        self._record(
            "handover",
            reason=reason,
            resumed=resumed,
            gap_ms=gap_ms,
            replayed_s=handover.replayed_s,
            lost_s=handover.lost_s,
        )
        logger.info("handed over to a new connection: %s", handover)
        self._emit(self._sink.on_handover, handover)

    async def _keepalive(self, session: LiveSession) -> None:
        """Declare the connection dead after :data:`SILENCE_LIMIT_S` with neither a server
        message nor a pong; ping every :data:`KEEPALIVE_INTERVAL_S` while no ping is
        outstanding. A late pong is no failure: the real service's come 8-30 s late.
        Cancellation cancels the outstanding ping's wait."""
        ping: asyncio.Task[None] | None = None

        async def round_trip() -> None:
            with contextlib.suppress(LiveError):  # a broken socket is the receiver's to report
                await session.ping()
                self._heard_at = time.monotonic()

        try:
            while True:
                silent = time.monotonic() - self._heard_at
                if silent >= SILENCE_LIMIT_S:
                    raise LiveError(
                        "The Live service went silent: no message and no answer to a ping "
                        f"for {SILENCE_LIMIT_S:.0f} s. Reconnecting.",
                        code=1006,
                        reason="keepalive timeout",
                        fatal=False,
                    )
                if ping is None or ping.done():
                    ping = asyncio.create_task(round_trip(), name="relay.ping")
                await asyncio.sleep(min(KEEPALIVE_INTERVAL_S, SILENCE_LIMIT_S - silent))
        finally:
            if ping is not None:
                ping.cancel()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(ACK_INTERVAL_S)
            self._emit(self._sink.on_tick)

    # ---- pumps ------------------------------------------------------------------------------

    async def _send_audio(self, session: LiveSession) -> None:
        ready = self._audio_ready
        assert ready is not None
        while True:
            await ready.wait()
            while self._audio:
                pcm, voiced = self._audio.popleft()
                self._audio_bytes -= len(pcm)
                try:
                    await _complete(session.send_audio(pcm), partial(self._sent, pcm, voiced))
                except LiveError:
                    # The connection broke under this chunk: it goes first on the next one.
                    self._audio.appendleft((pcm, voiced))
                    self._audio_bytes += len(pcm)
                    raise
            ready.clear()

    def _sent(self, pcm: bytes, voiced: bool) -> None:
        """A microphone chunk went out."""
        self.counters.audio_bytes_sent += len(pcm)
        self.unanswered.audio(pcm, voiced)
        now = time.monotonic()
        if self._pending_handover is not None:
            last = self._last_audio_sent
            self._finish_handover(None if last is None else (now - last) * 1000)
        self._last_audio_sent = now

    def _frame_sent(self, jpeg: bytes, width: int, height: int, seq: int, reason: str) -> None:
        self.counters.frames_sent += 1
        frame = SentFrame(datetime.now(UTC), jpeg, width, height, reason=reason)
        self.frames.append(frame)
        self._tap("on_frame", frame)
        self._emit(self._sink.on_frame, frame, seq)
        self._record("frame_sent", width=width, height=height, bytes=len(jpeg), reason=reason)

    async def _send_frames(self, session: LiveSession) -> None:
        ready = self._frame_ready
        assert ready is not None
        while True:
            await ready.wait()
            ready.clear()
            waiting, self._frame = self._frame, None
            if waiting is not None:
                jpeg, width, height, seq, reason = waiting
                done = partial(self._frame_sent, jpeg, width, height, seq, reason)
                await _complete(session.send_frame(jpeg), done)

    async def _send_texts(self, session: LiveSession) -> None:
        """Send typed texts in order; one whose send failed goes first on the next
        connection."""
        ready = self._text_ready
        assert ready is not None
        while True:
            await ready.wait()
            ready.clear()
            while self._texts:
                item = self._texts[0]
                await _complete(session.send_text(item.text), partial(self._text_sent, item))

    async def _receive(self, session: LiveSession, go_away: asyncio.Future[float]) -> None:
        """Handle server messages until the connection ends; a goAway sets ``go_away`` to
        the loop time by which to hand over."""
        loop = asyncio.get_running_loop()
        async for message in session.receive():
            self._heard_at = time.monotonic()
            self._handle_message(message)
            if message.go_away_s is not None and not go_away.done():
                left = message.go_away_s
                logger.info("the service will close this connection in %.1f s", left)
                go_away.set_result(loop.time() + max(0.0, left - GOAWAY_MARGIN_S))
        raise LiveError("The Live session ended.", code=1000, fatal=False)

    async def _hand_over(self, go_away: asyncio.Future[float]) -> None:
        """After a goAway, hand over (raise ``_Handover``) as soon as nothing is lost by it,
        and by the goAway's deadline at the latest. While the model replies: at the end of
        its reply, or once it fell silent (:data:`MODEL_SILENT_S`; the real service may go
        quiet mid-reply). Otherwise: at the first pause of the microphone
        (:data:`PAUSE_S`), or :data:`GOAWAY_USER_WAIT_S` after the goAway if the user goes
        on talking; what was said since the last answer is replayed on the new connection.
        """
        deadline = await go_away
        loop = asyncio.get_running_loop()
        asked = loop.time()
        # A pause is a span of time, not an event: poll for it, briefly.
        while loop.time() < deadline:
            if self._tool_tasks:
                pass  # a tool runs: its answer goes on this connection, not twice
            elif self._model_speaking:
                if self._reply_fell_silent():
                    break
            elif self._mic_quiet() or loop.time() - asked >= GOAWAY_USER_WAIT_S:
                break
            await asyncio.sleep(HANDOVER_POLL_S)
        raise _Handover("goAway")

    def _reply_fell_silent(self) -> bool:
        """The model's reply stopped coming: nothing came for :data:`MODEL_SILENT_S`. After
        ``generationComplete`` only ``turnComplete`` is missing, which the real service may
        never send after a goAway; the page plays what it has either way."""
        return time.monotonic() - self._reply_heard_at >= MODEL_SILENT_S

    def _mic_quiet(self) -> bool:
        """The microphone carried no voice for :data:`PAUSE_S`."""
        voice = self._last_voice_at
        return voice is None or time.monotonic() - voice >= PAUSE_S

    def _in_pause(self) -> bool:
        """A turn boundary: the model is silent, nothing the user said waits for an answer,
        and the microphone has been quiet for :data:`PAUSE_S`."""
        if self._model_speaking or self._awaiting_answer:
            return False
        return self._mic_quiet()

    # ---- server messages --------------------------------------------------------------------

    def _handle_message(self, m: ServerMessage) -> None:
        """Apply every field of one server message (they can all come together)."""
        if m.interrupted:
            self._record("interrupted")
            self._awaiting_answer = True  # the user barged in; an answer to that will come
            self._gen += 1
            self._emit(self._sink.on_interrupted, self._gen)
            self._end_model_turn(interrupted=True)
            self.unanswered.interrupted()
            # The real service ends an interrupted turn with a turnComplete of its own.
            self._interrupted_tail = not m.turn_complete
        if m.audio or m.output_transcription or m.text or m.tool_calls:
            self._interrupted_tail = False  # the model goes on: a turnComplete is its own
            self._reply_heard_at = time.monotonic()
        if m.input_transcription:
            self._turns(self.transcript.add_input(m.input_transcription))
        if m.audio:
            if not self._model_speaking:
                self._model_began()
                self._record("first_audio")
                self._turns(self.transcript.model_started())
            self.counters.audio_chunks_out += 1
            self.counters.audio_bytes_out += len(m.audio)
            self._tap("on_model_audio", m.audio)
            self._emit(self._sink.on_audio, m.audio, self._gen)
        text = m.output_transcription or m.text
        if text:
            if not self._model_speaking:
                self._model_began()
            self._turns(self.transcript.add_output(text))
        if m.usage is not None:
            usage = replace(m.usage, at=datetime.now(UTC))
            self.usage.append(usage)
            self._record(
                "usage",
                at=usage.at,
                prompt_tokens=usage.prompt_tokens,
                response_tokens=usage.response_tokens,
                total_tokens=usage.total_tokens,
                by_modality=dict(usage.by_modality),
            )
            self._emit(self._sink.on_usage, usage)
        if m.generation_complete:
            self._generation_done = True
            self._reply_heard_at = time.monotonic()
        if m.generation_complete and not m.turn_complete:
            # No more audio is coming; the service sends turnComplete only once the audio
            # would have finished playing, possibly after the page played it all.
            self._emit(self._sink.on_turn_complete, self._gen)
        if m.turn_complete:
            # The end of an interrupted turn (with its usage), not of the exchange that the
            # barge-in began: the user's words may still be arriving.
            tail = m.interrupted or self._interrupted_tail
            self._interrupted_tail = False
            self._record("turn_complete", interrupted=tail)
            if not tail:
                if self._model_speaking:
                    self.unanswered.answered()
                self._awaiting_answer = False
                self._end_model_turn(interrupted=False)
            self._emit(self._sink.on_turn_complete, self._gen)
        if m.resumption_handle:
            self._handle = m.resumption_handle
        for call in m.tool_calls:
            self._record("tool_call", id=call.id, name=call.name, args=dict(call.args))
            self._start_tool(call)
        for call_id in m.cancelled_tool_calls:
            task = self._tool_tasks.get(call_id)
            if task is not None:
                task.cancel()
        if m.unhandled:
            logger.debug("server message fields not used: %s", ", ".join(m.unhandled))

    # ---- tools ------------------------------------------------------------------------------

    def _start_tool(self, call: ToolCall) -> None:
        session = self._session
        if session is None:
            return
        index = len(self.tool_calls)
        confirm = self.toolbox.needs_confirmation(call.name)
        self.tool_calls.append(activity(call.id, call.name, call.args, confirm=confirm))
        self._emit(self._sink.on_tool, index, self.tool_calls[index])
        task = asyncio.get_running_loop().create_task(
            self._run_tool(session, call, index), name=f"relay.tool.{call.name}"
        )
        key = call.id or f"#{index}"
        self._tool_tasks[key] = task
        task.add_done_callback(lambda _: self._tool_tasks.pop(key, None))

    async def _run_tool(self, session: LiveSession, call: ToolCall, index: int) -> None:
        """Call the tool off the receive loop and answer the model; cancellation (a
        ``toolCallCancellation`` or the connection's end) answers nothing."""
        started = time.monotonic()
        try:
            response = await self.toolbox.call(call.name, call.args, call.id)
        except asyncio.CancelledError:
            done, detail = finished(self.tool_calls[index], None, started)
            self.tool_calls[index] = done
            self._record("tool_result", **detail)
            self._emit(self._sink.on_tool, index, done)
            raise
        done, detail = finished(self.tool_calls[index], response, started)
        self.tool_calls[index] = done
        self._record("tool_result", **detail)
        self._emit(self._sink.on_tool, index, done)
        when_idle = model_profile(self.config.model).async_tools
        try:
            await session.send_tool_response(
                call.id, call.name, response.payload, when_idle=when_idle
            )
        except LiveError as exc:  # the connection broke; its pumps report that
            logger.warning("the answer of tool %s was not delivered: %s", call.name, exc.message)

    async def _cancel_tools(self, why: str) -> None:
        tasks = list(self._tool_tasks.values())
        if tasks:
            logger.info("cancelling %d tool call(s): %s", len(tasks), why)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def record(self, kind: EventKind, **detail: object) -> None:
        """Add an event from outside the relay, stamped now (any thread)."""
        self._record(kind, None, **detail)

    def _record(self, kind: EventKind, at: datetime | None = None, **detail: object) -> None:
        event = Event(at or datetime.now(UTC), kind, MappingProxyType(detail))
        self.events.append(event)
        self._tap("on_event", event)

    def _tap(self, method: str, arg: object) -> None:
        tap = self.tap
        if tap is not None:
            try:
                getattr(tap, method)(arg)
            except Exception:
                logger.exception("the recorder failed to take %s", method.removeprefix("on_"))

    def _model_began(self) -> None:
        if self._flush_on_reply:
            # The old connection's reply may still be playing: this one replaces it.
            self._flush_on_reply = False
            self._gen += 1
            self._emit(self._sink.on_interrupted, self._gen)
        self._model_speaking = True
        self._model_turns += 1
        self._reply_heard_at = time.monotonic()
        self._generation_done = False
        self.unanswered.reply_began()

    def _end_model_turn(self, *, interrupted: bool, resolve: bool = True) -> None:
        """The model's turn ended; with ``resolve``, the asks it answers get its text."""
        was_speaking, self._model_speaking = self._model_speaking, False
        changed = self.transcript.end_exchange(interrupted=interrupted)
        self._turns(changed)
        if was_speaking and resolve:
            for index in changed:
                turn = self.transcript[index]
                if turn.role == "model":
                    self._answered(turn)

    def _turns(self, indexes: list[int]) -> None:
        if indexes:
            self._emit(self._sink.on_turns, self._indexed(indexes))

    def _indexed(self, indexes: list[int]) -> list[tuple[int, Turn]]:
        return [(i, self.transcript[i]) for i in indexes]


async def _complete(send: Coroutine[Any, Any, None], sent: Callable[[], None]) -> None:
    """Await a send that, once started, finishes even if the pump is cancelled meanwhile
    (a handover), so the chunk it carries is neither lost nor sent twice; ``sent()`` runs
    whenever it did complete. Cancellation waits for it at most
    :data:`SEND_FINISH_TIMEOUT_S`, then propagates."""
    task = asyncio.ensure_future(send)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), SEND_FINISH_TIMEOUT_S)
        if task.done() and not task.cancelled() and task.exception() is None:
            sent()
        raise
    sent()


#: A page clock further than this from the kernel's is corrected (s): the browser runs on
#: another machine whose clock is off. Closer, it is taken as it is.
CLOCK_SKEW_S: Final = 5.0


def is_voice(pcm: bytes) -> bool:
    """Whether a PCM16 LE chunk carries voice (RMS above :data:`VOICE_RMS`)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    return bool(samples.size) and float(np.sqrt(np.mean(samples * samples))) > VOICE_RMS


def _check_text(text: object, waiting: int) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, not {type(text).__name__}")
    if not text.strip():
        raise ValueError("text must not be empty")
    if waiting >= MAX_PENDING_TEXTS:
        raise RuntimeError(
            f"{MAX_PENDING_TEXTS} texts already wait for the connection; try again later"
        )
    return text


def _backoff(attempt: int) -> float:
    """Capped exponential backoff with full jitter (s)."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that ended a task group: a handover or Live error before anything else."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (_Handover, LiveError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0]


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
