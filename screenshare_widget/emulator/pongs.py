"""Late pongs: a server connection that answers client pings only after a delay.

Internal module. The Live service is reported to answer WebSocket pings 8-30 s late while
everything else keeps flowing (research D1; R9: aicc2025/sip-to-ai PR #14, R10:
googleapis/python-genai#2935), which is enough to trip a client's keepalive.

websockets answers pings itself, in its sans-I/O protocol (``Protocol.recv_frame`` sends the
pong as it parses the ping). :func:`late_pong_connection` makes a ``ServerConnection``
class for ``serve(create_connection=...)`` whose protocol leaves the pong out and whose
connection sends it :attr:`LatePongConnection.pong_delay_s` later, from a loop timer:

- at most :data:`MAX_HELD_PONGS` pings wait; a newer one beyond that drops the oldest,
  which then goes unanswered (a pong for a later ping acknowledges it, RFC 6455 §5.5.3);
- no pong goes out once the connection is closing or closed: the timers are cancelled when
  the connection is lost and a due pong is dropped unless the connection is open;
- :meth:`LatePongConnection.hold_pongs` (a stall) keeps due pongs back until
  :meth:`LatePongConnection.release_pongs`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from websockets.asyncio.server import Server, ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: Pings whose pong is held at once, per connection (the oldest is dropped beyond it).
MAX_HELD_PONGS: Final = 16


@dataclass(frozen=True)
class PongStats:
    """A connection's late pongs so far: sent, still held, and pings left unanswered
    (dropped over :data:`MAX_HELD_PONGS`, or pending when the connection closed)."""

    sent: int
    held: int
    dropped: int


class _PongLeftOutProtocol(ServerProtocol):
    """A ``ServerProtocol`` that leaves the answer to a ping to its connection.

    It adds no state, so the protocol ``serve()`` built can take this class in place.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING:
            # What recv_frame does with a ping, without the automatic pong: report it.
            self.events.append(frame)
            return
        super().recv_frame(frame)


class LatePongConnection(ServerConnection):
    """A ``ServerConnection`` that answers each ping :attr:`pong_delay_s` seconds late."""

    #: Delay of each pong (seconds); set on the subclass :func:`late_pong_connection` makes.
    pong_delay_s: float = 0.0

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        # serve() has no protocol factory: its protocol takes the pong-less class in place.
        if type(protocol) is not ServerProtocol:
            raise TypeError(f"expected websockets' ServerProtocol, got {type(protocol)!r}")
        protocol.__class__ = _PongLeftOutProtocol
        super().__init__(protocol, server, **kwargs)
        # Ping payload -> the timer of its pong, oldest first.
        self._held: OrderedDict[bytes, asyncio.TimerHandle] = OrderedDict()
        self._due: list[bytes] = []  # pongs due while held back (a stall)
        self._holding = False
        #: Pongs sent so far, and pings left unanswered (dropped over the bound or closed).
        self.pongs_sent = 0
        self.pings_dropped = 0

    @property
    def pong_stats(self) -> PongStats:
        """Pongs sent, pings waiting for theirs (timers running, or due while held back),
        and pings left unanswered."""
        return PongStats(self.pongs_sent, len(self._held) + len(self._due), self.pings_dropped)

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self._hold(bytes(event.data))

    def _hold(self, data: bytes) -> None:
        if data in self._held:  # the same payload again: one pong answers both
            return
        self._held[data] = self.loop.call_later(self.pong_delay_s, self._due_now, data)
        while len(self._held) + len(self._due) > MAX_HELD_PONGS:
            if self._due:
                self._due.pop(0)
            else:
                _, timer = self._held.popitem(last=False)
                timer.cancel()
            self.pings_dropped += 1

    def _due_now(self, data: bytes) -> None:
        self._held.pop(data, None)
        if self._holding:
            self._due.append(data)
        else:
            self._pong(data)

    def _pong(self, data: bytes) -> None:
        if self.protocol.state is not State.OPEN:
            self.pings_dropped += 1
            return
        self.protocol.send_pong(data)
        try:
            self.send_data()
        except Exception as exc:  # as websockets does for its own automatic pongs
            self.set_connection_exc(exc)
            return
        self.pongs_sent += 1

    def hold_pongs(self) -> None:
        """Keep pongs back from now on (they fall due but wait for :meth:`release_pongs`)."""
        self._holding = True

    def release_pongs(self) -> None:
        """Send the pongs that fell due while held back, and stop holding them."""
        self._holding = False
        due, self._due = self._due, []
        for data in due:
            self._pong(data)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._held.values():
            timer.cancel()
        self.pings_dropped += len(self._held) + len(self._due)
        self._held.clear()
        self._due.clear()
        super().connection_lost(exc)


def late_pong_connection(delay_s: float) -> type[LatePongConnection]:
    """A :class:`LatePongConnection` class answering pings ``delay_s`` seconds late."""
    if not delay_s > 0:
        raise ValueError("delay_s must be positive")
    return type("LatePongConnection", (LatePongConnection,), {"pong_delay_s": delay_s})
