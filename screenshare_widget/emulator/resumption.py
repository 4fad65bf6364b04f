"""The ``sessionResumptionUpdate`` messages that go with one connection's server messages.

Internal module; an :class:`~screenshare_widget.emulator.connection.EmulatorConnection`
keeps one :class:`ResumptionUpdates` and lets it send around each message it sends.

They follow the service when the setup asked for resumption and the emulator sends handles
(``send``): ``{newHandle, resumable: true}`` right after ``setupComplete`` and after each
``turnComplete`` (or ``interrupted``) that ends a reply, and ``{resumable: false}`` (no
handle) when the model starts generating: before the first ``modelTurn``,
``outputTranscription`` or ``toolCall`` of a reply. Whether a reply is under way is tracked
whether or not they are sent. The handles themselves come from
:class:`~screenshare_widget.emulator.sessions.Handles`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .sessions import Handles

#: Sends one server message as it is (the caller holds the connection's send lock).
Send = Callable[[dict[str, Any]], Awaitable[None]]


def server_content(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``serverContent`` of a server message; ``{}`` if it has none (or not an object)."""
    content = obj.get("serverContent")
    return content if isinstance(content, dict) else {}


def _starts_reply(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` is one the model sends as it generates: a ``toolCall``, or
    ``serverContent`` with a ``modelTurn`` or an ``outputTranscription``."""
    content = server_content(obj)
    return "toolCall" in obj or any(
        content.get(key) for key in ("modelTurn", "outputTranscription")
    )


class ResumptionUpdates:
    """The resumption updates of one connection, with its ``handles``, and whether it is
    generating."""

    def __init__(self, handles: Handles) -> None:
        self._handles = handles
        # Whether a reply started and has not ended yet.
        self._generating = False

    def register(self, obj: dict[str, Any]) -> None:
        """Take note of the handle a scripted ``obj`` carries with ``resumable: true``, if
        any; call it before ``obj`` goes out, so the handle resumes once the client sees it."""
        self._handles.register(obj)

    async def before(self, obj: dict[str, Any], send: Send) -> None:
        """Send what goes out just before ``obj``: ``{resumable: false}`` if it starts a reply."""
        if _starts_reply(obj) and not self._generating:
            self._generating = True
            if self._handles.send:
                await send({"sessionResumptionUpdate": {"resumable": False}})

    async def after(self, obj: dict[str, Any], send: Send) -> None:
        """Send what goes out just after ``obj``: a new handle after ``setupComplete``, and
        after the ``turnComplete`` or ``interrupted`` that ends a reply."""
        content = server_content(obj)
        if "setupComplete" in obj and self._handles.send:
            await send(self._handles.update())
        if content.get("turnComplete") or (content.get("interrupted") and self._generating):
            self._generating = False
            if self._handles.send:
                await send(self._handles.update(next_reply=True))
