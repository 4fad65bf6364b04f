"""The conversation's decisions as small pure objects: when to reconnect, who has the floor,
and the handover under way.

Internal module. Nothing here awaits, sleeps or reads a clock: the conversation passes the
time in (``now``: monotonic seconds; ``wall``: a UTC datetime), so each object is tested
with plain numbers.

- :class:`ReconnectPolicy`: after a connection ends in a :class:`~.backend.LiveError`, what
  next (:class:`Next`): the same handle once more, a fresh session, a reconnect after a
  jittered capped backoff, or giving up.
- :class:`Floor`: who is speaking. The model's reply (speaking, when it was last heard,
  whether its generation completed), the user's voice (speaking, when voice was last
  heard), and whether something the user said still waits for its answer; from these, a
  pause (:meth:`Floor.in_pause`).
- :class:`PendingHandover`: a move to a new connection that is not finished until the
  first microphone audio (or text) went out on the new one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

from .backend import LiveError
from .events import Handover
from .timings import REFUSAL_CODES, Timings

#: What :meth:`ReconnectPolicy.after` decides: ``again`` (the same handle, after
#: ``delay_s``), ``fresh`` (drop the handle, now), ``reconnect`` (after ``delay_s``) or
#: ``fail`` (give up: fatal, or the budget is spent).
Action = Literal["again", "fresh", "reconnect", "fail"]
#: Refusals of the same handle in a row before a fresh session (the first is retried once).
_REFUSALS_BEFORE_FRESH: Final = 2


@dataclass(frozen=True)
class Next:
    """What to do after a connection ended: ``action`` after ``delay_s`` seconds."""

    action: Action
    delay_s: float = 0.0


class ReconnectPolicy:
    """The reconnect budget: at most ``timings.max_reconnects`` attempts in a row, each
    after a capped exponential backoff with jitter; a connection that stayed up longer than
    ``timings.stable_after_s`` resets the budget, and so does a planned handover.

    A refused handle (a close with one of :data:`REFUSAL_CODES` before ``setupComplete``)
    is tried once more after ``timings.refusal_retry_s`` (the service may not yet have seen
    the old socket close), or not at all when the reason blames the handle; then a fresh
    session starts without it, and a refusal of that is handled like any other error.
    """

    def __init__(self, timings: Timings, rng: random.Random | None = None) -> None:
        self._timings = timings
        self._rng = rng if rng is not None else random.Random()
        #: Reconnection attempts in a row so far.
        self.attempts = 0
        self._fresh_retry = False  # a refused handle was dropped; the next refusal is final
        self._refusals = 0  # refusals of the current handle in a row

    def handed_over(self) -> None:
        """A planned handover: it spends nothing of the budget."""
        self.attempts = 0

    def after(self, exc: LiveError, *, resumed: bool, up_s: float | None) -> Next:
        """What to do after a connection ended with ``exc``; ``resumed``: it offered a
        handle; ``up_s``: how long it was open (None: it never opened)."""
        if up_s is not None:
            self._fresh_retry = False
            self._refusals = 0
            if up_s > self._timings.stable_after_s:
                self.attempts = 0
        refused = (
            resumed
            and up_s is None
            and exc.code in REFUSAL_CODES
            and "api key" not in exc.reason.lower()  # no use retrying a bad key
        )
        if refused and not self._fresh_retry:
            self._refusals += 1
            if self._refusals < _REFUSALS_BEFORE_FRESH and "handle" not in exc.reason.lower():
                return Next("again", self._timings.refusal_retry_s)
            self._fresh_retry = True
            self._refusals = 0
            return Next("fresh")
        if exc.fatal or self.attempts >= self._timings.max_reconnects:
            return Next("fail")
        self.attempts += 1
        return Next("reconnect", self.backoff(self.attempts))

    def backoff(self, attempt: int) -> float:
        """Capped exponential backoff with jitter: between half the ceiling and the ceiling,
        which doubles from ``backoff_first_s`` up to ``backoff_max_s`` (s)."""
        t = self._timings
        ceiling = min(t.backoff_max_s, t.backoff_first_s * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)


class Floor:
    """Who is speaking, from the microphone's voice and the model's messages.

    Times are monotonic seconds (``now``) or UTC datetimes (``wall``, on the page's clock
    for the microphone), passed in by the caller. Used on the relay loop only.
    """

    def __init__(self, timings: Timings) -> None:
        self._timings = timings
        #: The model is replying (from its first output to the turn's end).
        self.model_speaking = False
        #: When the model's current reply was last heard from (monotonic s).
        self.reply_heard_at = 0.0
        #: The current reply's generation completed (only turnComplete is missing).
        self.generation_done = False
        #: The microphone carries voice (between speech_start and speech_end).
        self.user_speaking = False
        #: When the microphone last carried voice (monotonic s; None: not this session).
        self.last_voice_at: float | None = None
        #: The same, as the page's capture time of that chunk's end (UTC).
        self.last_voice_wall: datetime | None = None
        #: The user spoke or typed since the model's last answer: a handover now would
        #: lose the question.
        self.awaiting_answer = False

    def new_session(self) -> None:
        """Nothing of the last session's conversation carries over."""
        self.awaiting_answer = self.generation_done = False

    def voice(self, now: float, wall: datetime) -> bool:
        """A voiced chunk ended at ``wall``; True if it began an utterance."""
        self.last_voice_at, self.last_voice_wall = now, wall
        began = not self.user_speaking
        self.user_speaking = True
        if not self.model_speaking:  # (while it speaks, voice is echo or a barge-in)
            self.awaiting_answer = True
        return began

    def quiet_ends_speech(self, wall: datetime) -> bool:
        """A quiet chunk ended at ``wall``: True if it ends the utterance, quiet having lasted
        ``speech_end_s`` on the page's clock (chunks held up by a busy kernel arrive in a
        burst, and a pause in sending is quiet too)."""
        last = self.last_voice_wall
        return (
            self.user_speaking
            and last is not None
            and (wall - last).total_seconds() >= self._timings.speech_end_s
        )

    def speech_ended(self) -> datetime | None:
        """The utterance ended; returns when (its last voiced chunk's end)."""
        self.user_speaking = False
        return self.last_voice_wall

    def model_began(self, now: float) -> None:
        """The model's reply began."""
        self.model_speaking = True
        self.reply_heard_at = now
        self.generation_done = False

    def model_heard(self, now: float) -> None:
        """More of the model's reply came."""
        self.reply_heard_at = now

    def model_ended(self) -> bool:
        """The model's turn ended; returns whether it was speaking."""
        was, self.model_speaking = self.model_speaking, False
        return was

    def mic_quiet(self, now: float) -> bool:
        """The microphone carried no voice for ``pause_s``."""
        voice = self.last_voice_at
        return voice is None or now - voice >= self._timings.pause_s

    def reply_fell_silent(self, now: float) -> bool:
        """The model's reply stopped coming: nothing came for ``model_silent_s``."""
        return now - self.reply_heard_at >= self._timings.model_silent_s

    def in_pause(self, now: float) -> bool:
        """A turn boundary: the model is silent, nothing the user said waits for an answer,
        and the microphone has been quiet for ``pause_s``."""
        if self.model_speaking or self.awaiting_answer:
            return False
        return self.mic_quiet(now)


@dataclass(frozen=True)
class PendingHandover:
    """A move to a new connection, begun ``at`` (UTC) because of ``reason``; ``resumed``:
    the new connection was offered the old one's handle. It finishes (:meth:`finish`) when
    the first audio went out on the new connection, which dates the gap; what the replay
    sent again is added on the way (:meth:`replayed`)."""

    at: datetime
    reason: str
    resumed: bool
    replayed_s: float = 0.0
    replayed_texts: int = 0
    lost_s: float = 0.0

    def replayed(self, audio_s: float, texts: int, lost_s: float) -> PendingHandover:
        """The same, with what the replay sent (audio and lost audio in s)."""
        return replace(self, replayed_s=audio_s, replayed_texts=texts, lost_s=lost_s)

    def finish(self, gap_ms: float | None) -> Handover:
        """The handover as users read it; ``gap_ms``: the audio gap it caused (None: no
        audio flowed on one side)."""
        return Handover(
            at=self.at,
            reason=self.reason,
            resumed=self.resumed,
            gap_ms=gap_ms,
            replayed_s=round(self.replayed_s, 3),
            replayed_texts=self.replayed_texts,
            lost_s=round(self.lost_s, 3),
        )
