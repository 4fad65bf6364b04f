"""One client connection to the emulator, as a script sees it.

Internal module; :class:`EmulatorConnection` is re-exported from
:mod:`screenshare_widget.emulator`.

Server messages always go out as JSON in **binary** frames with **camelCase top-level
keys** (the SDK crashes on anything else) and stay under :data:`MAX_SERVER_FRAME_BYTES`
(the SDK's websockets client refuses frames over 1 MiB). Audio is standard base64, as the
service sends it.

While a script runs, the connection's reader keeps reading and recording client messages
into a bounded :class:`~screenshare_widget.emulator.inbox.Inbox` that
:meth:`EmulatorConnection.next_message` takes from. The messages a script sends by name
(:meth:`~screenshare_widget.emulator.messages.ServerMessages.turn_complete`, ...) come
from :mod:`~screenshare_widget.emulator.messages`; the resumption handles from
:class:`~screenshare_widget.emulator.sessions.Handles`.

Resumption updates follow the service when the setup asked for resumption (and the emulator
sends handles): a ``sessionResumptionUpdate {newHandle, resumable: true}`` right after
``setupComplete`` and after each ``turnComplete`` (or ``interrupted``) that ends a reply, and
``{resumable: false}`` (no handle) when the model starts generating: before the first
``modelTurn``, ``outputTranscription`` or ``toolCall`` of a reply
(:mod:`~screenshare_widget.emulator.resumption`). Every handle sent with
``resumable: true``, scripted ones included, resumes the connection's session.

The connection's :attr:`EmulatorConnection.realism` applies to scripts too: handles are
UUIDs, ``{}`` follows each ``turnComplete``, ``modelTurn`` audio from :meth:`send_audio`
carries ``"role": "model"``, and once a ``goAway`` went out nothing more is sent (sends
return quietly; the reader keeps recording; closes still happen). When sends go out (in turn,
not while stalled, not once silent) is :mod:`~screenshare_widget.emulator.flow`'s concern.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .flow import Flow
from .inbox import Inbox
from .messages import ServerMessages, sent_message
from .pongs import LatePongConnection, PongStats
from .realism import Realism
from .resumption import ResumptionUpdates, server_content
from .sessions import Handles, Session
from .traffic import ReceivedMessage, SentMessage, Traffic
from .validation import (
    CLOSE_INVALID,
    CLOSE_POLICY,
    REASON_INVALID_JSON,
    REASON_NOT_IMPLEMENTED,
    close_reason,
    model_name,
)
from .wire import ClientEvent, InvalidJson, has, parse_client_message, pick

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: Largest server frame sent (bytes): the SDK's client drops the connection above 1 MiB.
MAX_SERVER_FRAME_BYTES: Final = 1024 * 1024 - 1024
#: Close code recorded when the emulator drops the TCP connection without a close frame.
CLOSE_ABNORMAL: Final = 1006


class EmulatorConnection(ServerMessages):
    """A client connection after a valid setup.

    ``index`` numbers connections from 0; ``setup`` is the raw setup object; ``model`` is its
    model without ``models/``; ``version`` the API version from the path; ``session`` the
    :class:`~screenshare_widget.emulator.sessions.Session` it belongs to (a new one if not
    given) and ``resumed`` whether its setup resumed that session with a handle.
    ``on_handle`` is called with each handle sent with ``resumable: true``. ``realism``
    says how it imitates the service (:class:`Realism`; idealised if not given);
    ``on_tool_call`` is called after each ``toolCall`` sent and returns whether the
    connection must then close (:attr:`Realism.tool_call_close_every`).
    """

    def __init__(
        self,
        ws: ServerConnection,
        *,
        index: int,
        setup: dict[str, Any],
        version: str,
        traffic: Traffic,
        resumption_handles: bool,
        session: Session | None = None,
        resumed: bool = False,
        on_handle: Callable[[str], None] | None = None,
        realism: Realism | None = None,
        on_tool_call: Callable[[], bool] | None = None,
    ) -> None:
        self.index = index
        #: How this connection imitates the real service.
        self.realism = realism if realism is not None else Realism.ideal()
        self._on_tool_call = on_tool_call
        self.setup = setup
        self.model = model_name(setup)
        self.version = version
        self._ws = ws
        self._traffic = traffic
        resumption = pick(setup, "session_resumption")
        #: Whether the client asked for session resumption updates.
        self.wants_resumption = has(setup, "session_resumption")
        #: The handle the client resumes from, if any.
        self.resumed_handle: str | None = pick(resumption, "handle")
        send_handles = resumption_handles and self.wants_resumption
        self._resumption = ResumptionUpdates(
            Handles(index, send=send_handles, uuids=self.realism.uuid_handles, on_handle=on_handle)
        )
        #: The session this connection continues or started.
        self.session = session if session is not None else Session(id=f"emu-connection-{index}")
        #: Whether the setup resumed :attr:`session` with a handle.
        self.resumed = resumed
        #: When ``setupComplete`` went out (the loop's ``time()``), ``None`` before.
        self.setup_complete_at: float | None = None
        self._setup_done = asyncio.Event()
        # Set once the session has received both audio and video (the audio+video limit).
        self._av_seen = asyncio.Event()
        if self.session.got_audio and self.session.got_video:
            self._av_seen.set()
        self._flow = Flow(ws)  # sends in turn, held while stalled, dropped once silent
        self._inbox = Inbox()
        self._setup_complete_sent = False
        self._initiated_close: tuple[int, str] | None = None

    # ---- reading --------------------------------------------------------------------------

    @property
    def audio_seconds(self) -> float:
        """PCM16 audio received on this connection so far (seconds, to the nanosecond)."""
        return self._inbox.audio_seconds

    async def read_loop(self) -> None:
        """Read, record and queue client messages until the connection closes.

        Invalid JSON closes the connection with 1007; malformed messages are logged and
        skipped. Returns when the connection is closed, by either side.
        """
        try:
            async for raw in self._ws:
                event = self._accept(raw)
                if event is None:
                    await self.close(CLOSE_INVALID, REASON_INVALID_JSON)
                    return
                received_s = sum(a.seconds for a in event.audio)
                self._note_media(event, received_s)
                await self._inbox.put(event, received_s)
        except ConnectionClosed:
            pass

    def _note_media(self, event: ClientEvent, received_s: float) -> None:
        session = self.session
        session.audio_s += received_s
        session.got_audio = session.got_audio or bool(event.audio)
        session.got_video = session.got_video or bool(event.frames)
        if session.got_audio and session.got_video:
            self._av_seen.set()

    def _accept(self, raw: bytes | str) -> ClientEvent | None:
        t = time.time()
        try:
            event = parse_client_message(raw, connection=self.index, t=t)
        except InvalidJson as exc:
            logger.warning("connection %d: invalid JSON (%s)", self.index, exc)
            self._traffic.add_message(ReceivedMessage(t, self.index, "invalid_json", {}))
            return None
        note_received(self._traffic, event)
        return event

    async def next_event(self, kind: str | None = None, timeout: float | None = 5.0) -> ClientEvent:  # noqa: ASYNC109 (public API)
        """The oldest unread client message of ``kind`` (any kind if ``None``), parsed.

        Messages of other kinds stay queued. Raises ``TimeoutError`` after ``timeout``
        seconds (``None``: wait forever); cancellation just stops waiting.
        """
        return await self._inbox.next_event(kind, timeout)

    async def next_message(self, kind: str | None = None, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109 (public API)
        """The summary (as recorded) of the oldest unread client message of ``kind``.

        ``kind`` is ``"realtime_input"``, ``"client_content"``, ``"tool_response"``,
        ``"context_update"`` (either casing) or ``None`` for any. Raises ``TimeoutError``.
        """
        return (await self.next_event(kind, timeout)).summary

    async def wait_audio(self, seconds: float, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (public API)
        """Wait until this connection received ``seconds`` of 16 kHz PCM16 in total.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        await self._inbox.wait_audio(seconds, timeout)

    # ---- sending --------------------------------------------------------------------------

    async def send(self, obj: dict[str, Any]) -> None:
        """Send a raw server message as JSON in a binary frame.

        Use camelCase top-level keys only (the SDK crashes on others). When the client asked
        for resumption, ``sessionResumptionUpdate`` messages go with it as the module says.
        Waits while the connection is stalled. Raises ``ValueError`` for frames over
        :data:`MAX_SERVER_FRAME_BYTES` and websockets' ``ConnectionClosed`` once closed.

        With :attr:`realism`: once silent after ``goAway`` the message is dropped (counted
        in :attr:`withheld`); ``{}`` follows each ``turnComplete``; a ``toolCall`` may be
        followed by the close 1008 of :attr:`Realism.tool_call_close_every`.
        """
        data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        if len(data) > MAX_SERVER_FRAME_BYTES:
            raise ValueError(
                f"server message of {len(data)} bytes is over {MAX_SERVER_FRAME_BYTES} bytes"
            )
        async with self._flow.lock:
            if not await self._flow.admit():
                return
            await self._resumption.before(obj, self._send_now)
            self._resumption.register(obj)  # before the client can see it
            t = time.time()  # before the send: the client may read it before the send returns
            await self._ws.send(data)
            self._traffic.add_sent(sent_message(self.index, obj, t))
            close_after = await self._after_sent(obj)
        if close_after:
            logger.info("connection %d: closing after a toolCall", self.index)
            await self.close(CLOSE_POLICY, REASON_NOT_IMPLEMENTED)

    async def _after_sent(self, obj: dict[str, Any]) -> bool:
        """What follows a message sent (the caller holds the send lock): handles, ``{}``
        after ``turnComplete``, silence after ``goAway``; whether a close 1008 follows."""
        if "setupComplete" in obj:
            self._setup_complete_sent = True
            if self.setup_complete_at is None:
                self.setup_complete_at = asyncio.get_running_loop().time()
                self._setup_done.set()
        await self._resumption.after(obj, self._send_now)
        turn_complete = bool(server_content(obj).get("turnComplete"))
        if turn_complete and self.realism.empty_message_every_s is not None:
            await self._send_now({})
        if "goAway" in obj and self.realism.silent_after_go_away:
            logger.info("connection %d: silent after goAway", self.index)
            self._flow.silence()
        return "toolCall" in obj and self._on_tool_call is not None and self._on_tool_call()

    async def _send_now(self, obj: dict[str, Any]) -> None:
        # The caller holds the send lock.
        t = time.time()
        await self._ws.send(json.dumps(obj, separators=(",", ":")).encode("utf-8"))
        self._traffic.add_sent(sent_message(self.index, obj, t))

    async def send_raw(self, data: bytes | str) -> None:
        """Send a frame exactly as given (bytes: binary, str: text), without any checks.

        Waits while the connection is stalled; dropped once silent after ``goAway``.
        """
        async with self._flow.lock:
            if not await self._flow.admit():
                return
            t = time.time()
            await self._ws.send(data)
            self._traffic.add_sent(SentMessage(t, self.index, ("raw",)))

    async def send_setup_complete(self) -> None:
        """Send ``setupComplete``: it must be the first server message after the setup."""
        await self.send({"setupComplete": {}})

    @property
    def setup_complete_sent(self) -> bool:
        """Whether ``setupComplete`` was sent."""
        return self._setup_complete_sent

    async def wait_setup_complete(self) -> float:
        """Wait until ``setupComplete`` went out; returns when (the loop's ``time()``)."""
        await self._setup_done.wait()
        assert self.setup_complete_at is not None
        return self.setup_complete_at

    async def wait_audio_and_video(self) -> None:
        """Wait until the session has received both audio and video (on any connection)."""
        await self._av_seen.wait()

    @property
    def session_id(self) -> str:
        """The id of the session this connection belongs to."""
        return self.session.id

    @property
    def silent(self) -> bool:
        """Whether the connection sends nothing more (silent after ``goAway``)."""
        return self._flow.silent

    @property
    def withheld(self) -> int:
        """Messages dropped because the connection was silent after ``goAway``."""
        return self._flow.withheld

    @property
    def pongs(self) -> PongStats | None:
        """Its late pongs so far (:attr:`Realism.pong_delay_s`); ``None`` when websockets
        answers pings itself, at once."""
        if isinstance(self._ws, LatePongConnection):
            return self._ws.pong_stats
        return None

    @property
    def stalled(self) -> bool:
        """Whether the connection is stalled (:meth:`stall`)."""
        return self._flow.stalled

    async def stall(self, seconds: float) -> None:
        """Stop reading the socket and sending for ``seconds``, then carry on.

        Client messages and pings stay unread in the socket, so pongs stop too (late pongs
        already due wait as well); sends (and :meth:`close`) wait. Cancellation ends the
        stall early.
        """
        logger.info("connection %d: stalled for %.3f s", self.index, seconds)
        await self._flow.stall(seconds)

    # ---- closing --------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame carrying ``code`` and ``reason``; waits for the handshake.

        The reason is cut to 123 UTF-8 bytes, the most a close frame carries. Waits while
        the connection is stalled.
        """
        await self._flow.wait()
        reason = close_reason(reason)
        if self._initiated_close is None:
            self._initiated_close = (code, reason)
        await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        if self._initiated_close is None:
            self._initiated_close = (CLOSE_ABNORMAL, "aborted by the emulator")
        self._ws.transport.abort()

    def close_record(self) -> tuple[int, str]:
        """``(code, reason)`` of how the connection ended: the emulator's close if it
        initiated one, else the code received from the client (1006 if none)."""
        if self._initiated_close is not None:
            return self._initiated_close
        code = self._ws.close_code
        return (code if code is not None else CLOSE_ABNORMAL, self._ws.close_reason or "")


def note_received(traffic: Traffic, event: ClientEvent) -> None:
    """Put a parsed client message into ``traffic`` and log its problems."""
    traffic.add_message(ReceivedMessage(event.t, event.connection, event.kind, event.summary))
    for audio in event.audio:
        traffic.add_audio(audio)
    for frame in event.frames:
        traffic.add_frame(frame)
    for text in event.texts:
        traffic.add_text(text)
    for problem in event.problems:
        logger.warning("connection %d: skipped: %s", event.connection, problem)
