"""When one emulator connection's messages go out: in turn, not while stalled, not once silent.

Internal module; an :class:`~screenshare_widget.emulator.connection.EmulatorConnection`
keeps one :class:`Flow` and asks it before every send (and its close):

- sends take turns (:attr:`Flow.lock`), so a message and what goes with it go out together;
- a **stall** (:meth:`Flow.stall`) stops reading the socket and holds every send and close
  for a while; pings stay unread, so pongs stop too (late pongs already due wait as well);
- once **silent** (:meth:`Flow.silence`, after a ``goAway`` with
  :attr:`Realism.silent_after_go_away`) nothing more is sent: sends are dropped and counted in
  :attr:`Flow.withheld`, while the reader keeps reading and closes still happen.

Used on the emulator's loop only.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection

from .pongs import LatePongConnection


class Flow:
    """Whether, and when, the server messages of the connection on ``ws`` go out."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        #: Held by each send, with what goes out with it (the connection's send lock).
        self.lock = asyncio.Lock()
        # Cleared while stalled: nothing is sent until it is set again.
        self._flowing = asyncio.Event()
        self._flowing.set()
        # Set once a goAway went out with Realism.silent_after_go_away: nothing more is sent.
        self._silent = False
        self._withheld = 0

    @property
    def stalled(self) -> bool:
        """Whether a :meth:`stall` is under way."""
        return not self._flowing.is_set()

    @property
    def silent(self) -> bool:
        """Whether nothing more is sent (:meth:`silence` was called)."""
        return self._silent

    @property
    def withheld(self) -> int:
        """Sends dropped by :meth:`admit` because the connection was silent."""
        return self._withheld

    def silence(self) -> None:
        """Send nothing more from now on (a ``goAway`` went out)."""
        self._silent = True

    async def wait(self) -> None:
        """Wait while stalled; cancellation just stops waiting."""
        await self._flowing.wait()

    async def admit(self) -> bool:
        """Wait while stalled, then whether a send may go out: not once silent (the send is
        then counted in :attr:`withheld`). Call it holding :attr:`lock`."""
        await self._flowing.wait()
        if self._silent:
            self._withheld += 1
            return False
        return True

    async def stall(self, seconds: float) -> None:
        """Stop reading the socket and sending for ``seconds``, then carry on.

        Late pongs (:class:`LatePongConnection`) are held back meanwhile and released at the
        end. Cancellation ends the stall early; reading resumes unless the socket is closing.
        """
        transport = self._ws.transport
        late_pongs = self._ws if isinstance(self._ws, LatePongConnection) else None
        self._flowing.clear()
        if late_pongs is not None:
            late_pongs.hold_pongs()
        transport.pause_reading()
        try:
            await asyncio.sleep(seconds)
        finally:
            if not transport.is_closing():
                transport.resume_reading()
            if late_pongs is not None:
                late_pongs.release_pongs()
            self._flowing.set()
