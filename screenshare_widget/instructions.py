"""The versions of the system instruction a conversation went through; no widget or SDK code.

Every change of ``assistant.system_instruction`` makes a new :class:`Instruction` with the
next version number. It is *pending* until the model has it: sent mid-session as a context
update where the model supports it, else in the setup of a new connection (a resumption
handover), or at the next connection when no session runs. Turns of the transcript carry the
version they were spoken under.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from .locked import LockedSequence

if TYPE_CHECKING:
    import pandas as pd

#: How a version reached the model: in a connection's setup, by a mid-session context
#: update, or by a handover to a new connection made for it.
AppliedBy = Literal["setup", "context_update", "handover"]


@dataclass(frozen=True)
class Instruction:
    """One version of the system instruction.

    ``set_at`` and ``applied_at`` are UTC datetimes; ``applied_at`` and ``applied_by`` are
    ``None`` while the version waits for the model to get it (no session runs, or a
    handover waits for a pause in the conversation).
    """

    version: int
    text: str
    set_at: datetime
    applied_at: datetime | None = None
    applied_by: AppliedBy | None = None

    @property
    def pending(self) -> bool:
        """Whether the model does not have this version yet."""
        return self.applied_at is None


class Instructions(LockedSequence[Instruction]):
    """The history of the system instruction, oldest first; the last one is the current one.

    Thread-safe: the user's cells add versions, the relay marks them applied.
    """

    def __init__(self, text: str) -> None:
        super().__init__([Instruction(1, text, datetime.now(UTC))])

    @property
    def current(self) -> Instruction:
        """The latest version (possibly still pending)."""
        with self._lock:
            return self._items[-1]

    @property
    def active(self) -> Instruction:
        """The latest version the model has (the first one before any connection)."""
        with self._lock:
            for item in reversed(self._items):
                if not item.pending:
                    return item
            return self._items[0]

    def add(self, text: str) -> Instruction:
        """Make ``text`` the next version (pending); the same text as the latest is a no-op."""
        with self._lock:
            last = self._items[-1]
            if text == last.text:
                return last
            item = Instruction(last.version + 1, text, datetime.now(UTC))
            self._items.append(item)
            return item

    def mark_applied(self, version: int, by: AppliedBy) -> list[Instruction]:
        """Mark ``version`` and every earlier pending version as applied; returns the
        versions that changed (earlier ones were superseded before the model got them)."""
        now = datetime.now(UTC)
        changed = []
        with self._lock:
            for i, item in enumerate(self._items):
                if item.version <= version and item.pending:
                    self._items[i] = replace(item, applied_at=now, applied_by=by)
                    changed.append(self._items[i])
        return changed

    def __repr__(self) -> str:
        current = self.current
        state = "pending" if current.pending else "applied"
        return f"Instructions({len(self)} versions; v{current.version} {state})"

    def to_pandas(self) -> pd.DataFrame:
        """One row per version: version, text, set_at, applied_at, applied_by."""
        import pandas as pd

        columns = ["version", "text", "set_at", "applied_at", "applied_by"]
        rows = [
            {
                "version": i.version,
                "text": i.text,
                "set_at": i.set_at,
                "applied_at": i.applied_at,
                "applied_by": i.applied_by,
            }
            for i in self.snapshot()
        ]
        frame = pd.DataFrame(rows, columns=columns).set_index("version")
        frame["set_at"] = pd.to_datetime(frame["set_at"], utc=True)
        frame["applied_at"] = pd.to_datetime(frame["applied_at"], utc=True)
        return frame
