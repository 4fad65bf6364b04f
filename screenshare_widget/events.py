"""Session events and sent frames as plain Python data; no widget or SDK code here.

The relay appends while the conversation runs (on its thread); readers get consistent
snapshots from any thread. Tables come from the data (``to_pandas()``), never the reverse.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from .locked import LockedSequence

if TYPE_CHECKING:
    import pandas as pd

#: Frames kept for ``assistant.frames`` (policy: the oldest go first): 10 minutes at 1 fps,
#: about 10 to 60 MB of JPEG.
MAX_FRAMES_KEPT: Final = 600
#: Events kept for ``assistant.events`` (policy: the oldest go first); an hour of talk makes
#: a few thousand.
MAX_EVENTS_KEPT: Final = 100_000

EventKind = Literal[
    "speech_start",  # the microphone carried voice after a pause
    "speech_end",  # the microphone went quiet
    "frame_sent",  # a screen frame went to the model
    "first_audio",  # the first model audio of a turn arrived
    "interrupted",  # the user barged in
    "turn_complete",  # the model finished its turn
    "tool_call",  # the model asked for a tool
    "tool_result",  # a tool call ended: ok, error (with the reason) or cancelled
    "handover",  # the conversation moved to a new connection
    "replay",  # what the user said since the last answer went again to a new connection
    "usage",  # the service reported token usage
    "text",  # text the user typed went to the model
    "instruction",  # a version of the system instruction reached the model
    "budget",  # a budget step: frames slowed, video paused, session stopped, or undone
    "page_lost",  # the page of the session was not heard from for the page timeout: stopped
    "stopped",  # the page or Python stopped the session (by, reason)
    "task_failed",  # a relay task (a tool call) ended in an exception: a bug (task, error)
    "device",  # in the page, a device came or went: change (screen_ended, screen_shared,
    # mic_ended, mic_changed) and label (the device's name)
    "echo_suspected",  # the user's words repeat the model's: it may hear itself (heard, ...)
]


@dataclass(frozen=True)
class Handover:
    """The conversation moved to a new connection.

    ``reason`` says why the old one ended ("goAway", "1011: Internal error occurred.", ...).
    ``resumed`` is true when the service took the resumption handle, so the model kept the
    conversation's context; false when a fresh session had to start (the transcript goes on
    either way). ``gap_ms`` is the time between the last microphone audio sent on the old
    connection and the first sent on the new one (None when no audio flowed on one side).
    ``replayed_s`` is the microphone audio (seconds) and ``replayed_texts`` the typed texts
    said since the model's last answer that were sent again on the new connection, so a
    question the old one heard but never answered is not lost; ``lost_s`` is voiced audio
    (seconds) too old to be kept for that (the user is asked to repeat it).
    """

    at: datetime
    reason: str
    resumed: bool
    gap_ms: float | None = None
    replayed_s: float = 0.0
    replayed_texts: int = 0
    lost_s: float = 0.0


@dataclass(frozen=True)
class Event:
    """One thing that happened in the session, at ``at`` (UTC); ``detail`` is read-only."""

    at: datetime
    kind: EventKind
    detail: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class SentFrame:
    """A screen frame as the model got it: JPEG bytes of ``width`` x ``height`` pixels, and
    why the page's frame policy sent it."""

    at: datetime
    jpeg: bytes = field(repr=False)
    width: int
    height: int
    #: Why the page sent it: "first", "change", "speech", "heartbeat" ("" if not said).
    reason: str = ""

    def _repr_mimebundle_(
        self, include: object = None, exclude: object = None
    ) -> dict[str, object]:
        return {
            "image/jpeg": base64.b64encode(self.jpeg).decode(),
            "text/plain": repr(self),
        }


T = TypeVar("T")


class _Log(LockedSequence[T]):
    """A bounded, thread-safe, append-only sequence with consistent snapshots."""

    def __init__(self, limit: int) -> None:
        super().__init__(deque(maxlen=limit))

    def append(self, item: T) -> None:
        with self._lock:
            self._items.append(item)


class Events(_Log[Event]):
    """Every protocol event of the session, oldest first (at most :data:`MAX_EVENTS_KEPT`)."""

    def __init__(self, limit: int = MAX_EVENTS_KEPT) -> None:
        super().__init__(limit)

    def __repr__(self) -> str:
        return f"Events({len(self)} events)"

    def to_pandas(self) -> pd.DataFrame:
        """One row per event: at, kind, and one column per detail key."""
        import pandas as pd

        rows = [{"at": e.at, "kind": e.kind, **e.detail} for e in self.snapshot()]
        frame = pd.DataFrame(rows)
        if frame.empty:
            frame = pd.DataFrame(columns=["at", "kind"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame


class Frames(_Log[SentFrame]):
    """The screen frames the model was sent, oldest first (at most :data:`MAX_FRAMES_KEPT`).

    Index one to see it as an image in the notebook.
    """

    def __init__(self, limit: int = MAX_FRAMES_KEPT) -> None:
        super().__init__(limit)

    def __repr__(self) -> str:
        return f"Frames({len(self)} frames)"

    def to_pandas(self) -> pd.DataFrame:
        """One row per frame: at, width, height, bytes, reason."""
        import pandas as pd

        rows = [
            {
                "at": f.at,
                "width": f.width,
                "height": f.height,
                "bytes": len(f.jpeg),
                "reason": f.reason,
            }  # fmt: skip
            for f in self.snapshot()
        ]
        frame = pd.DataFrame(rows, columns=["at", "width", "height", "bytes", "reason"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame

    def _repr_html_(self, most: int = 12) -> str:
        """The latest frames as a strip of thumbnails."""
        frames = self.snapshot()[-most:]
        if not frames:
            return "<em>no frames sent yet</em>"
        cells = "".join(
            '<figure style="display:inline-block;margin:2px">'
            f'<img src="data:image/jpeg;base64,{base64.b64encode(f.jpeg).decode()}" '
            'style="height:90px;border:1px solid #ccc"/>'
            f'<figcaption style="font-size:10px">{f.at:%H:%M:%S} {f.width}x{f.height}'
            "</figcaption></figure>"
            for f in frames
        )
        return f"<div>{len(self)} frames; the latest {len(frames)}:<br/>{cells}</div>"
