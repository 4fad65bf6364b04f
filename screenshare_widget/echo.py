"""Echo suspected: the user's transcribed words repeat what the model had just said.

Internal module; plain Python (no widget, SDK or asyncio code). The browser removes the
page's own playback from the microphone (echo cancellation), but not always: loud
speakers, or a device or browser where that cancellation is off, let the model's voice back
into the microphone. The Live service hears it as the user: it interrupts the
model (a barge-in) and transcribes the model's own words as the user's. As a second line of
defence the relay compares the two:

- :func:`repeats` is the rule. Both texts are reduced to words (lower case, punctuation
  and bracketed notes dropped); a *run* is :data:`MIN_RUN_WORDS` or more consecutive words
  of the user's that the model said in that order, and a *fragment* is an utterance of at
  most :data:`MAX_FRAGMENT_WORDS` words, every one of which the model had played within
  :data:`FRAGMENT_S` before the microphone last carried voice (a model that keeps cutting
  itself off after a word is heard saying that word, again and again). The user's words
  repeat the model's when runs and fragments cover at least :data:`MIN_MATCHED_WORDS` of
  them and at least :data:`MIN_MATCHED_SHARE` of all. A user who quotes one word ("what
  do you mean by region?", or "region?" alone) or asks about a phrase ("why is the north
  up so much?") is not flagged.
- :class:`EchoWatch` follows what the model said, each piece dated by when it plays (the
  page plays the model's audio back to back from its arrival; a barge-in flushes what was
  not played yet), and the user's utterances as transcribed while the model's voice plays
  or within :data:`AFTER_VOICE_S` after it stops (pieces more than :data:`SETTLE_S` apart
  are two utterances). Once no piece came for :data:`SETTLE_S`, it judges the utterances
  of the last :data:`WINDOW_S` together (each of several barge-ins in a row can be a word
  or two) against the model's words that played from :data:`WINDOW_S` before them until
  the microphone last carried voice: echo of a word comes after it plays, and the model's
  answer, which may come before the user's words are transcribed, after they stopped
  speaking. An :class:`EchoSuspected` says what was matched and whether to tell the user,
  which it does at most once every :data:`NOTICE_EVERY_S`.

The transcript is never changed: what the user produced stays as it came.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

#: What the cell says when echo is suspected.
ECHO_NOTICE: Final = "The assistant may be hearing itself: use headphones or lower the volume."
#: The shortest run of the model's words that counts (words): one quoted word never does.
MIN_RUN_WORDS: Final = 2
#: An utterance of at most this many words (words), all played by the model within
#: FRAGMENT_S before the microphone last carried voice (s), is a fragment of its echo.
MAX_FRAGMENT_WORDS: Final = 2
FRAGMENT_S: Final = 2.0
#: Runs and fragments must cover at least this many of the user's words, and this share.
MIN_MATCHED_WORDS: Final = 3
MIN_MATCHED_SHARE: Final = 0.6
#: The model's words played this long before the user's words began are compared (s).
WINDOW_S: Final = 10.0
#: User words that arrive this long after the model's voice stopped can still be its echo (s).
AFTER_VOICE_S: Final = 5.0
#: The user's words are judged once no piece came for this long (s).
SETTLE_S: Final = 1.0
#: The cell is told at most once in this long (s); every suspicion is an event.
NOTICE_EVERY_S: Final = 60.0
#: A barge-in keeps the model's words due to play this soon after it (s): when the
#: transcription of a piece arrives after its audio, its time is estimated late.
PLAYED_SLACK_S: Final = 0.5
#: The user's words kept for judging at most (words; the oldest go first).
MAX_HEARD_WORDS: Final = 200

_NOT_WORD: Final = re.compile(r"[^\w]+")
#: A transcriber's note rather than words: "(spoke for 1.4 s)", "[noise]", "<laughs>".
_NOTE: Final = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>")


def words(text: str) -> list[str]:
    """``text`` as words: lower case, split at white space, punctuation and notes in
    brackets dropped (``"Sure, it's 1.8 s. [noise]"`` gives ``["sure", "its", "18", "s"]``;
    the emulator's ``"(spoke for 1.4 s)"`` gives none)."""
    found = (_NOT_WORD.sub("", w) for w in _NOTE.sub(" ", text).lower().split())
    return [w for w in found if w]


@dataclass(frozen=True)
class Heard:
    """One utterance of the user's as transcribed, and ``just_said``: the model's words
    played within :data:`FRAGMENT_S` before the microphone last carried voice."""

    text: str
    just_said: str = ""


@dataclass(frozen=True)
class EchoMatch:
    """The user's ``heard`` words (as :func:`words` gives them) repeat ``runs`` of the
    model's (runs and fragments, in order), which cover ``share`` of them."""

    heard: tuple[str, ...]
    runs: tuple[tuple[str, ...], ...]
    share: float

    @property
    def matched(self) -> str:
        """The model's words repeated, run by run (``"the chart … by region"``)."""
        return " … ".join(" ".join(run) for run in self.runs)


def _longest_run(heard: list[str], i: int, said: list[str], at: dict[str, list[int]]) -> int:
    """The most words of ``heard`` from ``i`` on that ``said`` has in that order."""
    best = 0
    for j in at.get(heard[i], []):
        n = 1
        while i + n < len(heard) and j + n < len(said) and heard[i + n] == said[j + n]:
            n += 1
        best = max(best, n)
    return best


def _fragments(utterances: Sequence[Heard]) -> list[int]:
    """For each of the utterances' words in turn, the number of its utterance if that is
    a fragment, else -1."""
    marks: list[int] = []
    for number, utterance in enumerate(utterances):
        said = words(utterance.text)
        just = set(words(utterance.just_said))
        fragment = len(said) <= MAX_FRAGMENT_WORDS and all(w in just for w in said)
        marks += [number if fragment else -1] * len(said)
    return marks


def repeats(heard: str | Sequence[Heard], said: str) -> EchoMatch | None:
    """Whether the user's ``heard`` (a text, or utterances) repeats the model's ``said``
    (see the module's rule): the match, or None."""
    utterances = [Heard(heard)] if isinstance(heard, str) else list(heard)
    user = [w for u in utterances for w in words(u.text)]
    model = words(said)
    if len(user) < MIN_MATCHED_WORDS:
        return None
    at: dict[str, list[int]] = {}
    for j, word in enumerate(model):
        at.setdefault(word, []).append(j)
    fragment = _fragments(utterances)
    runs: list[tuple[str, ...]] = []
    i = 0
    while i < len(user):
        n = _longest_run(user, i, model, at)
        if n < MIN_RUN_WORDS:  # else a fragment (all of its words at once), or nothing
            n = 0
            while fragment[i] >= 0 and i + n < len(user) and fragment[i + n] == fragment[i]:
                n += 1
        if n:
            runs.append(tuple(user[i : i + n]))
        i += max(n, 1)
    covered = sum(len(run) for run in runs)
    share = covered / len(user)
    if covered < MIN_MATCHED_WORDS or share < MIN_MATCHED_SHARE:
        return None
    return EchoMatch(tuple(user), tuple(runs), share)


@dataclass(frozen=True)
class EchoSuspected:
    """The user's words ``heard`` (their transcription, as it came) repeat ``matched``, the
    model's words (runs joined by " … "), covering ``share`` of them; ``notice`` says
    whether the user is to be told (at most once every :data:`NOTICE_EVERY_S`)."""

    heard: str
    matched: str
    share: float
    notice: bool


@dataclass(frozen=True)
class _Piece:
    at: float  # when it plays (monotonic s)
    text: str


@dataclass(frozen=True)
class _Utterance:
    first_at: float  # when its first and last pieces arrived (monotonic s)
    last_at: float
    text: str
    voiced_until: float  # when the microphone last carried voice before its last piece


class EchoWatch:
    """What the model said, dated by when it played, and what the user is transcribed as
    saying meanwhile; :meth:`settle` judges the user's words. Times are monotonic seconds.
    One conversation's, on the relay loop."""

    def __init__(self) -> None:
        self._said: deque[_Piece] = deque()
        self._heard: deque[_Utterance] = deque()
        self._voice_until: float | None = None  # when the model's audio so far ends playing
        self._fresh = False  # user words came since the last judgement
        self._noticed_at: float | None = None

    def model_began(self, now: float) -> None:
        """A model turn began: its words do not run on from the last turn's."""
        self._said.append(_Piece(self._playing_at(now), " "))

    def model_audio(self, seconds: float, now: float) -> None:
        """``seconds`` of the model's audio arrived: it plays after what came before."""
        self._voice_until = self._playing_at(now) + seconds

    def model_text(self, text: str, now: float) -> None:
        """A piece of the model's transcription arrived: it plays with the next audio."""
        self._said.append(_Piece(self._playing_at(now), text))
        while self._said and self._said[0].at < now - 2 * WINDOW_S:
            self._said.popleft()

    def interrupted(self, now: float) -> None:
        """The page flushed the model's audio: what was not played yet never was."""
        while self._said and self._said[-1].at > now + PLAYED_SLACK_S:
            self._said.pop()
        if self._voice_until is not None:
            self._voice_until = min(self._voice_until, now)

    def user_text(self, text: str, now: float, voiced_at: float | None = None) -> None:
        """A piece of the user's transcription arrived; the microphone last carried voice
        at ``voiced_at`` (None: not known, taken as now). Only words during the model's
        voice or soon after can be its echo; others end what was being gathered."""
        if self._voice_until is None or now > self._voice_until + AFTER_VOICE_S:
            self._heard.clear()
            return
        until = now if voiced_at is None else min(now, voiced_at)
        last = self._heard[-1] if self._heard else None
        if last is None or now - last.last_at >= SETTLE_S:  # another utterance
            self._heard.append(_Utterance(now, now, text, until))
        else:  # pieces of one may be cut mid-word
            self._heard[-1] = replace(last, last_at=now, text=last.text + text, voiced_until=until)
        self._fresh = True
        while sum(len(words(u.text)) for u in self._heard) > MAX_HEARD_WORDS:
            self._heard.popleft()

    def settle(self, now: float) -> EchoSuspected | None:
        """Judge the user's words once they stopped growing for :data:`SETTLE_S`: the
        suspicion if they repeat the model's (and they are let go), else None."""
        while self._heard and self._heard[0].last_at < now - WINDOW_S:
            self._heard.popleft()
        if not self._fresh or not self._heard or now - self._heard[-1].last_at < SETTLE_S:
            return None
        self._fresh = False
        # The model's words played from WINDOW_S before the user's began until the
        # microphone last heard them: later ones cannot be in them.
        said = self._said_between(self._heard[0].first_at - WINDOW_S, self._heard[-1].voiced_until)
        heard = [
            Heard(u.text, self._said_between(u.voiced_until - FRAGMENT_S, u.voiced_until))
            for u in self._heard
        ]
        match = repeats(heard, said)
        if match is None:
            return None
        self._heard.clear()
        notice = self._noticed_at is None or now - self._noticed_at >= NOTICE_EVERY_S
        if notice:
            self._noticed_at = now
        text = " ".join(" ".join(u.text.split()) for u in heard)
        return EchoSuspected(text, match.matched, match.share, notice)

    def _said_between(self, since: float, until: float) -> str:
        """The model's words that played from ``since`` to ``until``."""
        return "".join(p.text for p in self._said if since <= p.at <= until)

    def _playing_at(self, now: float) -> float:
        """When audio arriving now plays: after the audio before it, or at once."""
        return now if self._voice_until is None else max(now, self._voice_until)
