"""The content of a conversation: its shared state, and what the model says.

Internal module. :class:`Core` is the state the parts of one conversation share (the
buffers, who has the floor, the session log, the open connection and its capabilities,
the playback generation); the parts are the :class:`Dialogue` here (server messages,
model turns, the asks waiting for answers, tool calls), the uplink
(:mod:`~screenshare_widget.uplink`), the handovers (:mod:`~screenshare_widget.handover`)
and the lifecycle (:mod:`~screenshare_widget.conversation`). All run on the relay loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .backend import LiveError, LiveSession, ServerMessage, ToolCall
from .echo import ECHO_NOTICE, EchoWatch
from .events import EventKind
from .instructions import Instructions
from .policy import Floor
from .protocol import OUTPUT_RATE_HZ, SAMPLE_BYTES
from .pumps import FrameSlot, MicBuffer, ReplyWaiter, TextQueue, ToolRunner, Unanswered
from .session_log import SessionLog, emit
from .timings import Clock, Timings
from .tools import ToolActivity, Toolbox, activity, finished
from .transcript import Turn

if TYPE_CHECKING:
    from .conversation import RelaySink, RelayState

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


class SessionEnded(Exception):
    """The session stopped or failed before the model answered a question."""


@dataclass(eq=False)
class Core:
    """What the parts of one conversation share. Relay loop only, except the log's
    collections (thread-safe to read)."""

    timings: Timings
    clock: Clock
    sink: RelaySink
    log: SessionLog
    toolbox: Toolbox
    instructions: Instructions
    floor: Floor = field(init=False)
    unanswered: Unanswered = field(default_factory=Unanswered)
    mic: MicBuffer = field(init=False)
    frame: FrameSlot = field(default_factory=FrameSlot)
    texts: TextQueue = field(init=False)
    tools: ToolRunner = field(init=False)
    #: The open connection, if any (its ``capabilities`` are the live model's).
    session: LiveSession | None = None
    #: Where the conversation is (written by the Conversation's ``set_state`` only).
    state: RelayState | None = None
    #: The latest resumable handle of this session.
    handle: str | None = None
    #: The playback generation: it grows by one at each interruption.
    gen: int = 0
    #: Model turns begun so far (answers to texts are counted by it).
    model_turns: int = 0
    waiters: list[ReplyWaiter] = field(default_factory=list)
    #: What the model said and the user's words, to tell when it hears itself.
    echo: EchoWatch = field(default_factory=EchoWatch)
    #: A reply was under way when its connection ended: the page may still play it.
    flush_on_reply: bool = False
    #: An interrupted came without turnComplete: the next turnComplete before any new
    #: output closes the interrupted turn (the real service sends both; research D4).
    interrupted_tail: bool = False
    #: Monotonic time of the last microphone audio sent (None: none since the handover).
    last_audio_sent: float | None = None
    #: Monotonic time of the last server message or pong.
    heard_at: float = 0.0
    #: The instruction version the current connection has.
    connected_version: int = 0
    instruction_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.floor = Floor(self.timings)
        self.mic = MicBuffer(self.timings.mic_buffer_bytes)
        self.texts = TextQueue(self.timings.max_pending_texts)
        self.tools = ToolRunner(self.timings.tool_cancel_timeout_s, self._task_failed)

    def new_loop(self) -> None:
        """Make the loop-bound events anew: the relay's thread starts a new loop after a
        close, and an ``asyncio.Event`` belongs to the loop it first waited on."""
        self.instruction_ready = asyncio.Event()
        self.mic.ready = asyncio.Event()
        self.frame.ready = asyncio.Event()
        self.texts.ready = asyncio.Event()

    def record(self, kind: EventKind, at: datetime | None = None, **detail: object) -> None:
        """Add an event, dated ``at`` or now."""
        self.log.log_event(kind, at or self.clock.now(), **detail)

    def emit(self, method: Callable[..., None], *args: object) -> None:
        """Call a sink ``method`` (a failing sink is logged, never breaks the relay)."""
        emit(method, *args)

    def turns(self, indexes: list[int]) -> None:
        """Tell the sink transcript turns ``indexes`` changed."""
        if indexes:
            self.emit(self.sink.on_turns, self.indexed(indexes))

    def indexed(self, indexes: list[int]) -> list[tuple[int, Turn]]:
        """The turns ``indexes`` with their numbers."""
        transcript = self.log.transcript
        return [(i, transcript[i]) for i in indexes]

    def _task_failed(self, name: str, exc: BaseException) -> None:
        self.record("task_failed", task=name, error=f"{type(exc).__name__}: {exc}")


class Dialogue:
    """What the model says: every field of every server message, the model's turns, the
    asks waiting for their answers, and the tool calls the model makes."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def handle(self, m: ServerMessage) -> None:
        """Apply every field of one server message (they can all come together)."""
        c = self.core
        if m.interrupted:
            self._interrupted(m)
        if m.audio or m.output_transcription or m.text or m.tool_calls:
            c.interrupted_tail = False  # the model goes on: a turnComplete is its own
            c.floor.model_heard(c.clock.monotonic())
        if m.input_transcription:
            c.turns(c.log.transcript.add_input(m.input_transcription))
            now = c.clock.monotonic()
            c.echo.user_text(m.input_transcription, now, c.floor.last_voice_at)
        if m.audio:
            self._audio(m.audio)
        text = m.output_transcription or m.text
        if text:
            if not c.floor.model_speaking:
                self.model_began()
            c.turns(c.log.transcript.add_output(text))
            c.echo.model_text(text, c.clock.monotonic())
        if m.usage is not None:
            self._usage(m)
        if m.generation_complete:
            c.floor.generation_done = True
            c.floor.model_heard(c.clock.monotonic())
            if not m.turn_complete:
                # No more audio is coming; the service sends turnComplete only once the
                # audio would have finished playing, possibly after the page played it all.
                c.emit(c.sink.on_turn_complete, c.gen)
        if m.turn_complete:
            self._turn_complete(m)
        if m.resumption_handle:
            c.handle = m.resumption_handle
        for call in m.tool_calls:
            c.record("tool_call", id=call.id, name=call.name, args=dict(call.args))
            self.start_tool(call)
        for call_id in m.cancelled_tool_calls:
            c.tools.cancel(call_id)
        if m.unhandled:
            logger.debug("server message fields not used: %s", ", ".join(m.unhandled))

    def _interrupted(self, m: ServerMessage) -> None:
        c = self.core
        c.record("interrupted")
        c.echo.interrupted(c.clock.monotonic())
        c.floor.awaiting_answer = True  # the user barged in; an answer to that will come
        c.gen += 1
        c.emit(c.sink.on_interrupted, c.gen)
        self.end_model_turn(interrupted=True)
        c.unanswered.interrupted()
        # The real service ends an interrupted turn with a turnComplete of its own.
        c.interrupted_tail = not m.turn_complete

    def _audio(self, pcm: bytes) -> None:
        c = self.core
        if not c.floor.model_speaking:
            self.model_began()
            c.record("first_audio")
            c.turns(c.log.transcript.model_started())
        c.echo.model_audio(len(pcm) / (OUTPUT_RATE_HZ * SAMPLE_BYTES), c.clock.monotonic())
        c.log.counters.audio_chunks_out += 1
        c.log.counters.audio_bytes_out += len(pcm)
        c.log.to_tap("on_model_audio", pcm)
        c.emit(c.sink.on_audio, pcm, c.gen)

    def _usage(self, m: ServerMessage) -> None:
        c = self.core
        assert m.usage is not None
        usage = replace(m.usage, at=c.clock.now())
        c.log.usage.append(usage)
        c.record(
            "usage",
            at=usage.at,
            prompt_tokens=usage.prompt_tokens,
            response_tokens=usage.response_tokens,
            total_tokens=usage.total_tokens,
            by_modality=dict(usage.by_modality),
        )
        c.emit(c.sink.on_usage, usage)

    def _turn_complete(self, m: ServerMessage) -> None:
        # The end of an interrupted turn (with its usage), not of the exchange that the
        # barge-in began: the user's words may still be arriving.
        c = self.core
        tail = m.interrupted or c.interrupted_tail
        c.interrupted_tail = False
        c.record("turn_complete", interrupted=tail)
        if not tail:
            if c.floor.model_speaking:
                c.unanswered.answered()
            c.floor.awaiting_answer = False
            self.end_model_turn(interrupted=False)
        c.emit(c.sink.on_turn_complete, c.gen)

    def model_began(self) -> None:
        """The model's reply began (its first audio or text)."""
        c = self.core
        if c.flush_on_reply:
            # The old connection's reply may still be playing: this one replaces it.
            c.flush_on_reply = False
            c.gen += 1
            c.emit(c.sink.on_interrupted, c.gen)
            c.echo.interrupted(c.clock.monotonic())
        c.echo.model_began(c.clock.monotonic())
        c.floor.model_began(c.clock.monotonic())
        c.model_turns += 1
        c.unanswered.reply_began()

    def end_model_turn(self, *, interrupted: bool, resolve: bool = True) -> None:
        """The model's turn ended; with ``resolve``, the asks it answers get its text."""
        c = self.core
        was_speaking = c.floor.model_ended()
        changed = c.log.transcript.end_exchange(interrupted=interrupted)
        c.turns(changed)
        if was_speaking and resolve:
            for index in changed:
                turn = c.log.transcript[index]
                if turn.role == "model":
                    self._answered(turn)

    def _answered(self, turn: Turn) -> None:
        """Model turn number ``model_turns`` ended as ``turn``: resolve the questions it
        answers."""
        c = self.core
        for waiter in list(c.waiters):
            if waiter.turn is not None and waiter.turn <= c.model_turns:
                c.waiters.remove(waiter)
                if not waiter.future.done():
                    waiter.future.set_result(turn.text.strip())

    def check_echo(self) -> None:
        """Judge the user's words once settled (each relay tick): when they repeat what the
        model had just said, the model may be hearing itself. That is an ``echo_suspected``
        event, and at most once a minute a note in the cell (:data:`~.echo.ECHO_NOTICE`);
        the transcript keeps the words as they came."""
        c = self.core
        suspected = c.echo.settle(c.clock.monotonic())
        if suspected is None:
            return
        logger.info("echo suspected: %r repeats %r", suspected.heard, suspected.matched)
        c.record(
            "echo_suspected",
            heard=suspected.heard,
            matched=suspected.matched,
            share=round(suspected.share, 2),
            notice=suspected.notice,
        )
        if suspected.notice:
            c.emit(c.sink.on_notice, ECHO_NOTICE)

    def abandon_questions(self, why: str) -> None:
        """The session ended: every ask still waiting fails with :class:`SessionEnded`."""
        for waiter in self.core.waiters:
            if not waiter.future.done():
                waiter.future.set_exception(SessionEnded(why))
        self.core.waiters.clear()

    # ---- tools ------------------------------------------------------------------------------

    def start_tool(self, call: ToolCall) -> None:
        """Run the tool the model asked for, off the receive loop."""
        c = self.core
        session = c.session
        if session is None:
            return
        confirm = c.toolbox.needs_confirmation(call.name)
        index = c.log.tool_calls.append(activity(call.id, call.name, call.args, confirm=confirm))
        c.emit(c.sink.on_tool, index, c.log.tool_calls.get(index))
        c.tools.start(
            call.id or f"#{index}", self._run_tool(session, call, index), f"relay.tool.{call.name}"
        )

    def _tool_ended(self, index: int, done: ToolActivity, detail: dict[str, Any]) -> None:
        c = self.core
        c.log.tool_calls.replace(index, done)
        c.record("tool_result", **detail)
        c.emit(c.sink.on_tool, index, done)

    async def _run_tool(self, session: LiveSession, call: ToolCall, index: int) -> None:
        """Call the tool and answer the model, with ``when_idle`` as the connection's model
        (``session.capabilities``) allows; cancellation (a ``toolCallCancellation`` or the
        connection's end) answers nothing."""
        c = self.core
        started = time.monotonic()  # (as tools.finished measures the call)
        before = c.log.tool_calls.get(index) or activity(call.id, call.name, call.args)
        try:
            response = await c.toolbox.call(call.name, call.args, call.id)
        except asyncio.CancelledError:
            done, detail = finished(before, None, started)
            self._tool_ended(index, done, detail)
            raise
        done, detail = finished(before, response, started)
        self._tool_ended(index, done, detail)
        try:
            await session.send_tool_response(
                call.id, call.name, response.payload, when_idle=session.capabilities.async_tools
            )
        except LiveError as exc:  # the connection broke; its pumps report that
            logger.warning("the answer of tool %s was not delivered: %s", call.name, exc.message)
