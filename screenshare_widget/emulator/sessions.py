"""Sessions, resumption handles and the service's time limits, as the emulator keeps them.

Internal module; :class:`Lifetimes` is re-exported from :mod:`screenshare_widget.emulator`.

A **session** is what a resumption handle refers to. A setup without
``sessionResumption.handle`` starts a new one; a setup with a known, unexpired handle
continues it on a new connection, with what the session received so far (frames, the latest
frame, audio, replies given). The service's limits (``research/live-api-and-sdk.md`` §10),
which :class:`Lifetimes` shortens for tests:

- a **connection** lives about 10 minutes; ``goAway {timeLeft}`` comes about 60 s before
  its end; then it is closed (1000, :data:`REASON_LIFETIME`);
- a **session** that received audio and video, without context window compression, ends
  after about 2 minutes of session time, summed over its connections (1000,
  :data:`REASON_AV_LIMIT`); its handles stop working (the emulator's assumption: the
  session is over, so a resume is refused and the client starts afresh);
- a **handle** stays valid 2 hours after the connection that issued it ended; an unknown or
  expired one is refused before ``setupComplete`` (1008, :data:`REASON_BAD_HANDLE`).

A realistic emulator (:attr:`Realism.service_lifetimes`) uses what real captures show
instead: ``goAway`` 50 s ahead with ``timeLeft`` in whole seconds
(:func:`whole_seconds_string`) and the end closed with 1011 :data:`REASON_DEADLINE`; it
refuses a handle with 1011 "Internal error encountered." unless told 1008.

Every time is the emulator loop's monotonic clock (``loop.time()``, seconds), and a
connection's time starts when its ``setupComplete`` goes out.

Memory stays bounded: a session keeps its counters, the latest frame and at most
:data:`MAX_HANDLES_PER_SESSION` handles; a session without live connections is forgotten
once none of its handles is valid, and at most :data:`MAX_IDLE_SESSIONS` such sessions are
kept (the longest idle go first).
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from .traffic import ReceivedFrame
from .usage import Context
from .wire import pick

#: Close code and reason when a connection reaches its lifetime.
CLOSE_LIFETIME: Final = 1000
REASON_LIFETIME: Final = "Connection lifetime reached."
#: Close code and reason when an audio+video session without compression hits its limit.
CLOSE_AV_LIMIT: Final = 1000
REASON_AV_LIMIT: Final = "Session duration limit reached: enable context window compression."
#: Close code and reason for a resumption handle that is unknown or expired (before
#: ``setupComplete``, so the SDK's ``connect()`` raises ``APIError`` with this code).
CLOSE_BAD_HANDLE: Final = 1008
REASON_BAD_HANDLE: Final = "Session resumption handle is invalid or expired."
#: Close code and reason of a connection's end on the real service (R5, R6), used with
#: :attr:`Realism.service_lifetimes` in place of :data:`CLOSE_LIFETIME`.
CLOSE_DEADLINE: Final = 1011
REASON_DEADLINE: Final = "Deadline expired before operation could complete."
#: How late a ``goAway`` may go out and still say the scheduled whole seconds (seconds):
#: :func:`whole_seconds_string` rounds the time left down after adding this.
GO_AWAY_LATENESS_S: Final = 0.1

#: The service's limits (seconds): connection lifetime, goAway lead, audio+video session
#: limit without compression, and how long a handle outlives its connection.
SERVICE_CONNECTION_S: Final = 600.0
SERVICE_GO_AWAY_BEFORE_S: Final = 60.0
SERVICE_AV_LIMIT_S: Final = 120.0
SERVICE_HANDLE_TTL_S: Final = 7200.0

#: Handles remembered per session (the most recent; older ones stop working).
MAX_HANDLES_PER_SESSION: Final = 32
#: Sessions without a live connection kept for resumption (the longest idle are dropped).
MAX_IDLE_SESSIONS: Final = 256


@dataclass(frozen=True)
class Lifetimes:
    """Time limits the emulator enforces, in seconds; ``None`` switches a limit off.

    The defaults enforce no connection or session limit (as before) and keep handles valid
    for the service's 2 hours. :meth:`service` gives the service's own values.

    - ``connection_s``: each connection is closed (1000, :data:`REASON_LIFETIME`) this long
      after its ``setupComplete``; ``go_away_before_s`` before that (clamped to the
      lifetime; ``0`` sends none) it gets ``goAway`` with the time left.
    - ``av_limit_s``: a session that received audio and video, on a connection whose setup
      has no ``contextWindowCompression``, is closed (1000, :data:`REASON_AV_LIMIT`) when its
      session time (summed over its connections) reaches this; the session then ends.
    - ``handle_ttl_s``: a resumption handle stays valid this long after the connection that
      issued it ended.
    """

    connection_s: float | None = None
    go_away_before_s: float = SERVICE_GO_AWAY_BEFORE_S
    av_limit_s: float | None = None
    handle_ttl_s: float = SERVICE_HANDLE_TTL_S

    def __post_init__(self) -> None:
        if self.connection_s is not None and not self.connection_s > 0:
            raise ValueError("connection_s must be positive (or None)")
        if not self.go_away_before_s >= 0:
            raise ValueError("go_away_before_s must not be negative")
        if self.av_limit_s is not None and not self.av_limit_s > 0:
            raise ValueError("av_limit_s must be positive (or None)")
        if not self.handle_ttl_s >= 0:
            raise ValueError("handle_ttl_s must not be negative")

    @classmethod
    def service(cls) -> Lifetimes:
        """The Live service's documented limits: 10 min connections, goAway 60 s before,
        2 min audio+video sessions without compression, 2 h handles."""
        return cls(SERVICE_CONNECTION_S, SERVICE_GO_AWAY_BEFORE_S, SERVICE_AV_LIMIT_S)

    def go_away_lead_s(self) -> float | None:
        """Seconds before the connection's end that ``goAway`` goes out (``None``: never)."""
        if self.connection_s is None or self.go_away_before_s <= 0:
            return None
        return min(self.go_away_before_s, self.connection_s)


def duration_string(seconds: float) -> str:
    """A protobuf JSON Duration, as ``goAway.timeLeft`` carries it: ``"60s"``, ``"1.500s"``.

    Rounded to the millisecond; negative values give ``"0s"``.
    """
    ms = max(0, round(seconds * 1000))
    whole, frac = divmod(ms, 1000)
    return f"{whole}s" if frac == 0 else f"{whole}.{frac:03d}s"


def whole_seconds_string(seconds: float) -> str:
    """``goAway.timeLeft`` as the service sends it: whole seconds, rounded down (``"50s"``).

    A ``goAway`` up to :data:`GO_AWAY_LATENESS_S` late still says the scheduled seconds;
    negative values give ``"0s"``.
    """
    return f"{max(0, math.floor(round(seconds + GO_AWAY_LATENESS_S, 9)))}s"


@dataclass
class Session:
    """One conversation, across the connections that resume it.

    The reader of each connection updates ``audio_s``, ``got_audio`` and ``got_video``; the
    default responder keeps ``frames``, ``latest_frame`` and ``replies`` here so that a
    resumed connection continues where the last one stopped.
    """

    id: str
    #: PCM16 audio received over all connections (seconds).
    audio_s: float = 0.0
    got_audio: bool = False
    got_video: bool = False
    #: Screen frames the responder has taken in, and the latest of them.
    frames: int = 0
    latest_frame: ReceivedFrame | None = None
    #: Replies the responder started.
    replies: int = 0
    #: Connections that belonged to it (accepted setups).
    connections: int = 0
    #: Session time of its connections that ended (seconds).
    ended_time_s: float = 0.0
    #: Whether it ended (the audio+video limit): its handles no longer resume it.
    ended: bool = False
    #: Live connections: index -> ``setupComplete`` time (``None`` until then).
    live: dict[int, float | None] = field(default_factory=dict)
    #: Its most recent handles, oldest first.
    handles: deque[str] = field(default_factory=deque)
    #: Its conversation as the service's context window holds it (realistic usage).
    context: Context = field(default_factory=Context)
    #: Tool calls the responder made in it (for their ids).
    tool_calls: int = 0

    def time_s(self, now: float) -> float:
        """Session time at ``now``: ended connections plus the live ones so far (seconds)."""
        running = sum(now - start for start in self.live.values() if start is not None)
        return self.ended_time_s + running


@dataclass
class _Handle:
    session: Session
    connection: int
    #: Loop time after which it no longer resumes; ``None`` while its connection is live.
    expires: float | None = None


class SessionStore:
    """The emulator's sessions and their handles; used on the emulator's loop only."""

    def __init__(self, lifetimes: Lifetimes) -> None:
        self.lifetimes = lifetimes
        self._ids = itertools.count(1)
        self._handles: dict[str, _Handle] = {}
        # Sessions without a live connection, least recently idle first.
        self._idle: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        """Sessions kept without a live connection (for tests of the bounds)."""
        return len(self._idle)

    @property
    def handle_count(self) -> int:
        """Handles currently remembered."""
        return len(self._handles)

    def new(self) -> Session:
        """A new session."""
        return Session(id=f"emu-session-{next(self._ids)}")

    def resume(self, handle: str, now: float) -> Session | None:
        """The session ``handle`` refers to, or ``None`` if it is unknown or expired."""
        self.prune(now)
        entry = self._handles.get(handle)
        if entry is None or entry.session.ended:
            return None
        if entry.expires is not None and now > entry.expires:
            return None
        return entry.session

    def attach(self, session: Session, connection: int) -> None:
        """A connection was accepted for ``session`` (its time starts at :meth:`start`)."""
        session.connections += 1
        session.live[connection] = None
        self._idle.pop(session.id, None)

    def start(self, session: Session, connection: int, now: float) -> None:
        """The connection's ``setupComplete`` went out: its session time starts."""
        if connection in session.live and session.live[connection] is None:
            session.live[connection] = now

    def issue(self, session: Session, connection: int, handle: str) -> None:
        """Remember ``handle`` (sent with ``resumable: true``) as resuming ``session``."""
        if not handle or session.ended:
            return
        if handle in self._handles:
            old = self._handles[handle].session
            if handle in old.handles:
                old.handles.remove(handle)
        self._handles[handle] = _Handle(session, connection)
        session.handles.append(handle)
        while len(session.handles) > MAX_HANDLES_PER_SESSION:
            self._handles.pop(session.handles.popleft(), None)

    def end_session(self, session: Session) -> None:
        """The session is over (a session limit): its handles stop working."""
        session.ended = True
        for handle in session.handles:
            self._handles.pop(handle, None)
        session.handles.clear()

    def detach(self, session: Session, connection: int, now: float) -> None:
        """The connection ended: count its time, start its handles' time to live."""
        start = session.live.pop(connection, None)
        if start is not None:
            session.ended_time_s += max(0.0, now - start)
        expires = now + self.lifetimes.handle_ttl_s
        for handle in session.handles:
            entry = self._handles.get(handle)
            if entry is not None and entry.connection == connection:
                entry.expires = expires
        if not session.live:
            self._idle[session.id] = session
            self._idle.move_to_end(session.id)
        self.prune(now)

    def prune(self, now: float) -> None:
        """Forget expired handles, and idle sessions that no handle resumes any more."""
        for session in list(self._idle.values()):
            self._drop_expired(session, now)
            if not session.handles:
                del self._idle[session.id]
        while len(self._idle) > MAX_IDLE_SESSIONS:
            _, oldest = self._idle.popitem(last=False)
            for handle in oldest.handles:
                self._handles.pop(handle, None)
            oldest.handles.clear()

    def _drop_expired(self, session: Session, now: float) -> None:
        kept: deque[str] = deque()
        for handle in session.handles:
            entry = self._handles.get(handle)
            if entry is None or entry.session is not session:
                continue
            if entry.expires is not None and now > entry.expires:
                del self._handles[handle]
            else:
                kept.append(handle)
        session.handles = kept


class Handles:
    """The resumption handles one connection sends: ``emu-<connection>-<n>`` (``n`` counts
    the replies ended), or UUIDs as the service sends them (``uuids``). ``send``: whether
    the connection sends them at all (the client asked for resumption); ``on_handle`` is
    told every handle that goes out with ``resumable: true``, scripted ones included.
    """

    def __init__(
        self,
        connection: int,
        *,
        send: bool,
        uuids: bool,
        on_handle: Callable[[str], None] | None,
    ) -> None:
        self.send = send
        self._connection, self._uuids, self._on_handle = connection, uuids, on_handle
        self._replies = 0

    def update(self, *, next_reply: bool = False) -> dict[str, Any]:
        """The next ``sessionResumptionUpdate`` with a new handle, registered already;
        ``next_reply``: a reply just ended."""
        self._replies += int(next_reply)
        handle = str(uuid.uuid4()) if self._uuids else f"emu-{self._connection}-{self._replies}"
        update = {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
        self.register(update)
        return update

    def register(self, obj: dict[str, Any]) -> None:
        """Tell ``on_handle`` of the handle ``obj`` carries with ``resumable: true``, if any."""
        update = obj.get("sessionResumptionUpdate")
        if self._on_handle is None or not isinstance(update, dict):
            return
        handle = pick(update, "new_handle")
        if pick(update, "resumable") is True and isinstance(handle, str) and handle:
            self._on_handle(handle)
