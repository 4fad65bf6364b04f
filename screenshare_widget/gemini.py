"""The Gemini adapter: the only module that imports ``google.genai``.

Internal module. It opens Live sessions with the official SDK, converts the SDK's messages
into :class:`~screenshare_widget.backend.ServerMessage` and its exceptions into
:class:`~screenshare_widget.backend.LiveError` with a sentence a user can act on, and picks
the backend: a client you pass, else one from ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``, else
the local Live emulator.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import os
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Literal
from urllib.parse import urlparse

import pydantic
import websockets.exceptions
from google import genai
from google.genai import errors, types
from google.genai.live import AsyncLive
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import Event
from websockets.typing import Data

from .backend import (
    Capabilities,
    Connector,
    LiveError,
    LiveSession,
    ServerMessage,
    ToolCall,
    Usage,
)
from .config import SessionConfig, live_connect_config
from .protocol import FRAME_MIME, INPUT_MIME

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: How long closing a connection may take before it is aborted (s).
CLOSE_TIMEOUT_S: Final = 2.0
#: Consecutive server messages the SDK cannot parse before the connection counts as broken.
MAX_MALFORMED_IN_A_ROW: Final = 20
#: The key the local emulator is reached with (it accepts any non-empty key).
EMULATOR_KEY: Final = "local-emulator"

_KEY_PATTERN: Final = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")


@dataclass(frozen=True)
class Backend:
    """Where sessions go: a client plus a sentence for the widget."""

    client: genai.Client
    description: str
    emulated: bool


def client_for_emulator(url: str, cafile: str) -> genai.Client:
    """A client for a Live server at ``url`` whose TLS certificate is the PEM in ``cafile``."""
    ctx = ssl.create_default_context(cafile=cafile)
    return genai.Client(
        api_key=EMULATOR_KEY,
        http_options=types.HttpOptions(base_url=url, async_client_args={"ssl": ctx}),
    )


def resolve_backend(client: genai.Client | None) -> Backend:
    """The backend for ``client``; without one, the API key from the environment, and without
    a key the local Live emulator (started on first use, in this process)."""
    if client is not None:
        if not isinstance(client, genai.Client):
            raise TypeError(
                f"client must be a google.genai.Client, not {type(client).__name__}; "
                "or leave it out to use GEMINI_API_KEY"
            )
        return Backend(client, _describe(client), emulated=False)
    if os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"):
        made = genai.Client()
        return Backend(made, _describe(made), emulated=False)
    from .emulator import shared_emulator

    emulator = shared_emulator()
    return Backend(
        client_for_emulator(emulator.url, emulator.cafile),
        "Local Live emulator: no API key is set (set GEMINI_API_KEY for Gemini)",
        emulated=True,
    )


def _describe(client: genai.Client) -> str:
    api = client._api_client
    if getattr(api, "vertexai", False):
        return "Vertex AI Live API"
    base = str(getattr(api, "_http_options", None) and api._http_options.base_url or "")
    host = urlparse(base).hostname or ""
    if host and not host.endswith("googleapis.com"):
        return f"Live server at {urlparse(base).netloc}"
    return "Gemini API"


def _api_key(client: genai.Client) -> str:
    return str(getattr(client._api_client, "api_key", "") or "")


class _RedactKeys(logging.Filter):
    """Removes API keys from log records (websockets logs request headers at DEBUG)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return True
        clean = _KEY_PATTERN.sub("[api key]", text)
        for secret in self.secrets:
            clean = clean.replace(secret, "[api key]")
        if clean != text:
            record.msg, record.args = clean, ()
        return True


_REDACT: Final = _RedactKeys()
#: Loggers that may see the key: websockets' handshake log and the SDK's own.
_KEY_LOGGERS: Final = ("websockets.client", "websockets.asyncio.client", "google_genai")


def protect_logs(secret: str) -> None:
    """Keep ``secret`` (and anything shaped like a Google API key) out of the log records of
    websockets and the SDK, whatever level the user turns on."""
    if secret and len(secret) >= 4:
        _REDACT.secrets.add(secret)
    names = set(_KEY_LOGGERS) | {
        name for name in logging.root.manager.loggerDict if name.startswith("google_genai.")
    }
    for name in names:
        named = logging.getLogger(name)
        if _REDACT not in named.filters:
            named.addFilter(_REDACT)


def scrub(text: str, secret: str = "") -> str:
    """``text`` with API keys (the given one and anything shaped like a Google key) removed."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[api key]")
    return _KEY_PATTERN.sub("[api key]", text)


# ---- errors ----------------------------------------------------------------------------------

#: The settings a rejected setup may be put down to (the assistant's trait names).
_SETTINGS: Final = ("model", "voice", "media_resolution", "tools")
#: The most characters of an HTTP error body kept in a sentence (the rest is in ``reason``).
MAX_HTTP_TEXT_CHARS: Final = 200


@dataclass(frozen=True)
class Outcome:
    """One row of :data:`CLOSE_OUTCOMES` or :data:`HTTP_OUTCOMES`: which ends it matches
    and what they mean.

    ``codes`` are the WebSocket close codes (or HTTP statuses) it matches, empty for any;
    ``pattern`` is a regular expression searched in the reason, ignoring case, empty for
    any reason. ``fatal`` says a retry cannot mend it (see
    :class:`~screenshare_widget.backend.LiveError`); ``blames`` names the settings whose
    change may. ``sentence`` is the cause and the fix, with ``{cause}`` (the code and the
    service's reason, e.g. "1011: Internal error occurred.") and ``{model}`` filled in.
    """

    codes: frozenset[int]
    pattern: str
    fatal: bool
    sentence: str
    blames: tuple[str, ...] = ()

    def matches(self, code: int, reason: str) -> bool:
        """Whether a close with ``code`` and ``reason`` is this row's."""
        if self.codes and code not in self.codes:
            return False
        return not self.pattern or re.search(self.pattern, reason, re.IGNORECASE) is not None


def _codes(*codes: int) -> frozenset[int]:
    return frozenset(codes)


_ANY: Final = _codes()
#: What a non-fatal end does: the relay reconnects with the latest resumption handle.
_RESUMES: Final = "a new connection resumes the session"

#: How the Live service's closes read, first match wins. Sources are the research notes'
#: (research/real-service-behaviour.md, R1-R16 and the issues it cites).
CLOSE_OUTCOMES: Final[tuple[Outcome, ...]] = (
    # Key problems come first whatever their code: the service closes with 1007 for them
    # (R8 for the expired key; the emulator's bad key), other backends may use 1008.
    Outcome(
        _ANY,
        r"api key not valid|api_key_invalid",
        fatal=True,
        sentence="API key not valid: set GEMINI_API_KEY or pass client=.",
    ),
    Outcome(
        _ANY,
        r"api key expired|api_key_expired",
        fatal=True,
        sentence="The API key has expired ({cause}): create a new key in Google AI Studio "
        "(aistudio.google.com/apikey) and set GEMINI_API_KEY to it, or pass client=.",
    ),
    # 1011 "You exceeded your current quota, please check your plan and billing details."
    # (kazunori279/interpretab#13). Not fatal, like a 429: a per-minute quota refills.
    Outcome(
        _ANY,
        r"quota|resource.?exhausted",
        fatal=False,
        sentence="The Live API quota is used up ({cause}): wait a minute, or check your "
        "plan and billing in Google AI Studio.",
    ),
    # Vertex AI's close at its 10-minute connection limit (pipecat#3112).
    Outcome(
        _codes(1000),
        r"operation was cancell?ed",
        fatal=False,
        sentence="The Live service ended the connection at its time limit ({cause}), as "
        f"Vertex AI does every 10 minutes: {_RESUMES}.",
    ),
    Outcome(
        _codes(1000),
        r"lifetime|duration",
        fatal=False,
        sentence=f"The Live connection reached its time limit ({{cause}}): {_RESUMES}.",
    ),
    Outcome(
        _codes(1000),
        "",
        fatal=False,
        sentence=f"The Live service ended the connection ({{cause}}): {_RESUMES}.",
    ),
    # 1006 never travels on the wire: the reason is the SDK's stand-in, so it is left out.
    Outcome(
        _codes(1006),
        "",
        fatal=False,
        sentence=f"The connection to the Live service dropped (1006): {_RESUMES}; if it "
        "keeps happening, check the network connection.",
    ),
    Outcome(
        _codes(1007),
        r"invalid json",
        fatal=False,
        sentence=f"The Live service could not read a message sent to it ({{cause}}): "
        f"{_RESUMES}; if it keeps happening, update screenshare-widget and google-genai.",
    ),
    # "Request contains an invalid argument.": an option the model does not take.
    Outcome(
        _codes(1007),
        "",
        fatal=True,
        sentence="The Live service rejected the session settings ({cause}): remove options "
        "the model does not support.",
        blames=_SETTINGS,
    ),
    # "models/X is not found for API version v1beta, or is not supported for
    # bidiGenerateContent. Call" (cut at 123 bytes; R7).
    Outcome(
        _codes(1008),
        r"models/.*not found",
        fatal=True,
        sentence="The model {model} is not available for the Live API (1008): pass model= "
        "with a Live model such as gemini-3.8-live.",
        blames=("model",),
    ),
    # The emulator's refusal of a handle; the relay drops the handle and starts afresh when
    # this comes before the connection opened.
    Outcome(
        _codes(1008),
        r"resumption handle",
        fatal=False,
        sentence="The Live service no longer knows this session's resumption handle "
        "({cause}): a new session starts, without the conversation so far.",
    ),
    # A random mid-session close, often around tool calls (js-genai#1236, livekit#4545).
    Outcome(
        _codes(1008),
        r"not implemented|not supported, or enabled",
        fatal=False,
        sentence="The Live service dropped the connection ({cause}), as it sometimes does "
        f"around tool calls: {_RESUMES}.",
    ),
    Outcome(
        _codes(1008),
        "",
        fatal=False,
        sentence="The Live service closed the connection for a policy reason ({cause}): "
        f"{_RESUMES}; if it keeps happening, check the model and the session's options.",
    ),
    # The connection's 10-minute lifetime on the Gemini API, after a goAway (R5, R6).
    Outcome(
        _codes(1011),
        r"deadline expired",
        fatal=False,
        sentence=f"The Live connection reached its 10-minute lifetime ({{cause}}): {_RESUMES}.",
    ),
    # websockets' own keepalive gave up on the pongs (R9, R10); see SDK_PING_TIMEOUT_S.
    Outcome(
        _codes(1011),
        r"keepalive ping timeout",
        fatal=False,
        sentence="The Live service did not answer keepalive pings in time ({cause}): "
        f"{_RESUMES}; if it keeps happening, check the network connection.",
    ),
    # "Internal error occurred." (livekit#2274), "Internal error encountered" (genai#985).
    Outcome(
        _codes(1011),
        r"internal error",
        fatal=False,
        sentence=f"The Live service had an internal error ({{cause}}): {_RESUMES}; if it "
        "keeps happening, try again later.",
    ),
    Outcome(
        _codes(1011),
        "",
        fatal=False,
        sentence=f"The Live service failed ({{cause}}): {_RESUMES}; if it keeps happening, "
        "try again later.",
    ),
    # 1012 service restart, 1013 try again later.
    Outcome(
        _codes(1012, 1013),
        "",
        fatal=False,
        sentence=f"The Live service is restarting or busy ({{cause}}): {_RESUMES}; if it "
        "keeps happening, try again later.",
    ),
    Outcome(
        _ANY,
        "",
        fatal=False,
        sentence=f"The Live service closed the connection ({{cause}}): {_RESUMES}.",
    ),
)

#: How HTTP errors on the WebSocket upgrade (or from the SDK) read, first match wins.
HTTP_OUTCOMES: Final[tuple[Outcome, ...]] = (
    Outcome(
        _codes(401, 403),
        "",
        fatal=True,
        sentence="API key not valid or not allowed ({cause}): set GEMINI_API_KEY or pass client=.",
    ),
    # The emulator answers 404 for an unknown API version or path (so does the service).
    Outcome(
        _codes(404),
        "",
        fatal=True,
        sentence="The Live endpoint was not found ({cause}): check base_url and api_version "
        "of the client (the Gemini API serves Live on v1beta and v1alpha).",
    ),
    Outcome(
        _codes(429),
        "",
        fatal=False,
        sentence="The Live API quota is exhausted ({cause}): wait a minute, or check your "
        "plan and billing in Google AI Studio.",
    ),
    Outcome(
        frozenset(range(500, 600)),
        "",
        fatal=False,
        sentence="The Live service is unavailable ({cause}): a new connection is tried; if "
        "it keeps happening, try again later.",
    ),
    Outcome(
        frozenset(range(400, 500)),
        "",
        fatal=True,
        sentence="The Live server refused the connection ({cause}): check base_url and "
        "api_version of the client.",
    ),
    Outcome(
        _ANY,
        "",
        fatal=False,
        sentence="The Live server answered the connection with {cause}: a new connection is tried.",
    ),
)


def _outcome(table: tuple[Outcome, ...], code: int, reason: str) -> Outcome:
    return next(row for row in table if row.matches(code, reason))


def close_outcome(code: int, reason: str, *, model: str = "") -> LiveError:
    """The :class:`LiveError` for a WebSocket close with ``code`` and ``reason`` (already
    scrubbed of keys), by the first matching row of :data:`CLOSE_OUTCOMES`; ``model`` is
    named when the model is to blame."""
    row = _outcome(CLOSE_OUTCOMES, code, reason)
    cause = f"{code}: {reason}" if reason else str(code)
    return LiveError(
        row.sentence.format(cause=cause, model=model or "(unknown)"),
        code=code,
        reason=reason,
        fatal=row.fatal,
        blames=row.blames,
    )


def http_outcome(status: int, text: str = "") -> LiveError:
    """The :class:`LiveError` for an HTTP ``status`` (with the body's ``text``, already
    scrubbed) refusing the connection, by :data:`HTTP_OUTCOMES`. Its ``code`` is 0: the
    connection never opened."""
    row = _outcome(HTTP_OUTCOMES, status, text)
    short = text[:MAX_HTTP_TEXT_CHARS]
    cause = f"HTTP {status}: {short}" if short else f"HTTP {status}"
    return LiveError(
        row.sentence.format(cause=cause, model=""),
        code=0,
        reason=text or str(status),
        fatal=row.fatal,
        blames=row.blames,
    )


def _api_error_reason(exc: errors.APIError) -> str:
    """The service's words in an SDK error: the close reason the SDK passes as the body,
    or the body's message."""
    if isinstance(exc.details, str) and exc.details:
        return exc.details
    if exc.message:
        return str(exc.message)
    return str(exc.details or "")


def _body_text(body: bytes | bytearray | None) -> str:
    """The message of an HTTP error body (Google's ``{"error": {"message": ...}}`` or text)."""
    if not body:
        return ""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return str(parsed["error"].get("message") or text)
    return text


def to_live_error(exc: BaseException, *, model: str = "", secret: str = "") -> LiveError:
    """A :class:`LiveError` with the cause and the fix in one sentence.

    Closes (the SDK's ``APIError`` carrying a close code, which it raises for a close
    during ``connect()`` and ``receive()``, and websockets' ``ConnectionClosed`` from a
    send or a ping) go by :func:`close_outcome`; HTTP statuses by :func:`http_outcome`.
    """
    if isinstance(exc, LiveError):
        return exc
    if isinstance(exc, errors.APIError) and isinstance(exc.code, int) and exc.code >= 1000:
        return close_outcome(exc.code, scrub(_api_error_reason(exc), secret), model=model)
    if isinstance(exc, websockets.exceptions.ConnectionClosed):
        # The frame received from the server, else the one this side sent (e.g. websockets'
        # own 1011 "keepalive ping timeout"); neither: the connection dropped.
        frame = exc.rcvd or exc.sent
        code = frame.code if frame else 1006
        return close_outcome(code, scrub(frame.reason if frame else "", secret), model=model)
    if isinstance(exc, errors.APIError):
        return http_outcome(int(exc.code or 0), scrub(_api_error_reason(exc) or str(exc), secret))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return LiveError(
            "The Live server's TLS certificate is not trusted: pass a client whose "
            "http_options trust it (async_client_args={'ssl': context}).",
            reason=scrub(str(exc), secret),
            fatal=True,
        )
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        response = exc.response
        return http_outcome(response.status_code, scrub(_body_text(response.body), secret))
    if isinstance(exc, OSError | TimeoutError):
        return LiveError(
            f"Cannot reach the Live service ({type(exc).__name__}: {scrub(str(exc), secret)}): "
            "check the network connection.",
            reason=scrub(str(exc), secret),
            fatal=False,
        )
    if isinstance(exc, pydantic.ValidationError | ValueError | TypeError):
        return LiveError(
            f"The session settings are not valid: {scrub(str(exc), secret).splitlines()[0]}",
            reason=scrub(str(exc), secret),
            fatal=True,
            blames=_SETTINGS,
        )
    return LiveError(
        f"The Live connection failed ({type(exc).__name__}: {scrub(str(exc), secret)}).",
        reason=scrub(str(exc), secret),
        fatal=False,
    )


# ---- messages --------------------------------------------------------------------------------

_HANDLED_CONTENT: Final = frozenset(
    {
        "model_turn",
        "input_transcription",
        "output_transcription",
        "interrupted",
        "generation_complete",
        "turn_complete",
        # Informational fields with nothing to do in a voice relay.
        "turn_complete_reason",
        "waiting_for_input",
        "interaction_status",
        "interim_input_transcription",
    }
)
_HANDLED_MESSAGE: Final = frozenset(
    {
        "server_content",
        "usage_metadata",
        "go_away",
        "session_resumption_update",
        "tool_call",
        "tool_call_cancellation",
        "setup_complete",
        "voice_activity_detection_signal",
        "voice_activity",
    }
)


def _duration_s(value: str | None) -> float | None:
    """A protobuf Duration string ("5s", "1.500s") in seconds."""
    if value is None:
        return None
    try:
        return float(str(value).strip().removesuffix("s"))
    except ValueError:
        return None


def _usage(meta: types.UsageMetadata) -> Usage:
    by_modality: dict[str, int] = {}
    for prefix, details in (
        ("prompt", meta.prompt_tokens_details),
        ("response", meta.response_tokens_details),
    ):
        for item in details or ():
            modality = getattr(item.modality, "value", item.modality) or "UNSPECIFIED"
            by_modality[f"{prefix}:{modality}"] = int(item.token_count or 0)
    if meta.thoughts_token_count:
        by_modality["response:THOUGHTS"] = int(meta.thoughts_token_count)
    if meta.tool_use_prompt_token_count:
        by_modality["prompt:TOOL_USE"] = int(meta.tool_use_prompt_token_count)
    return Usage(
        prompt_tokens=int(meta.prompt_token_count or 0),
        response_tokens=int(meta.response_token_count or 0),
        total_tokens=int(meta.total_token_count or 0),
        by_modality=by_modality,
    )


def _content_fields(content: types.LiveServerContent, fields: dict[str, Any]) -> list[str]:
    """Put the fields of ``serverContent`` into ``fields``; returns the ones not handled."""
    unhandled = [
        f"server_content.{name}"
        for name in type(content).model_fields
        if getattr(content, name) not in (None, False) and name not in _HANDLED_CONTENT
    ]
    audio: list[bytes] = []
    text: list[str] = []
    for part in content.model_turn.parts or () if content.model_turn else ():
        blob = part.inline_data
        if blob is not None and blob.data and (blob.mime_type or "").startswith("audio/"):
            audio.append(blob.data)
        if part.text and not part.thought:
            text.append(part.text)
    fields["audio"] = b"".join(audio)
    fields["text"] = "".join(text)
    if content.input_transcription and content.input_transcription.text:
        fields["input_transcription"] = content.input_transcription.text
    if content.output_transcription and content.output_transcription.text:
        fields["output_transcription"] = content.output_transcription.text
    fields["interrupted"] = bool(content.interrupted)
    fields["generation_complete"] = bool(content.generation_complete)
    fields["turn_complete"] = bool(content.turn_complete)
    return unhandled


def to_server_message(msg: types.LiveServerMessage) -> ServerMessage:
    """Every field of one SDK message, as a :class:`ServerMessage`."""
    fields: dict[str, Any] = {}
    unhandled = [
        name
        for name in type(msg).model_fields
        if getattr(msg, name) is not None and name not in _HANDLED_MESSAGE
    ]
    if msg.server_content is not None:
        unhandled += _content_fields(msg.server_content, fields)
    if msg.usage_metadata is not None:
        fields["usage"] = _usage(msg.usage_metadata)
    if msg.go_away is not None:
        left = _duration_s(msg.go_away.time_left)
        fields["go_away_s"] = 0.0 if left is None else left
    update = msg.session_resumption_update
    if update is not None:
        fields["resumable"] = bool(update.resumable)
        if update.resumable and update.new_handle:
            fields["resumption_handle"] = update.new_handle
    if msg.tool_call is not None:
        fields["tool_calls"] = tuple(
            ToolCall(id=call.id or "", name=call.name or "", args=dict(call.args or {}))
            for call in msg.tool_call.function_calls or ()
        )
    if msg.tool_call_cancellation is not None:
        fields["cancelled_tool_calls"] = tuple(msg.tool_call_cancellation.ids or ())
    fields["setup_complete"] = msg.setup_complete is not None
    fields["unhandled"] = tuple(unhandled)
    return ServerMessage(**fields)


# ---- sessions --------------------------------------------------------------------------------

# What the SDK raises for a server message it cannot parse, while the socket is still fine.
_MALFORMED: Final = (pydantic.ValidationError, TypeError, ValueError, KeyError, AttributeError)


#: How long websockets' keepalive on the SDK's connection waits for a pong before it closes
#: the connection with 1011 "keepalive ping timeout" (s); None: it never does. The SDK opens
#: its websocket with websockets' defaults (a ping every 20 s, 20 s for the pong) and takes
#: no keepalive options, but the service's pongs were measured 8-30 s late and sessions die
#: of that timeout (research notes R9: aicc2025/sip-to-ai#14; R10: python-genai#2935). The
#: relay owns liveness instead (its own pings, with a wait it bounds); the SDK's pings go on,
#: as traffic only.
SDK_PING_TIMEOUT_S: Final[float | None] = None


def relax_keepalive(ws: Any) -> None:
    """Set the keepalive pong wait of websockets connection ``ws`` to
    :data:`SDK_PING_TIMEOUT_S`. websockets (>= 13, the asyncio client) reads
    ``ping_timeout`` each round after sending its ping, so this holds from the next ping
    on; a round already waiting keeps its wait. Anything without ``ping_timeout`` (an older
    client, a test double) is left alone."""
    if ws is not None and hasattr(ws, "ping_timeout"):
        ws.ping_timeout = SDK_PING_TIMEOUT_S


class GeminiSession:
    """A :class:`~screenshare_widget.backend.LiveSession` on a ``google-genai`` session.

    Opening it switches off the pong timeout of the SDK's websocket keepalive
    (:func:`relax_keepalive`), so only the relay decides when a quiet service is gone."""

    def __init__(self, session: Any, *, model: str, secret: str) -> None:
        self._session = session
        self._model = model
        self._secret = secret
        self.capabilities = Capabilities.of(model)
        relax_keepalive(getattr(session, "_ws", None))  # the SDK keeps its websocket here

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Raise what the SDK or the socket raises as a :class:`LiveError` with a sentence."""
        try:
            yield
        except (errors.APIError, websockets.exceptions.ConnectionClosed, OSError) as exc:
            raise to_live_error(exc, model=self._model, secret=self._secret) from None

    async def _send(self, **kwargs: Any) -> None:
        with self._translated():
            await self._session.send_realtime_input(**kwargs)

    async def send_audio(self, pcm: bytes) -> None:
        """Send microphone audio (PCM16 LE mono, 16 kHz)."""
        await self._send(audio=types.Blob(data=pcm, mime_type=INPUT_MIME))

    async def send_frame(self, jpeg: bytes) -> None:
        """Send one screen frame (JPEG)."""
        await self._send(video=types.Blob(data=jpeg, mime_type=FRAME_MIME))

    async def send_text(self, text: str) -> None:
        """Send typed text as realtime input."""
        await self._send(text=text)

    async def end_audio(self) -> None:
        """Send ``audioStreamEnd``: the microphone stream ended."""
        await self._send(audio_stream_end=True)

    async def send_tool_response(
        self, call_id: str, name: str, response: dict[str, object], *, when_idle: bool = False
    ) -> None:
        """Send a ``toolResponse`` for one function call."""
        scheduling = types.FunctionResponseScheduling.WHEN_IDLE if when_idle else None
        reply = types.FunctionResponse(
            id=call_id or None, name=name, response=response, scheduling=scheduling
        )
        with self._translated():
            await self._session.send_tool_response(function_responses=[reply])

    async def update_instruction(self, text: str) -> None:
        """Send a ``contextUpdate`` with the new system instruction."""
        with self._translated():
            await self._session.send_context_update(system_instruction=text)

    async def ping(self) -> None:
        """Round trip a WebSocket ping; returns when the pong arrives (the caller bounds the
        wait). Cancelling abandons the wait only."""
        ws = getattr(self._session, "_ws", None)  # the SDK keeps its websocket here
        if ws is None:
            return
        with self._translated():
            pong = await ws.ping()
            await pong

    async def receive(self) -> AsyncIterator[ServerMessage]:
        """Every server message across turns; raises :class:`LiveError` when the connection
        ends. Malformed messages are logged and skipped. Cancelling leaves the socket open."""
        malformed = 0
        while True:
            try:
                with self._translated():
                    async for msg in self._session.receive():
                        malformed = 0
                        yield to_server_message(msg)
            except (*_MALFORMED, json.JSONDecodeError) as exc:
                malformed += 1
                logger.warning(
                    "skipped a malformed Live server message (%s: %s)",
                    type(exc).__name__,
                    scrub(str(exc), self._secret)[:200],
                )
                if malformed >= MAX_MALFORMED_IN_A_ROW:
                    raise LiveError(
                        f"The Live server sent {malformed} malformed messages in a row.",
                        code=1006,
                        fatal=False,
                    ) from None


class _SchemaChoice(logging.Filter):
    """Drops the SDK's advice to declare tools as JSON schema: declarations here use the
    ``parameters`` schema on purpose, the form every Live model takes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("use_json_schema is not True")


logging.getLogger("google_genai.types").addFilter(_SchemaChoice())


def declare(fn: Callable[..., Any], *, non_blocking: bool = False) -> dict[str, Any]:
    """The ``FunctionDeclaration`` of ``fn`` from its signature, type hints and docstring
    (the SDK's own conversion), as a plain JSON-friendly dict. Raises ``ValueError`` with
    the reason when a parameter's type cannot be declared."""
    behavior = types.Behavior.NON_BLOCKING if non_blocking else None
    try:
        declaration = types.FunctionDeclaration.from_callable_with_api_option(
            callable=fn, api_option="GEMINI_API", behavior=behavior
        )
    except (TypeError, ValueError, NameError, pydantic.ValidationError) as exc:
        # NameError: a type hint names something the function's module cannot resolve.
        name = getattr(fn, "__name__", repr(fn))
        raise ValueError(f"tool {name} cannot be declared to the model: {exc}") from None
    return declaration.model_dump(mode="json", exclude_none=True)


def connector(client: genai.Client, *, wire: Wire | None = None) -> Connector:
    """A :data:`~screenshare_widget.backend.Connector` opening sessions with ``client``.

    ``wire``, if given, sees the raw traffic of every connection it opens (numbered from 0,
    refused ones included) as :class:`WireFrame` objects: the setup and every message
    sent or received, exactly as they crossed the socket and without copying them, and
    each connection's opening and end. Without it nothing differs.
    """
    secret = _api_key(client)
    protect_logs(secret)
    numbers = itertools.count()

    def live() -> AsyncLive:
        if wire is None:
            return client.aio.live
        return _wired_live(client, wire, next(numbers), secret)

    @asynccontextmanager
    async def connect(config: SessionConfig, handle: str | None) -> AsyncIterator[LiveSession]:
        async with AsyncExitStack() as stack:
            try:
                live_config = types.LiveConnectConfig(**live_connect_config(config, handle))
                session = await stack.enter_async_context(
                    live().connect(model=config.model, config=live_config)
                )
            except Exception as exc:
                raise to_live_error(exc, model=config.model, secret=secret) from None
            stack.push_async_callback(_close_quietly, session)
            yield GeminiSession(session, model=config.model, secret=secret)

    return connect


# ---- raw traffic -----------------------------------------------------------------------------

#: What a :class:`WireFrame` reports: a connection's opening handshake began, a message was
#: sent or received, or the connection ended.
WireKind = Literal["open", "sent", "received", "closed"]


@dataclass(frozen=True)
class WireFrame:
    """One raw WebSocket message of a Live connection, or the connection's opening or end.

    ``connection`` numbers a connector's connections from 0; ``t`` is ``time.monotonic()``
    when it happened (s; a sent message's is when its send began). ``data`` is the message
    as it crossed the socket, the very object (never a copy): a ``str`` the SDK sent, the
    ``bytes`` it received; ``binary`` says whether it went in a binary frame. "open" has
    the ``url`` (any key in it scrubbed) and ``abort``, which drops that connection's TCP
    connection without a close, from any thread, as a network failure would (the relay
    sees 1006 and reconnects). "closed" has the close ``code`` received (1006 for none), its
    ``reason`` (scrubbed; "HTTP 404" for a refused upgrade) and ``by``: who closed first,
    "server", "client" (this process closed or dropped it) or "network" (neither).
    """

    connection: int
    kind: WireKind
    t: float
    data: bytes | str = b""
    binary: bool = False
    url: str = ""
    code: int = 0
    reason: str = ""
    by: Literal["server", "client", "network", ""] = ""
    abort: Callable[[], None] | None = field(default=None, compare=False, repr=False)


#: Sees every :class:`WireFrame` of a connector's connections, on the loop that runs them
#: (the relay's): it must not block; an exception it raises is logged, the connection goes on.
Wire = Callable[[WireFrame], None]


def _wired_live(client: genai.Client, wire: Wire, number: int, secret: str) -> AsyncLive:
    """``client.aio.live`` whose next connection is a :class:`_WiredConnection`: a shallow
    copy of the client's API client that passes websockets a ``create_connection`` factory,
    the way the SDK passes its own TLS settings. ``client`` itself is left alone."""
    api = client._api_client
    args = getattr(api, "_websocket_ssl_ctx", None)
    if not isinstance(args, dict):
        raise RuntimeError(
            f"google-genai {genai.__version__} does not let the raw traffic be recorded"
        )
    wired = copy.copy(api)
    wired._websocket_ssl_ctx = {
        **args,
        "create_connection": partial(_WiredConnection, wire=wire, number=number, secret=secret),
    }
    return AsyncLive(wired)


class _WiredConnection(ClientConnection):
    """A websockets client connection that reports its traffic to a :data:`Wire`."""

    def __init__(
        self, protocol: ClientProtocol, *, wire: Wire, number: int, secret: str, **kwargs: Any
    ) -> None:
        super().__init__(protocol, **kwargs)
        self._wire = wire
        self._number = number
        self._secret = secret
        self._aborted = False
        # Whether each data message not yet read came in a binary frame (recv(decode=False),
        # the SDK's call, returns bytes for both kinds).
        self._binary: deque[bool] = deque()
        self.connection_lost_waiter.add_done_callback(self._lost)

    def _report(self, kind: WireKind, t: float | None = None, **fields: Any) -> None:
        frame = WireFrame(self._number, kind, time.monotonic() if t is None else t, **fields)
        try:
            self._wire(frame)
        except Exception:
            logger.exception("the wire recorder failed to take a %s frame", kind)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        uri = getattr(self.protocol, "uri", None) or getattr(self.protocol, "wsuri", None)
        url = ""
        if uri is not None:
            query = f"?{uri.query}" if uri.query else ""
            url = f"{'wss' if uri.secure else 'ws'}://{uri.host}:{uri.port}{uri.path}{query}"
        self._report("open", url=scrub(url, self._secret), abort=self._abort_soon)
        await super().handshake(*args, **kwargs)

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._binary.append(event.opcode is Opcode.BINARY)
        super().process_event(event)

    async def recv(self, decode: bool | None = None) -> Data:  # type: ignore[override]
        data = await super().recv(decode)
        binary = self._binary.popleft() if self._binary else isinstance(data, bytes)
        self._report("received", data=data, binary=binary)
        return data

    async def send(self, message: Any, *, text: bool | None = None) -> None:
        t = time.monotonic()
        await super().send(message, text=text)
        if isinstance(message, str | bytes):
            binary = isinstance(message, bytes) if text is None else not text
            self._report("sent", t, data=message, binary=binary)

    def _abort_soon(self) -> None:
        """Drop the TCP connection without a close frame; safe from any thread."""

        def drop() -> None:
            self._aborted = True
            self.transport.abort()

        try:
            self.loop.call_soon_threadsafe(drop)
        except RuntimeError:  # the loop is closed: so is the connection
            pass

    def _lost(self, _: asyncio.Future[None]) -> None:
        p = self.protocol
        if p.close_rcvd_then_sent or (p.close_rcvd is not None and p.close_sent is None):
            by: Literal["server", "client", "network"] = "server"
        elif p.close_sent is not None or self._aborted:
            by = "client"
        else:
            by = "network"
        code = p.close_rcvd.code if p.close_rcvd is not None else 1006
        reason = p.close_rcvd.reason if p.close_rcvd is not None else ""
        response = self.response
        if response is not None and response.status_code != 101:
            reason = f"HTTP {response.status_code}"
        self._report("closed", code=code, reason=scrub(reason, self._secret), by=by)


async def _close_quietly(session: Any) -> None:
    """Close the session; a service that does not answer the close within
    :data:`CLOSE_TIMEOUT_S` (a stalled one) gets its connection aborted instead, so the
    next connection is not held up by websockets' own 10 s close timeout."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await session.close()
    except Exception as exc:  # closing a broken socket: nothing left to save
        logger.debug("closing the Live session: %s; aborting it", exc)
        transport = getattr(getattr(session, "_ws", None), "transport", None)
        if transport is not None:
            transport.abort()
