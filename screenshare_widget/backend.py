"""The small session protocol between the relay and a Live backend.

Internal module. The relay talks only to :class:`LiveSession` objects opened by a
:data:`Connector`; the Gemini adapter (``gemini.py``) provides the real one on top of
``google-genai``, and tests inject a scripted fake. Server messages arrive as
:class:`ServerMessage`, a frozen dataclass in which every field may be set at once: one Live
message can carry audio, transcriptions, a turn completion and usage together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from .config import SessionConfig, model_profile


@dataclass(frozen=True)
class Usage:
    """Token counts reported by the service for one turn.

    ``by_modality`` maps "prompt:AUDIO", "prompt:IMAGE", "response:AUDIO", ... to counts;
    "response:THOUGHTS" counts the model's thinking and "prompt:TOOL_USE" the prompt its
    tool use added (both are in ``total_tokens`` only). ``at`` is when the report arrived
    (UTC; None until the relay stamps it).
    """

    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    by_modality: dict[str, int] = field(default_factory=dict)
    at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for."""

    id: str
    name: str
    args: dict[str, object]


@dataclass(frozen=True)
class ServerMessage:
    """Everything one server message carried. Fields that were absent are None/empty/False."""

    audio: bytes = b""  # model speech, PCM16 LE mono at 24 kHz
    text: str = ""  # non-thought text parts (rare with audio responses)
    input_transcription: str = ""
    output_transcription: str = ""
    interrupted: bool = False
    generation_complete: bool = False
    turn_complete: bool = False
    usage: Usage | None = None
    go_away_s: float | None = None  # seconds left before the service closes the connection
    resumption_handle: str | None = None  # a new handle that came with resumable=true
    resumable: bool | None = None  # the resumable flag of a sessionResumptionUpdate
    tool_calls: tuple[ToolCall, ...] = ()
    cancelled_tool_calls: tuple[str, ...] = ()
    setup_complete: bool = False
    #: Field names of the SDK message that this dataclass has no place for (for logging).
    unhandled: tuple[str, ...] = ()


class LiveError(Exception):
    """The Live connection failed or ended; ``message`` is one human sentence with the fix.

    ``code`` is the WebSocket close code (1000 normal, 1006 dropped, 1007 invalid argument,
    1008 policy/not found, 1011 internal) or 0 when the connection never opened.
    ``fatal`` errors (bad key, unknown model, rejected option) are not worth retrying.
    ``blames`` names the settings a change of which may mend it.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int = 0,
        reason: str = "",
        fatal: bool,
        blames: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.fatal = fatal
        #: The settings (the assistant's trait names) the error puts down to: changing one
        #: of them clears the error.
        self.blames = blames


@dataclass(frozen=True)
class Capabilities:
    """What the model of one open connection can do.

    ``context_update``: the system instruction can be replaced mid-session
    (:meth:`LiveSession.update_instruction`); ``async_tools``: function calls run while the
    model keeps talking, and their answers can wait until it is idle (``when_idle``).
    """

    context_update: bool = False
    async_tools: bool = False

    @classmethod
    def of(cls, model: str) -> Capabilities:
        """The capabilities of ``model``, from its profile in the config's table."""
        profile = model_profile(model)
        return cls(context_update=profile.context_update, async_tools=profile.async_tools)


class LiveSession(Protocol):
    """An open Live connection. Sends must not be called concurrently for the same stream.

    ``capabilities`` are those of the model this connection was opened with."""

    capabilities: Capabilities

    async def send_audio(self, pcm: bytes) -> None:
        """Send microphone audio: PCM16 LE mono at 16 kHz."""

    async def send_frame(self, jpeg: bytes) -> None:
        """Send one screen frame (JPEG)."""

    async def send_text(self, text: str) -> None:
        """Send typed text as realtime input."""

    async def end_audio(self) -> None:
        """Say the microphone stream ended (``audioStreamEnd``), so the service's voice
        activity detection closes an utterance still open."""

    async def send_tool_response(
        self, call_id: str, name: str, response: dict[str, object], *, when_idle: bool = False
    ) -> None:
        """Answer function call ``call_id``; ``when_idle`` schedules a non-blocking call's
        answer for when the model is not talking."""

    async def update_instruction(self, text: str) -> None:
        """Replace the system instruction mid-session (a context update); only for models
        whose profile has ``context_update``."""

    async def ping(self) -> None:
        """Return once the service answered a ping; the caller bounds the wait."""

    def receive(self) -> AsyncIterator[ServerMessage]:
        """Every server message, across turns, until the connection ends.

        Ends by raising :class:`LiveError` (code 1000 for a normal close). Cancelling the
        iteration leaves the connection open.
        """
        ...


#: Opens a session for a config and an optional resumption handle; closing the context
#: closes the connection.
Connector = Callable[[SessionConfig, str | None], AbstractAsyncContextManager[LiveSession]]
