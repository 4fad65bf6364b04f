"""Handovers: moving a conversation to a new connection without losing what was said.

Internal module. A handover is due (:class:`HandoverDue`, raised by a connection's task)
after a goAway, or when a new system instruction needs a new setup; either waits for a
pause in the conversation, within a bound. On the new connection, what the user said or
typed since the model's last answer is replayed (:meth:`Handovers.replay`); the handover
is finished and recorded (:class:`~screenshare_widget.events.Handover`) when the first
audio went out on the new connection, which dates the gap. Relay loop only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from .backend import LiveSession
from .instructions import AppliedBy
from .policy import PendingHandover
from .protocol import INPUT_RATE_HZ, SAMPLE_BYTES
from .pumps import Said

if TYPE_CHECKING:
    from .dialogue import Core

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: The handover reason when a new system instruction needs a new connection.
INSTRUCTION_HANDOVER: Final = "new system instruction"


class HandoverDue(Exception):
    """Move to a new connection: the service announced the end of this one (goAway), or a
    new system instruction needs a new setup. ``reason`` goes into the
    :class:`~screenshare_widget.events.Handover`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Handovers:
    """The handover under way (:attr:`pending`), the replay, and the two waits for a
    pause that end in :class:`HandoverDue`."""

    def __init__(self, core: Core) -> None:
        self.core = core
        #: The handover begun and not yet finished, if any.
        self.pending: PendingHandover | None = None

    def begin(self, reason: str, resumed: bool) -> None:
        """A new connection opened after the last ended because of ``reason``."""
        self.pending = PendingHandover(self.core.clock.now(), reason, resumed)

    def finish(self, gap_ms: float | None) -> None:
        """Record the pending handover (if any) with the audio gap it caused."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        c = self.core
        handover = pending.finish(gap_ms)
        c.log.handovers.append(handover)
        c.record(
            "handover",
            reason=handover.reason,
            resumed=handover.resumed,
            gap_ms=gap_ms,
            replayed_s=handover.replayed_s,
            lost_s=handover.lost_s,
        )
        logger.info("handed over to a new connection: %s", handover)
        c.emit(c.sink.on_handover, handover)

    async def replay(self, session: LiveSession) -> None:
        """Send the new connection what the user said or typed since the last answer, so a
        question the old connection heard but did not answer is not lost. A send that
        fails puts what was not sent back, for the next connection; cancellation too."""
        c = self.core
        taken = c.unanswered.take()
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
            c.turns(c.log.transcript.expect_retranscription(question=not taken.barge_in))
        _renumber(items, c.model_turns)
        sent = 0
        try:
            for item in items:
                if item.text:
                    await session.send_text(item.text)
                    c.unanswered.text(item.text, item.reply)
                else:
                    await session.send_audio(item.pcm)
                    c.unanswered.audio(item.pcm, item.voiced)
                sent += 1
        finally:
            for item in items[sent:]:  # for the next connection
                if item.text:
                    c.unanswered.text(item.text, item.reply)
                else:
                    c.unanswered.audio(item.pcm, item.voiced)
            c.unanswered.lost_s += taken.lost_s if sent < len(items) else 0.0
            c.unanswered.said_over_reply(taken.barge_in)  # still what it was
        lost_s = taken.lost_s
        c.record("replay", audio_s=round(audio_s, 3), texts=texts, lost_s=round(lost_s, 3))
        logger.info("replayed %.1f s of audio and %d text(s) on the new connection", audio_s, texts)
        if self.pending is not None:
            self.pending = self.pending.replayed(audio_s, texts, lost_s)
        if c.last_audio_sent is None:  # no microphone to measure the gap by
            self.finish(None)

    async def after_goaway(self, go_away: asyncio.Future[float]) -> None:
        """After a goAway, hand over (raise :class:`HandoverDue`) as soon as nothing is lost
        by it, and by the goAway's deadline (the clock's monotonic s) at the latest. While
        a tool runs: not (its answer goes on this connection). While the model replies: at
        the end of its reply, or once it fell silent (``model_silent_s``; the real service may go
        quiet mid-reply). Otherwise: at the first pause of the microphone (``pause_s``),
        or ``goaway_user_wait_s`` after the goAway if the user goes on talking; what was
        said since the last answer is replayed on the new connection."""
        deadline = await go_away
        c = self.core
        asked = c.clock.monotonic()
        # A pause is a span of time, not an event: poll for it, briefly.
        while (now := c.clock.monotonic()) < deadline:
            if c.tools:
                pass  # a tool runs: its answer goes on this connection, not twice
            elif c.floor.model_speaking:
                if c.floor.reply_fell_silent(now):
                    break
            elif c.floor.mic_quiet(now) or now - asked >= c.timings.goaway_user_wait_s:
                break
            await c.clock.sleep(c.timings.handover_poll_s)
        raise HandoverDue("goAway")

    def instruction_applied(self, version: int, by: AppliedBy) -> None:
        """The model has instruction ``version`` (and every earlier one) from now on."""
        c = self.core
        c.connected_version = version
        c.log.transcript.instruction = version
        for applied in c.instructions.mark_applied(version, by):
            if applied.version == version:
                c.record("instruction", version=version, by=by, text=applied.text)
                c.emit(c.sink.on_instruction, applied)

    async def apply_instructions(self, session: LiveSession) -> None:
        """Give the model each new instruction version: by a context update where the
        connection's model supports it (``session.capabilities``), else by a handover
        (:class:`HandoverDue`) at the next pause, or after ``instruction_wait_s`` when the
        model is silent."""
        c = self.core
        while True:
            latest = c.instructions.current
            if latest.version > c.connected_version:
                if session.capabilities.context_update:
                    await session.update_instruction(latest.text)
                    self.instruction_applied(latest.version, "context_update")
                    continue  # a newer version may have come meanwhile
                waited_until = c.clock.monotonic() + c.timings.instruction_wait_s
                while not (  # noqa: ASYNC110 (a pause is a span of time, not an event)
                    c.floor.in_pause(c.clock.monotonic())
                    or (c.clock.monotonic() > waited_until and not c.floor.model_speaking)
                ):
                    await c.clock.sleep(c.timings.handover_poll_s)
                raise HandoverDue(INSTRUCTION_HANDOVER)
            await c.instruction_ready.wait()
            c.instruction_ready.clear()


def _renumber(items: list[Said], model_turns: int) -> None:
    """The answers come in the order of the questions: renumber the asks waiting among
    ``items`` (an utterance is one question, each text another) after ``model_turns``."""
    questions, in_speech = 0, False
    for item in items:
        if item.voiced and not in_speech:
            questions += 1
        in_speech = item.voiced or (in_speech and not item.text)
        if item.text:
            questions += 1
            if item.reply is not None and not item.reply.future.done():
                item.reply.turn = model_turns + questions
