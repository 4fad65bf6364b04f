"""Session events as plain Python data (frozen dataclasses); no widget or SDK code here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Handover:
    """The conversation moved to a new connection.

    ``reason`` says why the old one ended ("goAway", "1011: Internal error occurred.", ...).
    ``resumed`` is true when the service took the resumption handle, so the model kept the
    conversation's context; false when a fresh session had to start (the transcript goes on
    either way). ``gap_ms`` is the time between the last microphone audio sent on the old
    connection and the first sent on the new one (None when no audio flowed on one side).
    """

    at: datetime
    reason: str
    resumed: bool
    gap_ms: float | None = None
