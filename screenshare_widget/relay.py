"""The relay: one Live conversation, run on its own thread, behind a thread-safe facade.

Internal module. A :class:`Relay` owns a :class:`~screenshare_widget.loop_thread.LoopThread`
(one daemon thread and its asyncio loop, so the conversation goes on while a notebook
cell is busy) and a :class:`~screenshare_widget.conversation.Conversation` on it (the
state machine, one task group per connection). Everything arriving from the page is
handed over with :meth:`Relay.feed_audio` / :meth:`Relay.feed_frame`, which only queue
the data for the loop and return (safe from any thread; however many chunks come while
the loop is busy, one callback takes them). Everything going to the page leaves through a
:class:`RelaySink`, called on the relay thread.

Where things are (each module's docstring says more):

- ``timings.py``: every bound and timing as a constant (the defaults), ``Timings`` and
  the ``Clock`` (``Relay(..., timings=, clock=)``);
- ``conversation.py``: ``RelayState``, ``TRANSITIONS``, ``RelaySink``, ``Conversation``;
- ``dialogue.py``: the server messages, model turns, asks and tool calls;
- ``uplink.py``: the microphone, frames and texts and their send loops;
- ``handover.py``: goAway and new-instruction handovers, the replay;
- ``policy.py``: pure decisions: ``ReconnectPolicy``, ``Floor``, ``PendingHandover``;
- ``pumps.py``: the bounded buffers and the tool tasks;
- ``session_log.py``: transcript, events, frames, usage, handovers, tool calls, counters.

The names the rest of the package and its tests import from here are re-exported.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future
from dataclasses import fields, replace
from functools import partial
from typing import Any, TypeVar

from .backend import Connector, LiveError, Usage
from .config import SessionConfig
from .conversation import TRANSITIONS as TRANSITIONS
from .conversation import Conversation
from .conversation import RelaySink as RelaySink
from .conversation import RelayState as RelayState
from .dialogue import SessionEnded as SessionEnded
from .events import EventKind, Events, Frames, Handover, SentFrame
from .handover import INSTRUCTION_HANDOVER as INSTRUCTION_HANDOVER
from .instructions import Instruction, Instructions
from .loop_thread import LoopThread
from .pumps import Inbox, PendingText, WaitingFrame
from .pumps import Taken as Taken
from .pumps import Unanswered as Unanswered
from .session_log import RelayCounters as RelayCounters
from .session_log import RelayTap as RelayTap
from .session_log import SessionLog
from .timings import ACK_INTERVAL_S as ACK_INTERVAL_S
from .timings import ASK_TIMEOUT_S as ASK_TIMEOUT_S
from .timings import BACKOFF_FIRST_S as BACKOFF_FIRST_S
from .timings import BACKOFF_MAX_S as BACKOFF_MAX_S
from .timings import CLOSE_TIMEOUT_S as CLOSE_TIMEOUT_S
from .timings import MAX_PENDING_TEXTS as MAX_PENDING_TEXTS
from .timings import MAX_RECONNECTS as MAX_RECONNECTS
from .timings import MIC_BUFFER_BYTES as MIC_BUFFER_BYTES
from .timings import PAUSE_S as PAUSE_S
from .timings import REPLAY_MAX_BYTES as REPLAY_MAX_BYTES
from .timings import REPLAY_PREROLL_BYTES as REPLAY_PREROLL_BYTES
from .timings import SILENCE_LIMIT_S as SILENCE_LIMIT_S
from .timings import Clock, Timings
from .tools import ToolActivity, Toolbox
from .transcript import Transcript, Turn
from .uplink import is_voice as is_voice

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_T = TypeVar("_T")
#: The old name of :data:`TRANSITIONS`.
_TRANSITIONS = TRANSITIONS


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

    def on_notice(self, text: str) -> None:
        """Nobody to tell (the relay keeps the events)."""


class NextSettings:
    """The settings the next connection uses and the system instruction's versions, under
    one lock: any thread changes them; the conversation reads both when it connects."""

    def __init__(self, config: SessionConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self.instructions = Instructions(config.system_instruction)

    @property
    def config(self) -> SessionConfig:
        """The current settings."""
        return self._config

    def current(self) -> tuple[SessionConfig, int]:
        """The settings and the current instruction's version, read together."""
        with self._lock:
            return self._config, self.instructions.current.version

    def update(self, **changes: Any) -> tuple[SessionConfig, bool]:
        """Apply ``changes`` atomically (raising, and changing nothing, as
        ``dataclasses.replace`` does); the new settings, and whether their system
        instruction is new (it is then a new version)."""
        with self._lock:
            config = replace(self._config, **changes)
            changed = config.system_instruction != self._config.system_instruction
            if changed:
                self.instructions.add(config.system_instruction)
            self._config = config
            return config, changed

    def set_instruction(self, text: str) -> Instruction:
        """Make ``text`` a new version of the system instruction, and the settings' one."""
        with self._lock:
            version = self.instructions.add(text)
            self._config = replace(self._config, system_instruction=text)
            return version


class Relay:
    """One conversation with a Live backend, on its own thread and loop.

    ``start()`` opens a session (if none is running) and returns at once; ``stop()`` ends it.
    Both are idempotent and safe from any thread. The transcript survives stops and
    reconnections. ``timings`` and ``clock`` change the bounds and timings
    (:class:`~screenshare_widget.timings.Timings`) and the time source.
    """

    def __init__(
        self,
        connect: Connector,
        config: SessionConfig,
        sink: RelaySink,
        *,
        name: str = "screenshare-relay",
        toolbox: Toolbox | None = None,
        timings: Timings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._settings = NextSettings(config)
        #: The system instruction's versions.
        self.instructions = self._settings.instructions
        #: The user's tools; declared to each new connection.
        self.toolbox = toolbox if toolbox is not None else Toolbox()
        self._sink = sink
        self._name = name
        self.timings = timings if timings is not None else Timings()
        self._log = SessionLog.within(self.timings)
        self._host = LoopThread(
            name, on_start=self._new_loop, end_timeout_s=2 * self.timings.close_timeout_s
        )
        self.conversation = Conversation(
            connect,
            self._settings.current,
            sink,
            toolbox=self.toolbox,
            instructions=self.instructions,
            log=self._log,
            timings=self.timings,
            clock=clock,
        )
        uplink = self.conversation.uplink
        limit = self.timings.inbox_max_items
        self._audio_in: Inbox[tuple[bytes, float]] = Inbox(lambda a: uplink.put_audio(*a), limit)
        self._frames_in: Inbox[WaitingFrame] = Inbox(uplink.put_frame, limit)

    # ---- what the session keeps (any thread) ------------------------------------------------

    @property
    def transcript(self) -> Transcript:
        """The conversation's turns, over stops and reconnections."""
        return self._log.transcript

    @property
    def events(self) -> Events:
        """The session events, oldest first (bounded)."""
        return self._log.events

    @property
    def frames(self) -> Frames:
        """The screen frames the model was sent (bounded)."""
        return self._log.frames

    @property
    def usage(self) -> Sequence[Usage]:
        """The usage reports, oldest first (older ones folded into the first; exact sums)."""
        return self._log.usage

    @property
    def handovers(self) -> Sequence[Handover]:
        """The handovers of the session, oldest first (the newest ones kept)."""
        return self._log.handovers

    @property
    def tool_calls(self) -> Sequence[ToolActivity]:
        """Every tool call of the session as it stands now, oldest first (the newest kept)."""
        return self._log.tool_calls

    @property
    def counters(self) -> RelayCounters:
        """Running counts."""
        return self._log.counters

    @property
    def tap(self) -> RelayTap | None:
        """Called (on the relay thread) with each event, mic chunk and sent frame while set."""
        return self._log.tap

    @tap.setter
    def tap(self, tap: RelayTap | None) -> None:
        self._log.tap = tap

    @property
    def unanswered(self) -> Unanswered:
        """What the user said or typed since the last answer, for the next connection."""
        return self.conversation.core.unanswered

    @property
    def failure(self) -> LiveError | None:
        """The error that ended the last session in FAILED (None since the next start)."""
        return self.conversation.failure

    @failure.setter
    def failure(self, failure: LiveError | None) -> None:
        self.conversation.failure = failure

    @property
    def state(self) -> RelayState:
        """The current state."""
        return self.conversation.state

    @property
    def error(self) -> str:
        """The last error as a human sentence, "" if none."""
        return self.conversation.error

    @property
    def generation(self) -> int:
        """The playback generation: it grows by one at each interruption."""
        return self.conversation.core.gen

    # ---- settings (any thread) --------------------------------------------------------------

    @property
    def config(self) -> SessionConfig:
        """The settings the next connection uses."""
        return self._settings.config

    @config.setter
    def config(self, config: SessionConfig) -> None:
        """Change settings for the next connection; a new system instruction goes through
        :meth:`set_instruction` (it also reaches the running session)."""
        self.update_config(**{f.name: getattr(config, f.name) for f in fields(config)})

    def update_config(self, **changes: Any) -> SessionConfig:
        """Change some settings for the next connection in one atomic read-modify-write
        (``relay.update_config(voice="Kore")``), with the effects of the :attr:`config`
        setter; returns the new settings. Invalid changes raise as ``dataclasses.replace``
        and :class:`SessionConfig` do, and change nothing. Safe from any thread."""
        config, changed = self._settings.update(**changes)
        if changed:
            self._instruction_changed()
        return config

    def _new_loop(self) -> None:
        self.conversation.core.new_loop()
        # A drain scheduled in the old loop's last tick went with it: start afresh.
        self._audio_in.reset()
        self._frames_in.reset()

    def _instruction_changed(self) -> None:
        self.call_soon(self.conversation.core.instruction_ready.set)

    def set_instruction(self, text: str) -> Instruction:
        """Make ``text`` the system instruction; returns its version.

        A running session gets it for its next turn: by a context update where the model
        supports it, else by a resumption handover at the next pause in the conversation.
        Without a session, the next connection starts with it. Safe from any thread.
        """
        if not isinstance(text, str):
            raise TypeError("system_instruction must be a string")
        version = self._settings.set_instruction(text)
        self._instruction_changed()
        return version

    # ---- commands (any thread) --------------------------------------------------------------

    def say(self, text: str) -> Future[None]:
        """Send typed text to the model; returns at once (the future is done once queued).

        The text joins the transcript as a typed user turn. Without a session, one starts
        (no screen or microphone needed). Safe from any thread.
        """
        checked = self._check_text(text)
        future = self.run_coroutine(self.conversation.say(PendingText(checked)))
        return self._reported(future, "The text was not sent")

    def ask(self, text: str, timeout: float = ASK_TIMEOUT_S) -> Future[str]:
        """Send typed text and resolve with the text of the model's answer when its turn
        completes (or is cut short: then with what it said so far).

        Fails with ``TimeoutError`` after ``timeout`` seconds without an answer and with
        :class:`SessionEnded` if the session stops or fails first. Cancelling the future
        stops the wait only: the text was sent. Safe from any thread.
        """
        return self.run_coroutine(self.conversation.ask(self._check_text(text), timeout))

    def _check_text(self, text: object) -> str:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        if not text.strip():
            raise ValueError("text must not be empty")
        self.conversation.core.texts.check()
        return text

    def start(self) -> None:
        """Open a session unless one is already running. Returns at once; a failure is
        logged and shown as :attr:`error`."""
        self._reported(self.run_coroutine(self.conversation.start()), "The session did not start")

    def _reported(self, future: Future[_T], what: str) -> Future[_T]:
        """``future``, whose failure is logged and shown to the user (the sink's error)
        even if nobody reads it: a command sent off and forgotten never fails silently."""
        future.add_done_callback(partial(_command_failed, what, self.conversation, self._host))
        return future

    def stop(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """End the session (a clean end, not an error). With ``wait``, block until it ended
        or ``timeout`` seconds passed (default: a second more than ``close_timeout_s``).
        Safe to call when nothing runs; a stop cut short by :meth:`close` is no error."""
        if self._host.loop is None:
            return
        future = self.run_coroutine(self.conversation.stop())
        if wait and not self._host.on_thread:
            limit = self.timings.close_timeout_s + 1 if timeout is None else timeout
            try:
                future.result(limit)
            except (TimeoutError, FutureCancelled):
                pass

    def close(self, *, wait: bool = True) -> None:
        """Stop the session and end the relay's thread. With ``wait`` (and off the relay's
        thread), block until both ended, at most about twice ``close_timeout_s``;
        without, return at once. Idempotent."""
        limit = 2 * self.timings.close_timeout_s
        self._host.close(self.conversation.stop, wait=wait, timeout=limit)

    def feed_audio(self, pcm: bytes, t_ms: float = 0.0) -> None:
        """Hand over microphone audio (PCM16 LE mono, 16 kHz); ``t_ms`` is when the page
        captured its end (ms since the epoch, 0 for now), so speech is dated when it was
        spoken, not when it arrived. Never blocks; chunks that come while the loop is busy
        wait together for one callback."""
        self._audio_in.put((pcm, t_ms), self.call_soon)

    def feed_frame(
        self, jpeg: bytes, width: int = 0, height: int = 0, *, seq: int = -1, reason: str = ""
    ) -> None:
        """Hand over a screen frame (JPEG, size in pixels; the page's ``seq`` and why it sent
        it). Never blocks; a newer frame replaces a waiting one."""
        self._frames_in.put(WaitingFrame(jpeg, width, height, seq, reason), self.call_soon)

    def end_audio(self) -> Future[None]:
        """Say the microphone stream ended, so the service answers an utterance still open
        (a replay's end). Safe from any thread."""
        return self.run_coroutine(self.conversation.end_audio())

    def at_rest(self) -> bool:
        """Whether the conversation is at a turn boundary: the model is silent, nothing the
        user said or typed waits for an answer, and the microphone is quiet. Asked on the
        relay's loop, which owns that state (the caller waits for one loop turn)."""
        answer: Future[bool] = Future()

        def look() -> None:
            try:
                answer.set_result(self.conversation.at_rest())
            except BaseException as exc:  # the caller's to see
                answer.set_exception(exc)

        if self._host.on_thread or not self._host.call_soon(look):
            return self.conversation.at_rest()  # on the loop, or no loop runs to race with
        while True:
            try:
                return answer.result(0.05)
            except TimeoutError:
                loop = self._host.loop
                if loop is None or not loop.is_running():  # it stopped before it looked
                    return self.conversation.at_rest()

    def run_coroutine(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        """Run ``coro`` on the relay's loop (starting the thread if needed)."""
        return self._host.submit(coro)

    def call_soon(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` soon on the relay's loop (it must not block); False, and nothing runs,
        when the loop is not running or already closed. Safe from any thread."""
        return self._host.call_soon(fn)

    def log_event(self, kind: EventKind, **detail: object) -> None:
        """Add an event from outside the relay, stamped now (any thread)."""
        self._log.log_event(kind, self.conversation.clock.now(), **detail)

    # ---- for tests and the widget: the loop and a few loop-owned fields -----------------------

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self._host.loop

    @property
    def _thread(self) -> threading.Thread | None:
        return self._host.thread


def _command_failed(
    what: str, conversation: Conversation, host: LoopThread, future: Future[Any]
) -> None:
    """Log the failure of a command's ``future`` (``what`` says which) and show it as the
    conversation's error, on its loop."""
    if future.cancelled() or (exc := future.exception()) is None:
        return
    logger.error("%s", what, exc_info=exc)
    report = partial(conversation.report, f"{what}: {exc}")
    if host.on_thread:
        report()
    else:
        host.call_soon(report)
