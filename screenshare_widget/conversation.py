"""The async core of the relay: one conversation's lifecycle, on one event loop.

Internal module. A :class:`Conversation` is the state machine (:class:`RelayState`,
:data:`TRANSITIONS`; :meth:`Conversation.set_state` is the only place that changes the
state, and it mirrors it to the sink) and the reconnect loop around one connection at a
time. Each connection runs its named tasks in one ``asyncio.TaskGroup`` (send audio,
frames and texts, receive, keepalive, the goAway handover, new instructions): the first to
fail ends its siblings, and the cause (a handover before a Live error before anything
else) decides what happens next, by the :class:`~screenshare_widget.policy.ReconnectPolicy`.

Nothing here starts a thread, and time comes from the injected clock and timings
(:mod:`~screenshare_widget.timings`), so tests drive a conversation on pytest-asyncio
with a fake clock. The parts it composes: :class:`~screenshare_widget.dialogue.Dialogue`
(what the model says), :class:`~screenshare_widget.uplink.Uplink` (what goes to it),
:class:`~screenshare_widget.handover.Handovers`, over one shared
:class:`~screenshare_widget.dialogue.Core`. The thread-safe facade is
:class:`~screenshare_widget.relay.Relay`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, Final, Protocol

from .backend import Capabilities, Connector, LiveError, LiveSession, Usage
from .config import SessionConfig
from .dialogue import Core, Dialogue
from .events import Handover, SentFrame
from .handover import INSTRUCTION_HANDOVER, HandoverDue, Handovers
from .instructions import AppliedBy, Instruction, Instructions
from .policy import ReconnectPolicy
from .pumps import PendingText
from .session_log import SessionLog
from .timings import Clock, SystemClock, Timings
from .tools import ToolActivity, Toolbox
from .transcript import Turn
from .uplink import Uplink, new_waiter

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


class RelayState(enum.Enum):
    """Where the conversation is. The value is what the widget's ``status`` shows: note
    that :attr:`FAILED` shows as ``"error"``."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    FAILED = "error"


TRANSITIONS: Final[dict[RelayState, frozenset[RelayState]]] = {
    RelayState.IDLE: frozenset({RelayState.CONNECTING}),
    RelayState.CONNECTING: frozenset(
        {RelayState.LIVE, RelayState.RECONNECTING, RelayState.CLOSING, RelayState.FAILED}
    ),
    RelayState.LIVE: frozenset({RelayState.RECONNECTING, RelayState.CLOSING, RelayState.FAILED}),
    RelayState.RECONNECTING: frozenset({RelayState.LIVE, RelayState.CLOSING, RelayState.FAILED}),
    RelayState.CLOSING: frozenset({RelayState.IDLE}),
    RelayState.FAILED: frozenset({RelayState.CONNECTING, RelayState.IDLE}),
}
#: The states in which no session takes media.
_AT_REST: Final = frozenset({RelayState.IDLE, RelayState.CLOSING, RelayState.FAILED})


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
        """Every ``ack_interval_s`` while a session runs (for uplink acks)."""

    def on_handover(self, handover: Handover) -> None:
        """The conversation moved to a new connection."""

    def on_instruction(self, instruction: Instruction) -> None:
        """A version of the system instruction reached the model (it is applied)."""

    def on_tool(self, index: int, call: ToolActivity) -> None:
        """Tool call number ``index`` started or ended."""

    def on_frame(self, frame: SentFrame, seq: int) -> None:
        """Screen frame ``seq`` (as the page numbered it, -1 if unknown) went to the model."""

    def on_notice(self, text: str) -> None:
        """A sentence for the user, shown in the cell (the model may be hearing itself)."""


#: The settings of the next connection and the instruction version they carry.
Settings = Callable[[], tuple[SessionConfig, int]]


class Conversation:
    """One conversation with a Live backend, on the running loop (created on it).

    :meth:`start` opens a session unless one runs; :meth:`stop` ends it (cancellation of
    the session's task closes the connection and ends in IDLE). The transcript and the
    rest of the log survive stops and reconnections.
    """

    def __init__(
        self,
        connect: Connector,
        settings: Settings,
        sink: RelaySink,
        *,
        toolbox: Toolbox,
        instructions: Instructions,
        log: SessionLog | None = None,
        timings: Timings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.timings = timings if timings is not None else Timings()
        self.clock: Clock = clock if clock is not None else SystemClock()
        log = log if log is not None else SessionLog.within(self.timings)
        self.core = Core(self.timings, self.clock, sink, log, toolbox, instructions)
        self.core.state = RelayState.IDLE
        self.dialogue = Dialogue(self.core)
        self.handovers = Handovers(self.core)
        self.uplink = Uplink(self.core, self.handovers, self.accepting)
        self.policy = ReconnectPolicy(self.timings)
        self.link = Connection(connect, settings, self)
        #: The error that ended the last session in FAILED (None since the next start).
        self.failure: LiveError | None = None
        self._state = RelayState.IDLE
        self._error = ""
        self._state_lock = threading.Lock()  # the state is read from other threads
        self._task: asyncio.Task[None] | None = None

    # ---- state ------------------------------------------------------------------------------

    @property
    def state(self) -> RelayState:
        """The current state."""
        return self._state

    @property
    def error(self) -> str:
        """The last error as a human sentence, "" if none."""
        return self._error

    def set_state(self, new: RelayState, error: str = "") -> None:
        """Move to ``new`` (a move :data:`TRANSITIONS` allows, else ``RuntimeError``) and
        tell the sink; the same state with a new error is told too."""
        with self._state_lock:
            old = self._state
            if new is old:
                if error == self._error:
                    return
            elif new not in TRANSITIONS[old]:
                raise RuntimeError(f"relay cannot move from {old.value} to {new.value}")
            self._state = new
            self._error = error
        self.core.state = new
        logger.debug("relay %s -> %s %s", old.value, new.value, error)
        self.core.emit(self.core.sink.on_state, new, error)

    def report(self, message: str) -> None:
        """Show ``message`` (a command that failed: a text refused, a start that broke) as
        the error, in the current state; the next change of state replaces it."""
        self.set_state(self._state, message)

    def accepting(self) -> bool:
        """Whether a session runs that takes media (not idle, closing or failed)."""
        return self._state not in _AT_REST

    def at_rest(self) -> bool:
        """Whether the conversation is at a turn boundary: the model is silent, nothing the
        user said or typed waits for an answer, and the microphone is quiet."""
        return not self.core.texts and self.core.floor.in_pause(self.clock.monotonic())

    # ---- commands (loop) ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open a session unless one runs; a session closing is waited for first."""
        if self._task is not None and not self._task.done():
            if self._state is not RelayState.CLOSING:
                return
            await settled(self._task)
        c = self.core
        self.failure = None
        self.policy = ReconnectPolicy(self.timings)  # the budget is per session
        self.uplink.new_session()
        # Nothing of the last session's conversation state carries over.
        c.floor.new_session()
        c.interrupted_tail = c.flush_on_reply = False
        # A new session starts fresh: the model does not get the context of one that was
        # stopped (the transcript, in Python, goes on). Handovers within a session resume.
        c.handle = None
        self.set_state(RelayState.CONNECTING)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="relay.run")
        self._task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """End the session (a clean end), waiting for it at most ``close_timeout_s``.
        Cancelling the wait leaves the session stopping and propagates."""
        task = self._task
        if task is None or task.done():
            if self._state is RelayState.FAILED:
                self.set_state(RelayState.IDLE)
            return
        self.set_state(RelayState.CLOSING)
        task.cancel()
        await settled(task, self.timings.close_timeout_s)

    async def close(self) -> None:
        """:meth:`stop`, for a caller whose loop outlives the conversation: a session task
        that outlived the stop's bound (a close that hangs) is cancelled again and waited
        for at most ``close_timeout_s`` more; one that still runs then is left, with a
        warning. Cancelling the wait propagates."""
        await self.stop()
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await settled(task, self.timings.close_timeout_s)
        if not task.done():
            logger.warning(
                "the session ignored cancellation for %g s and is left running",
                2 * self.timings.close_timeout_s,
            )

    async def say(self, item: PendingText) -> None:
        """Queue typed text, starting a session if none runs (no screen or microphone
        needed). Raises ``RuntimeError`` when too many texts wait."""
        self.core.texts.check()
        if self._state in _AT_REST:
            await self.start()
        self.uplink.put_text(item)

    async def ask(self, text: str, limit_s: float) -> str:
        """Send ``text`` and return the text of the model's answer (see ``Relay.ask``);
        ``limit_s`` seconds on the conversation's clock from when the text is queued, then
        ``TimeoutError``. Cancelling ends the wait (the text stays sent)."""
        c = self.core
        waiter = new_waiter()
        c.waiters.append(waiter)
        expiry: asyncio.Future[None] | None = None
        try:
            await self.say(PendingText(text, waiter))
            expiry = asyncio.ensure_future(self.clock.sleep(limit_s))  # the injected clock
            either: set[asyncio.Future[Any]] = {waiter.future, expiry}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.future.done():
                raise TimeoutError(f"The model did not answer within {limit_s:g} s.")
            return await waiter.future
        finally:
            if expiry is not None:
                expiry.cancel()
            waiter.future.cancel()  # timed out or cancelled: no answer is awaited any more
            if waiter in c.waiters:
                c.waiters.remove(waiter)

    async def end_audio(self) -> None:
        """The microphone stream ended: close the utterance, and tell a live connection."""
        if self.core.floor.user_speaking:
            self.uplink.speech_ended()
        session = self.core.session
        if session is not None and self._state is RelayState.LIVE:
            await session.end_audio()

    # ---- the session ----------------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, pump, and reconnect on recoverable ends until stopped or failed.

        Recoverable ends (goAway, drops, 1011, a stalled server) reconnect with the latest
        resumable handle, as the :class:`~screenshare_widget.policy.ReconnectPolicy`
        decides; fatal errors (bad key, unknown model, rejected settings) end in FAILED at
        once. Cancelling it (``stop()``) closes the connection and ends in IDLE.
        """
        ticker = asyncio.get_running_loop().create_task(self._tick(), name="relay.tick")
        ended: str | None = None  # why the previous connection ended; None before the first
        try:
            go_on = True
            while go_on:
                handle = self.core.handle
                self.link.opened_at = None
                try:
                    await self.link.run(handle, ended)
                except HandoverDue as due:
                    self._raise_if_stopping()
                    self.policy.handed_over()
                    ended = due.reason
                    self._reconnecting("")
                except LiveError as exc:
                    self._raise_if_stopping()
                    go_on, ended = await self._after_error(exc, handle, ended)
                except Exception as exc:  # a bug, not a network event: say so and stop
                    logger.exception("the relay failed")
                    self._raise_if_stopping()
                    message = f"The relay failed unexpectedly ({type(exc).__name__}: {exc})."
                    self._fail(LiveError(message, fatal=True))
                    return
        except asyncio.CancelledError:
            self._wind_down("The session stopped before the model answered.")
            if self._state is not RelayState.CLOSING:
                self.set_state(RelayState.CLOSING)
            self.set_state(RelayState.IDLE)
            raise
        finally:
            ticker.cancel()

    def _raise_if_stopping(self) -> None:
        """A connection that ended as :meth:`stop` cancelled the session is a stop: Python
        3.11's TaskGroup gives a child's error priority over the parent's cancellation
        (the ``CancelledError`` is lost, and its count stays raised after any child's
        error), so the state, set before the cancel, is what tells."""
        if self._state is RelayState.CLOSING:
            raise asyncio.CancelledError

    async def _after_error(
        self, exc: LiveError, handle: str | None, ended: str | None
    ) -> tuple[bool, str | None]:
        """Act on a connection's end in ``exc``: whether to go on, and why it ended."""
        opened = self.link.opened_at
        up_s = None if opened is None else self.clock.monotonic() - opened
        decision = self.policy.after(exc, resumed=handle is not None, up_s=up_s)
        said = f"{exc.code}: {exc.reason or exc.message}"
        if decision.action == "again":
            # Maybe the old connection is not closed yet on the service's side (it refuses
            # a concurrent resume with 1011): once more.
            logger.warning("the service refused to resume (%s); once more", said)
            self.set_state(RelayState.RECONNECTING, exc.message)
            await self.clock.sleep(decision.delay_s)
            return True, ended
        if decision.action == "fresh":
            logger.warning("the service refused to resume (%s); starting a fresh session", said)
            self.core.handle = None
            refusal = f"the service refused to resume ({said})"
            return True, f"{ended}, then {refusal}" if ended else refusal
        if decision.action == "fail":
            self._fail(exc)
            return False, ended
        logger.warning("Live connection ended (%s); reconnecting", exc.message)
        self._reconnecting(exc.message)
        await self.clock.sleep(decision.delay_s)
        return True, f"{exc.code}: {exc.reason}" if exc.code else exc.message

    def _wind_down(self, why: str) -> None:
        """The session ends: close the open turns, drop what waits, fail the asks."""
        c = self.core
        self.dialogue.end_model_turn(interrupted=True)
        self.uplink.end_speech()
        c.emit(c.sink.on_turns, c.indexed(c.log.transcript.close_open()))
        self.uplink.clear()
        self.dialogue.abandon_questions(why)

    def _reconnecting(self, message: str) -> None:
        c = self.core
        c.log.counters.reconnects += 1
        self.handovers.finish(None)
        if c.floor.model_speaking:
            # The new connection will not continue this answer: it was cut short, unless
            # all of it had come (only turnComplete was missing). A cut answer's question
            # goes again to the new connection: its ask() waits for that answer.
            done = c.floor.generation_done
            self.dialogue.end_model_turn(interrupted=not done, resolve=done)
            if done:
                c.unanswered.answered()
                c.floor.awaiting_answer = c.unanswered.has_texts
            # The page may still play this reply when the next begins: flush it then.
            c.flush_on_reply = True
        c.interrupted_tail = False
        self.set_state(RelayState.RECONNECTING, message)

    def _fail(self, exc: LiveError) -> None:
        message = exc.message
        attempts = self.policy.attempts
        if attempts >= self.timings.max_reconnects and not exc.fatal:
            last = f"{exc.code}: {exc.reason}" if exc.code else exc.reason or exc.message
            message = (
                f"The Live connection kept failing ({last}): gave up after {attempts} "
                "reconnection attempts. Check the network, then Share again."
            )
        logger.error("Live session failed: %s", message)
        self.failure = exc
        self.handovers.finish(None)
        self._wind_down(f"The session failed before the model answered: {message}")
        self.set_state(RelayState.FAILED, message)

    async def _tick(self) -> None:
        while True:
            await self.clock.sleep(self.timings.ack_interval_s)
            self.dialogue.check_echo()
            self.core.emit(self.core.sink.on_tick)


class Connection:
    """One connection at a time: open it, run its named tasks in one task group until the
    first ends, close it. Relay loop only."""

    def __init__(
        self,
        connect: Connector,
        settings: Settings,
        conversation: Conversation,
    ) -> None:
        self._connect = connect
        self._settings = settings
        self.core = conversation.core
        self.timings, self.clock = conversation.timings, conversation.clock
        self.dialogue = conversation.dialogue
        self.uplink = conversation.uplink
        self.handovers = conversation.handovers
        self._live = partial(conversation.set_state, RelayState.LIVE)
        #: When the current connection opened (clock s; None: it has not opened).
        self.opened_at: float | None = None

    def _connect_config(self) -> tuple[SessionConfig, int]:
        """The next connection's settings with the tools declared for its model."""
        config, version = self._settings()
        try:
            declarations = self.core.toolbox.declarations(
                non_blocking=Capabilities.of(config.model).async_tools
            )
        except (TypeError, ValueError, RuntimeError) as exc:
            raise LiveError(
                f"The tools cannot be used: {exc}", fatal=True, blames=("tools",)
            ) from None
        return replace(config, tools=declarations), version

    async def run(self, handle: str | None, ended: str | None) -> None:
        """One connection: open it (resuming ``handle``), run its tasks until one ends,
        close it. ``ended`` says why the previous connection ended (None for the first).
        The tools still running at its end are cancelled (bounded)."""
        c = self.core
        config, version = self._connect_config()
        async with self._connect(config, handle) as session:
            c.session = session
            c.log.counters.connections += 1
            self.opened_at = self.clock.monotonic()
            if ended is not None:
                self.handovers.begin(ended, handle is not None)
            by: AppliedBy = "handover" if ended == INSTRUCTION_HANDOVER else "setup"
            self.handovers.instruction_applied(version, by)
            try:
                c.heard_at = self.clock.monotonic()
                if ended is not None:
                    await self.handovers.replay(session)
                self._live()
                await self._tasks(session)
            finally:
                c.session = None
                await c.tools.cancel_all("the connection ended")

    async def _tasks(self, session: LiveSession) -> None:
        """The connection's tasks in one group; the first to fail ends the others, and its
        exception is raised as is."""
        go_away: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        uplink, handovers = self.uplink, self.handovers
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(uplink.send_audio(session), name="relay.send_audio")
                group.create_task(uplink.send_frames(session), name="relay.send_frames")
                group.create_task(self._receive(session, go_away), name="relay.receive")
                group.create_task(self._keepalive(session), name="relay.keepalive")
                group.create_task(handovers.after_goaway(go_away), name="relay.after_goaway")
                group.create_task(uplink.send_texts(session), name="relay.send_texts")
                group.create_task(
                    handovers.apply_instructions(session), name="relay.apply_instructions"
                )
        except BaseExceptionGroup as group_error:
            raise first_cause(group_error) from None

    async def _receive(self, session: LiveSession, go_away: asyncio.Future[float]) -> None:
        """Handle server messages until the connection ends; a goAway sets ``go_away`` to
        the clock time by which to hand over."""
        async for message in session.receive():
            self.core.heard_at = self.clock.monotonic()
            self.dialogue.handle(message)
            if message.go_away_s is not None and not go_away.done():
                left = message.go_away_s
                logger.info("the service will close this connection in %.1f s", left)
                margin = self.timings.goaway_margin_s
                go_away.set_result(self.clock.monotonic() + max(0.0, left - margin))
        raise LiveError("The Live session ended.", code=1000, fatal=False)

    async def _keepalive(self, session: LiveSession) -> None:
        """Declare the connection dead after ``silence_limit_s`` with neither a server
        message nor a pong; ping every ``keepalive_interval_s`` while no ping is
        outstanding. A late pong is no failure: the real service's come 8-30 s late.
        Cancellation cancels the outstanding ping's wait."""
        c, t = self.core, self.timings
        ping: asyncio.Task[None] | None = None

        async def round_trip() -> None:
            try:
                await session.ping()
            except LiveError:
                return  # a broken socket is the receiver's to report
            c.heard_at = self.clock.monotonic()

        try:
            while True:
                silent = self.clock.monotonic() - c.heard_at
                if silent >= t.silence_limit_s:
                    raise LiveError(
                        "The Live service went silent: no message and no answer to a ping "
                        f"for {t.silence_limit_s:.0f} s. Reconnecting.",
                        code=1006,
                        reason="keepalive timeout",
                        fatal=False,
                    )
                if ping is None or ping.done():
                    ping = asyncio.create_task(round_trip(), name="relay.ping")
                    ping.add_done_callback(_log_failure)
                await self.clock.sleep(min(t.keepalive_interval_s, t.silence_limit_s - silent))
        finally:
            if ping is not None:
                ping.cancel()


async def settled(task: asyncio.Future[None], limit_s: float | None = None) -> None:
    """Wait until ``task`` ended, at most ``limit_s`` seconds (None: no bound). Its own
    cancellation is not an error here; the caller's is, and propagates."""
    try:
        async with asyncio.timeout(limit_s):
            await asyncio.shield(task)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled, not only the task we waited for


def first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that ended a task group: a handover or Live error before anything else."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (HandoverDue, LiveError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0]


def _log_failure(task: asyncio.Task[None]) -> None:
    """A task's exception never vanishes: it is logged when the task ends with one."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("relay task %s failed", task.get_name(), exc_info=task.exception())
