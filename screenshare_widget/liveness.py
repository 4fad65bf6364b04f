"""Whether a page still holds the session: the kernel's side of the page's heartbeat.

Internal module. A session belongs to the page that started it: the page's capture (its
microphone, its screen) feeds it, and the page's ``beat`` messages (every
:data:`~screenshare_widget.protocol.BEAT_INTERVAL_S`, muted or not) say that page is still
there. When a browser tab closes, its page can send nothing more, not even a Stop; the kernel
then hears silence. :class:`PageWatch` turns that silence into a decision: a live session
whose page has not been heard from for :data:`PAGE_TIMEOUT_S` is ended.

Silence counts only while the kernel could have heard the page. A cell that blocks the thread
on which the page's messages are handled (ipykernel without comm subshells) queues them
without loss; that time is not the page's silence. The widget tells :meth:`PageWatch.check`
whether that thread was *deaf* since the last check.

Everything here is pure: times are passed in (monotonic seconds), nothing reads a clock.
"""

from __future__ import annotations

from typing import Final

#: A running session ends when the page that owns it has not been heard from for this long
#: (s), counted only while the kernel could hear it. A page sends a beat every 2 s, and media
#: much more often, so this allows about seven lost beats (a network blip, a busy browser).
PAGE_TIMEOUT_S: Final = 15.0
#: The thread that handles the page's messages counts as deaf (a cell holds it) when a probe
#: posted to its loop has waited this long (s). A loop that runs answers within milliseconds;
#: the kernel checks every half second, so at most that much of a cell's time is counted.
DEAF_AFTER_S: Final = 0.25


class PageWatch:
    """How long the page that owns the running session has been silent.

    The owner is the capture that shares into the session (the page's Share): only that
    capture's media and beats count. A session started from Python (``say``, ``ask``,
    ``start``) with no Share has no owner: any page of the widget counts, and while no page
    is heard from (a script, a test, nbconvert) it is not watched; the first page heard from
    arms it.

    Not thread-safe by itself: :meth:`heard` and :meth:`own` may race with :meth:`check`,
    but each only stores floats and strings, so the worst case is one check's delay.
    """

    def __init__(self, timeout_s: float = PAGE_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError("the page timeout must be positive (s)")
        self.timeout_s = timeout_s
        self.armed = False
        #: The capture that owns the session, None for a session started from Python.
        self.owner: str | None = None
        self._running = False  # a session runs (between session_started and session_ended)
        self._fired = False  # this session's page was lost: do not arm again
        self._owner_fresh = False  # :meth:`own` came for the session about to start
        self._page_at: float | None = None  # any page, any message
        self._owner_at: float | None = None  # the owner's capture
        self._checked_at = 0.0
        self._silent = 0.0

    @property
    def last_heard(self) -> float | None:
        """When any page was last heard from (monotonic s), None if never."""
        return self._page_at

    def heard(self, now: float, capture: str = "") -> None:
        """A message from a page arrived at ``now``; ``capture`` is the capture it carries."""
        self._page_at = now
        if capture and capture == self.owner:
            self._owner_at = now
        if self._running and not self.armed and not self._fired and self.owner is None:
            self._arm(now)  # a page appeared for a session started from Python

    def own(self, now: float, capture: str) -> None:
        """The page's capture ``capture`` feeds the session from now on (a Share): of the
        session running, or else of the one about to start."""
        self.owner = capture or None
        self._owner_at = self._page_at = now
        if self._running:
            self._owner_fresh = False
            self._fired = False
            self._arm(now)
        else:
            self._owner_fresh = True

    def session_started(self, now: float) -> None:
        """A new session began (not a handover): watch it, unless nothing owns it and no
        page has been heard from within the timeout."""
        if not self._owner_fresh:
            self.owner = None
        self._owner_fresh = False
        self._running = True
        self._fired = False
        recent = self._page_at is not None and now - self._page_at < self.timeout_s
        self.armed = False
        if self.owner is not None or recent:
            self._arm(now)

    def session_ended(self) -> None:
        """The session stopped or failed: nothing to watch."""
        self._running = self.armed = False

    def _arm(self, now: float) -> None:
        self.armed = True
        self._checked_at = now
        self._silent = 0.0

    @property
    def silent_s(self) -> float:
        """The silence counted at the last check (s)."""
        return self._silent

    def check(self, now: float, *, deaf: bool = False) -> bool:
        """Count the silence since the last check and say whether the session must end.

        ``deaf`` says the kernel could not have heard the page meanwhile (a blocked thread,
        a cell that holds the page's messages): that time does not count. Returns True once
        the owner (or, for a session started from Python, every page) was silent for
        :attr:`timeout_s`; the watch then disarms for the rest of the session.
        """
        if not self.armed:
            return False
        last = self._owner_at if self.owner is not None else self._page_at
        since, self._checked_at = self._checked_at, now
        if last is not None and last >= since:
            self._silent = now - last
        elif not deaf:
            self._silent += now - since
        if self._silent < self.timeout_s:
            return False
        self.armed = False
        self._fired = True
        return True
