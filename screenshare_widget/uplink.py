"""The uplink: what goes from the page to the model, and the pumps that send it.

Internal module. :class:`Uplink` takes microphone chunks, screen frames and typed texts
(on the relay loop: :class:`~screenshare_widget.pumps.Inbox` brings them from the page's
thread), puts them in their bounded buffers (:mod:`~screenshare_widget.pumps`), tells the
floor when the user speaks, and runs the three send loops of a connection. A send that
started finishes across a handover (:func:`~screenshare_widget.pumps.send_whole`); one
that failed puts its item back for the next connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from .backend import LiveError, LiveSession
from .events import SentFrame
from .protocol import INPUT_RATE_HZ, SAMPLE_BYTES
from .pumps import PendingText, ReplyWaiter, WaitingFrame, send_whole
from .timings import VOICE_RMS

if TYPE_CHECKING:
    from .dialogue import Core
    from .handover import Handovers


def is_voice(pcm: bytes) -> bool:
    """Whether a PCM16 LE chunk carries voice (RMS above :data:`~.timings.VOICE_RMS`)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    return bool(samples.size) and float(np.sqrt(np.mean(samples * samples))) > VOICE_RMS


class Uplink:
    """Microphone, frames and texts on their way to the model. Relay loop only."""

    def __init__(self, core: Core, handovers: Handovers, accepting: Callable[[], bool]) -> None:
        self.core = core
        self.handovers = handovers
        self._accepting = accepting  # whether a session runs that takes media
        self._clock_offset: float | None = None  # the kernel's clock minus the page's (s)

    def new_session(self) -> None:
        """A new session may come from another page: its clock is measured afresh."""
        self._clock_offset = None

    # ---- in ---------------------------------------------------------------------------------

    def put_audio(self, pcm: bytes, t_ms: float = 0.0) -> None:
        """A microphone chunk arrived; ``t_ms``: the page's capture time of its end (ms
        since the epoch, 0 for now)."""
        c = self.core
        c.log.counters.audio_chunks_in += 1
        if not self._accepting():
            c.log.counters.dropped_audio_bytes += len(pcm)
            return
        c.log.to_tap("on_mic", pcm)
        began, ended = self._chunk_span(pcm, t_ms)
        voiced = is_voice(pcm)
        if voiced:
            if c.floor.voice(c.clock.monotonic(), ended):
                c.record("speech_start", at=began)
                c.log.transcript.speech_started(began)
        elif c.floor.quiet_ends_speech(ended):
            self.speech_ended()
        before = c.mic.dropped_bytes
        c.mic.put(pcm, voiced)
        c.log.counters.dropped_audio_bytes += c.mic.dropped_bytes - before

    def put_frame(self, frame: WaitingFrame) -> None:
        """A screen frame arrived; a newer one replaces it until it is sent."""
        c = self.core
        c.log.counters.frames_in += 1
        if not self._accepting():
            return
        before = c.frame.superseded
        c.frame.put(frame)
        c.log.counters.superseded_frames += c.frame.superseded - before

    def put_text(self, item: PendingText) -> None:
        """Queue typed text (it joins the transcript as a typed user turn)."""
        c = self.core
        c.texts.check()
        c.turns(c.log.transcript.add_typed(item.text))
        c.texts.put(item)

    def clear(self) -> None:
        """The session ended: nothing waiting goes anywhere."""
        c = self.core
        c.mic.clear()
        c.frame.clear()
        c.texts.clear()
        c.unanswered.clear()

    def _chunk_span(self, pcm: bytes, t_ms: float) -> tuple[datetime, datetime]:
        """When a 16 kHz PCM16 chunk began and ended, from the page's capture time of its
        end (ms since the epoch; 0 for now). The page's clock is corrected by its offset
        from the kernel's, taken as the smallest seen this session (arrival only adds to
        it), when that is over ``clock_skew_s``."""
        now = self.core.clock.now().timestamp()
        end = now
        if t_ms:
            page = t_ms / 1000
            offset = now - page
            if self._clock_offset is None or offset < self._clock_offset:
                self._clock_offset = offset
            skew = self._clock_offset
            end = page + (skew if abs(skew) > self.core.timings.clock_skew_s else 0.0)
        length = len(pcm) / (INPUT_RATE_HZ * SAMPLE_BYTES)
        return datetime.fromtimestamp(end - length, UTC), datetime.fromtimestamp(end, UTC)

    def speech_ended(self) -> None:
        """The utterance ended with the last voiced chunk, not when the quiet was noticed."""
        c = self.core
        at = c.floor.speech_ended()
        c.record("speech_end", at=at)
        if at is not None:
            c.log.transcript.speech_ended(at)

    def end_speech(self) -> None:
        """The session ends: speech going on ends with it, and the next begins afresh."""
        if self.core.floor.user_speaking:
            self.speech_ended()
        self.core.floor.last_voice_wall = None

    # ---- sent ---------------------------------------------------------------------------------

    def _audio_sent(self, pcm: bytes, voiced: bool) -> None:
        c = self.core
        c.log.counters.audio_bytes_sent += len(pcm)
        c.unanswered.audio(pcm, voiced)
        now = c.clock.monotonic()
        if self.handovers.pending is not None:
            last = c.last_audio_sent
            self.handovers.finish(None if last is None else (now - last) * 1000)
        c.last_audio_sent = now

    def _frame_sent(self, frame: WaitingFrame) -> None:
        c = self.core
        c.log.counters.frames_sent += 1
        sent = SentFrame(c.clock.now(), frame.jpeg, frame.width, frame.height, reason=frame.reason)
        c.log.frames.append(sent)
        c.log.to_tap("on_frame", sent)
        c.emit(c.sink.on_frame, sent, frame.seq)
        c.record(
            "frame_sent",
            width=frame.width,
            height=frame.height,
            bytes=len(frame.jpeg),
            reason=frame.reason,
        )

    def _text_sent(self, item: PendingText) -> None:
        c = self.core
        c.texts.sent(item)
        c.floor.awaiting_answer = True
        c.unanswered.text(item.text, item.reply)
        c.record("text", text=item.text, chars=len(item.text))
        if item.reply is not None:
            item.reply.turn = c.model_turns + 1
        if self.handovers.pending is not None and c.last_audio_sent is None:
            self.handovers.finish(None)

    # ---- pumps (one set per connection) -------------------------------------------------------

    async def send_audio(self, session: LiveSession) -> None:
        """Send microphone chunks in order; one whose send failed goes first next time."""
        c = self.core
        finish_s = c.timings.send_finish_timeout_s
        while True:
            await c.mic.ready.wait()
            while (chunk := c.mic.take()) is not None:
                pcm, voiced = chunk
                try:
                    done = partial(self._audio_sent, pcm, voiced)
                    await send_whole(session.send_audio(pcm), done, finish_s)
                except LiveError:
                    # The connection broke under this chunk: it goes first on the next one.
                    c.mic.put_back(pcm, voiced)
                    raise
            c.mic.ready.clear()

    async def send_frames(self, session: LiveSession) -> None:
        """Send the latest screen frame whenever one waits."""
        c = self.core
        while True:
            await c.frame.ready.wait()
            c.frame.ready.clear()
            frame = c.frame.take()
            if frame is not None:
                done = partial(self._frame_sent, frame)
                finish_s = c.timings.send_finish_timeout_s
                await send_whole(session.send_frame(frame.jpeg), done, finish_s)

    async def send_texts(self, session: LiveSession) -> None:
        """Send typed texts in order; one whose send failed goes first on the next
        connection."""
        c = self.core
        while True:
            await c.texts.ready.wait()
            c.texts.ready.clear()
            while (item := c.texts.first()) is not None:
                done = partial(self._text_sent, item)
                finish_s = c.timings.send_finish_timeout_s
                await send_whole(session.send_text(item.text), done, finish_s)


def new_waiter() -> ReplyWaiter:
    """A waiter for the answer to an ``ask`` (on the running loop)."""
    return ReplyWaiter(asyncio.get_running_loop().create_future())
