"""Who gets in: the emulator's checks between a WebSocket upgrade and ``setupComplete``.

Internal module. :meth:`Admission.read_setup` reads the first message, records it and
validates it exactly like the service (key, model, options), closing with 1007/1008 and the
service's reasons. :meth:`Admission.open_session` then applies a ``"reject"``
:class:`Fault`, and the setup's resumption handle picks the session: a refused handle
closes with 1008, or as :attr:`Realism.refused_handle_close` says (see
:mod:`screenshare_widget.emulator.sessions`); with
:attr:`Realism.refuse_concurrent_resume`, resuming a session that still has an open
connection closes 1011. Each refusal returns the close it sent, for the record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from .connection import note_received
from .faults import FaultPlan
from .realism import Realism
from .sessions import CLOSE_BAD_HANDLE, REASON_BAD_HANDLE, Session, SessionStore
from .traffic import ReceivedMessage, Traffic
from .validation import (
    CLOSE_INTERNAL,
    CLOSE_INVALID,
    REASON_INTERNAL_ENCOUNTERED,
    REASON_INVALID_ARGUMENT,
    REASON_INVALID_JSON,
    check_setup,
    close_reason,
)
from .wire import InvalidJson, parse_client_message, pick

logger = logging.getLogger(__name__)

#: How long a client may take to send its setup after the upgrade (seconds).
SETUP_TIMEOUT_S: Final = 30.0

#: A close the emulator sent: (code, reason).
Close = tuple[int, str]


@dataclass
class Admission:
    """The setup checks of one emulator; ``sockets`` are its open connections by index."""

    traffic: Traffic
    sessions: SessionStore
    realism: Realism
    faults: FaultPlan
    api_keys: frozenset[str] | None
    expired_keys: frozenset[str]
    sockets: dict[int, ServerConnection] = field(default_factory=dict)

    async def read_setup(
        self, ws: ServerConnection, index: int, version: str, key: str | None
    ) -> tuple[dict[str, Any] | None, Close | None]:
        """Read and check the first message; on refusal close and return the close."""
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_S):
                raw = await ws.recv()
        except TimeoutError:
            return None, await _close(ws, CLOSE_INVALID, REASON_INVALID_ARGUMENT)
        t = time.time()
        try:
            event = parse_client_message(raw, connection=index, t=t)
        except InvalidJson:
            self.traffic.add_message(ReceivedMessage(t, index, "invalid_json", {}))
            return None, await _close(ws, CLOSE_INVALID, REASON_INVALID_JSON)
        note_received(self.traffic, event)
        if event.kind != "setup" or not isinstance(event.body, dict):
            logger.warning("connection %d: first message is %r, not setup", index, event.kind)
            return None, await _close(ws, CLOSE_INVALID, REASON_INVALID_ARGUMENT)
        setup: dict[str, Any] = event.body
        self.traffic.add_setup(setup)
        rejection = check_setup(
            setup,
            version=version,
            key=key,
            api_keys=self.api_keys,
            expired_keys=self.expired_keys,
        )
        if rejection is not None:
            logger.info("connection %d: setup refused: %d", index, rejection.code)
            return None, await _close(ws, rejection.code, close_reason(rejection.reason))
        return setup, None

    async def open_session(
        self, ws: ServerConnection, index: int, setup: dict[str, Any]
    ) -> tuple[Session | None, bool, Close | None]:
        """``(session, resumed, None)`` for an accepted setup, else close and say how."""
        fault = self.faults.rejection(index)
        if fault is not None:
            logger.info("connection %d: rejected by a fault: %d", index, fault.code)
            self.traffic.add_fault(index, fault.kind)
            return None, False, await _close(ws, fault.code, close_reason(fault.reason))
        handle = pick(pick(setup, "session_resumption"), "handle")
        if not handle:
            return self.sessions.new(), False, None
        session = None
        if isinstance(handle, str):
            session = self.sessions.resume(handle, asyncio.get_running_loop().time())
        if session is None:
            logger.info("connection %d: resumption handle refused", index)
            return None, False, await _close(ws, *self._refused_handle())
        if self.realism.refuse_concurrent_resume and self._still_open(session):
            logger.info("connection %d: %s is still open elsewhere", index, session.id)
            return None, False, await _close(ws, CLOSE_INTERNAL, REASON_INTERNAL_ENCOUNTERED)
        logger.info("connection %d resumes %s", index, session.id)
        return session, True, None

    def _refused_handle(self) -> Close:
        """The close for an unknown or expired handle (:attr:`Realism.refused_handle_close`)."""
        if self.realism.refused_handle_close == CLOSE_INTERNAL:
            return CLOSE_INTERNAL, REASON_INTERNAL_ENCOUNTERED
        return CLOSE_BAD_HANDLE, REASON_BAD_HANDLE

    def _still_open(self, session: Session) -> bool:
        """Whether a connection of ``session`` has neither received nor sent a close frame.

        A connection counts as closed from its close frame on, not from when its handler
        ends, so a client that closed before resuming is not refused.
        """
        for index in session.live:
            ws = self.sockets.get(index)
            if ws is not None and ws.state is State.OPEN:
                return True
        return False


async def _close(ws: ServerConnection, code: int, reason: str) -> Close:
    """Close ``ws`` with ``code`` and ``reason``; returns them for the record."""
    await ws.close(code, reason)
    return code, reason
