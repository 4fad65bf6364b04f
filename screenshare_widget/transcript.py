"""The conversation as plain Python data: turns merged from partial transcriptions.

The Live service streams transcriptions in small pieces ("What", " is on", " my screen?") for
both sides, and the user's pieces may arrive after the model started answering. A
:class:`Transcript` merges them into :class:`Turn` objects by *exchange*: a user turn stays
open until the model's turn after it completes or is interrupted, so late pieces of the
user's words still land in the right turn.

This module imports no widget or SDK code. It is safe to read from any thread: the relay
thread writes, the user's cells read snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal

from .locked import LockedSequence

if TYPE_CHECKING:
    import pandas as pd

Role = Literal["user", "model"]

#: Speech that starts this long after an unclaimed utterance ended begins a new utterance
#: (s): a cough that was never transcribed does not stretch the next user turn.
UTTERANCE_GAP_S: Final = 2.0
#: User text that arrives this long after its exchange ended, with no new speech since,
#: still belongs to that exchange's user turn (s): the real service can send the user's
#: words after the model's reply (research D8).
LATE_TEXT_S: Final = 5.0


@dataclass(frozen=True)
class Turn:
    """One turn of the conversation.

    ``started_at`` and ``ended_at`` are timezone-aware UTC datetimes. For a spoken user turn
    they are when the user began and stopped speaking (as the page captured it); otherwise,
    when the first and the last piece of the turn arrived. ``ended_at`` is ``None`` while the
    turn is still open.
    ``interrupted`` is true for a model turn the user talked over. ``instruction`` is the
    version of the system instruction the model had when the turn began (see
    ``assistant.instructions``). ``typed`` is true for text the user sent instead of speech.
    """

    role: Role
    text: str
    started_at: datetime
    ended_at: datetime | None = None
    interrupted: bool = False
    instruction: int = 1
    typed: bool = False

    @property
    def done(self) -> bool:
        """Whether the turn is closed."""
        return self.ended_at is not None

    def to_record(self) -> dict[str, object]:
        """The turn as a JSON-friendly dict (times in seconds since the epoch)."""
        record = asdict(self)
        record["text"] = self.text.strip()
        record["started_at"] = self.started_at.timestamp()
        record["ended_at"] = None if self.ended_at is None else self.ended_at.timestamp()
        return record


def _now() -> datetime:
    return datetime.now(UTC)


# ---- views of the turns: plain functions of a snapshot, kept out of the merging class ----


def _markdown(turns: Sequence[Turn]) -> str:
    """``turns`` as markdown, one paragraph per turn; a rule where the instruction changed."""
    lines = []
    version = 1
    for turn in turns:
        if turn.instruction != version:
            version = turn.instruction
            lines.append(f"--- *instruction v{version}* ---")
        who = "**You**" if turn.role == "user" else "**Assistant**"
        text = turn.text.strip() or "…"
        mark = " *(interrupted)*" if turn.interrupted else ""
        typed = " *(typed)*" if turn.typed else ""
        lines.append(f"{who}{typed}: {text}{mark}")
    return "\n\n".join(lines)


def _frame(turns: Sequence[Turn]) -> pd.DataFrame:
    """``turns`` as a DataFrame (see :meth:`Transcript.to_pandas` for the columns)."""
    import pandas as pd

    rows = [
        {
            "role": t.role,
            "text": t.text.strip(),
            "started_at": t.started_at,
            "ended_at": t.ended_at,
            "interrupted": t.interrupted,
            "instruction": t.instruction,
            "typed": t.typed,
        }
        for t in turns
    ]
    columns = [
        "role", "text", "started_at", "ended_at", "interrupted", "instruction", "typed"
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    frame["ended_at"] = pd.to_datetime(frame["ended_at"], utc=True)
    frame["duration_s"] = (frame["ended_at"] - frame["started_at"]).dt.total_seconds()
    return frame


class Transcript(LockedSequence[Turn]):
    """The conversation so far: a read-only sequence of :class:`Turn`, growing as it happens.

    Indexing and iteration see a consistent snapshot. Use :meth:`to_pandas` for a table and
    :meth:`to_markdown` for reading.
    """

    def __init__(self, turns: Sequence[Turn] = ()) -> None:
        super().__init__(list(turns))
        # Index of the user and model turns of the current exchange, or None.
        self._user: int | None = None
        self._model: int | None = None
        self._user_last: datetime | None = None  # when the open user turn last grew
        # Speech no user turn has claimed yet: when it began and ended (None: still going).
        self._next_start: datetime | None = None
        self._next_end: datetime | None = None
        # The speech going on belongs to the open user turn, which was spoken until then.
        self._speech_for_open = False
        # The exchange closed last: its user turn and model turn (indexes or None), and when.
        self._last_user: int | None = None
        self._last_model: int | None = None
        self._last_end: datetime | None = None
        self._last_spoken = False
        self._last_retranscribe = False  # the last exchange's user turn awaits its new text
        # The user's speech was sent again to a new connection: its next transcription
        # replaces the text of the turn it came from instead of adding to it.
        self._retranscribe = False
        self._user_spoke_until: datetime | None = None
        #: The instruction version new turns are tagged with (the relay keeps it current).
        self.instruction = 1

    # ---- reading ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        turns = self.snapshot()
        return f"Transcript({len(turns)} turns)"

    def to_markdown(self) -> str:
        """The conversation as markdown, one paragraph per turn; a rule marks where the
        instruction version changed."""
        return _markdown(self.snapshot())

    def _repr_markdown_(self) -> str:
        return self.to_markdown() or "*(no turns yet)*"

    def to_pandas(self) -> pd.DataFrame:
        """The turns as a DataFrame: role, text, started_at, ended_at, interrupted,
        instruction (version), typed, duration_s."""
        return _frame(self.snapshot())

    # ---- writing (the relay) ----------------------------------------------------------------
    # Each writer returns the indexes of the turns it changed, for mirroring to the page.

    def speech_started(self, at: datetime) -> None:
        """The user began to speak at ``at`` (the page's capture time): the user turn this
        speech becomes starts then. Speech while the model talks belongs to the next turn."""
        with self._lock:
            if self._user is not None and self._model is None:
                self._speech_for_open = True  # more of the open user turn
                return
            self._speech_for_open = False
            gap = self._next_end is not None and (at - self._next_end).total_seconds()
            if self._next_start is None or (gap and gap > UTTERANCE_GAP_S):
                self._next_start = at
            self._next_end = None

    def speech_ended(self, at: datetime) -> None:
        """The user stopped speaking at ``at`` (the end of the last voiced audio)."""
        with self._lock:
            if self._speech_for_open and self._user is not None:
                self._user_spoke_until = at
            elif self._next_start is not None:
                self._next_end = at

    def add_input(self, text: str, at: datetime | None = None) -> list[int]:
        """Append a piece of the user's transcribed speech."""
        if not text:
            return []
        at = at or _now()
        with self._lock:
            late = self._late_input(text, at)
            if late is not None:
                return late
            self._user_last = at
            if self._user is None:
                started = at
                if self._next_start is not None and self._next_start <= at:
                    started = self._next_start
                    self._user_spoke_until = self._next_end
                    self._speech_for_open = self._next_end is None  # still speaking
                self._next_start = self._next_end = None
                turn = Turn(
                    role="user", text=text, started_at=started, instruction=self.instruction
                )
                if self._model is not None:
                    # The model answered before the user's words arrived: put them first.
                    model_start = self._items[self._model].started_at
                    turn = replace(turn, started_at=min(started, model_start))
                    self._items.insert(self._model, turn)
                    self._user, self._model = self._model, self._model + 1
                    return list(range(self._user, len(self._items)))  # all that moved
                self._items.append(turn)
                self._user = len(self._items) - 1
                return [self._user]
            old = self._items[self._user]
            grown = text if self._retranscribe else old.text + text
            self._retranscribe = False
            self._items[self._user] = replace(old, text=grown)
            return [self._user]

    def expect_retranscription(
        self, at: datetime | None = None, *, question: bool = True
    ) -> list[int]:
        """The user's unanswered speech goes again to a new connection, which transcribes
        it anew: the user turn it came from (open, or the last one if no answer completed
        after it) is open again, and the next transcription replaces its text, so one
        utterance stays one turn. With ``question=False`` the speech is a barge-in said
        over a reply: it keeps its own claim (its transcription opens its turn). Speech said
        over a reply that then stopped without an interruption (echo, a murmur) goes with
        the question. Returns the turns changed."""
        with self._lock:
            if not question:
                return []  # a barge-in no turn has claimed yet: its transcription opens one
            self._next_start = self._next_end = None  # part of what is heard again
            if self._user is None:
                user, model = self._last_user, self._last_model
                if user is None or self._items[user].typed:
                    return []
                if model is not None and not self._items[model].interrupted:
                    return []  # it was answered
                old = self._items[user]
                self._items[user] = replace(old, ended_at=None)
                self._user, self._model = user, None
                self._user_last = at or _now()
                self._user_spoke_until = old.ended_at  # speech still to come extends it
                self._speech_for_open = True
                self._last_user = self._last_model = self._last_end = None
                changed = [user]
            else:
                changed = []
            self._retranscribe = not self._items[self._user].typed
            return changed

    def _late_input(self, text: str, at: datetime) -> list[int] | None:
        """User text for the exchange that already closed, placed by time; None if it
        opens or grows the current exchange's user turn instead.

        - The last exchange's model turn had no user turn, and speech no turn claimed began
          before that model turn: the user's words came after the answer, so they go in a
          new user turn before it.
        - The last exchange had a user turn whose speech the page's audio showed, no
          speech began since, and it closed at most :data:`LATE_TEXT_S` ago: the text is
          more of that turn.
        """
        if self._user is not None or self._model is not None or self._last_end is None:
            return None
        model = self._last_model
        if (
            self._last_user is None
            and model is not None
            and self._next_start is not None
            and self._next_start <= self._items[model].started_at
        ):
            ended = self._next_end or at
            turn = Turn(
                role="user",
                text=text,
                started_at=self._next_start,
                ended_at=min(max(ended, self._next_start), self._items[model].started_at),
                instruction=self._items[model].instruction,
            )
            self._items.insert(model, turn)
            self._next_start = self._next_end = None
            self._last_user, self._last_model = model, model + 1
            self._last_spoken = True  # its later pieces join it
            return list(range(model, len(self._items)))
        user = self._last_user
        if (
            user is not None
            and self._last_spoken
            and self._next_start is None
            and (at - self._last_end).total_seconds() <= LATE_TEXT_S
        ):
            old = self._items[user]
            grown = text if self._last_retranscribe else old.text + text
            self._last_retranscribe = False
            self._items[user] = replace(old, text=grown)
            return [user]
        self._last_retranscribe = False
        return None

    def add_output(self, text: str, at: datetime | None = None) -> list[int]:
        """Append a piece of the model's transcribed speech (opens its turn if needed)."""
        at = at or _now()
        with self._lock:
            changed = self._open_model(at)
            if text:
                old = self._items[self._model]  # type: ignore[index]
                self._items[self._model] = replace(old, text=old.text + text)  # type: ignore[index]
            return changed

    def model_started(self, at: datetime | None = None) -> list[int]:
        """The model began a turn (first audio), before any transcription of it arrived."""
        with self._lock:
            return self._open_model(at or _now())

    def _open_model(self, at: datetime) -> list[int]:
        if self._model is not None:
            return [self._model]
        changed = []
        self._items.append(Turn(role="model", text="", started_at=at, instruction=self.instruction))
        self._model = len(self._items) - 1
        changed.append(self._model)
        return changed

    def add_typed(self, text: str, at: datetime | None = None) -> list[int]:
        """Append text the user typed, as a closed user turn of its own.

        A model turn still open is left open (the service decides whether the text
        interrupts it); the answer to the text opens a new model turn after this one.
        """
        at = at or _now()
        turn = Turn(
            role="user", text=text, started_at=at, ended_at=at, instruction=self.instruction,
            typed=True,
        )  # fmt: skip
        with self._lock:
            self._items.append(turn)
            return [len(self._items) - 1]

    def end_exchange(self, *, interrupted: bool = False, at: datetime | None = None) -> list[int]:
        """Close the current exchange: the model's turn completed or was interrupted.

        Returns the indexes of the turns closed. After this, new user speech opens a new turn.
        """
        at = at or _now()
        with self._lock:
            return self._end(interrupted=interrupted, at=at)

    def close_open(self, at: datetime | None = None) -> list[int]:
        """Close whatever is open because the session ended.

        A model turn cut short this way counts as interrupted.
        """
        at = at or _now()
        with self._lock:
            # Speech no turn claimed belongs to this session, not to the next one.
            self._next_start = self._next_end = None
            changed = self._end(interrupted=self._model is not None, at=at)
            self._last_user = self._last_model = self._last_end = None
            return changed

    def _end(self, *, interrupted: bool, at: datetime) -> list[int]:
        changed = []
        if self._user is not None:
            old = self._items[self._user]
            ended = self._user_spoke_until or self._user_last or at
            self._items[self._user] = replace(old, ended_at=max(ended, old.started_at))
            changed.append(self._user)
        if self._model is not None:
            old = self._items[self._model]
            self._items[self._model] = replace(old, ended_at=at, interrupted=interrupted)
            changed.append(self._model)
        if changed:
            self._last_user, self._last_model, self._last_end = self._user, self._model, at
            # Only a user turn whose speech the page's audio showed can take late text.
            self._last_spoken = self._user is not None and self._user_spoke_until is not None
        # A transcription heard again may still come after the answer: it replaces too.
        self._last_retranscribe = self._retranscribe and self._user is not None
        self._user = self._model = None
        self._user_last = self._user_spoke_until = None
        self._speech_for_open = False
        self._retranscribe = False
        return changed
