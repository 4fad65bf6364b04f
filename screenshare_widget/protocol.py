"""The wire protocol between the browser (``static/widget.js``) and the kernel.

Internal module. Every message is an anywidget custom message: a small JSON object with a
``kind`` key, plus at most one binary buffer for media. Streams (microphone PCM, screen JPEG,
model PCM) always travel as buffers, never through traits.

The kinds and their fields are kept in sync with ``static/widget.js`` (``BROWSER_KINDS`` and
``KERNEL_KINDS`` there); ``tests/test_protocol_sync.py`` checks that the two sets match.

Widget managers without binary buffers may put the payload in ``data`` as base64 (standard or
URL-safe alphabet) instead; :func:`parse_browser_message` accepts both.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict

# ---- media formats ---------------------------------------------------------------------------

#: Microphone audio sent to the model: 16-bit little-endian mono PCM at this rate (Hz).
INPUT_RATE_HZ: Final = 16_000
#: Model speech sent to the browser: 16-bit little-endian mono PCM at this rate (Hz).
OUTPUT_RATE_HZ: Final = 24_000
#: Bytes per PCM16 sample.
SAMPLE_BYTES: Final = 2
INPUT_MIME: Final = f"audio/pcm;rate={INPUT_RATE_HZ}"
FRAME_MIME: Final = "image/jpeg"

# ---- limits on what the browser may send (bytes) ----------------------------------------------

#: Largest microphone chunk accepted: 1 s of 16 kHz PCM16. The browser sends 100 ms chunks.
MAX_AUDIO_BYTES: Final = INPUT_RATE_HZ * SAMPLE_BYTES
#: Largest screen frame accepted. A 1024 px JPEG at quality 0.7 is typically 20 to 150 KB.
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
#: Largest text field accepted (characters).
MAX_TEXT_CHARS: Final = 10_000

# ---- liveness --------------------------------------------------------------------------------

#: How often the page says it is there (``beat``), in seconds; kept in sync with
#: ``BEAT_MS`` in static/widget.js.
BEAT_INTERVAL_S: Final = 2.0

# ---- message kinds ---------------------------------------------------------------------------
# Kept in sync with static/widget.js.

BrowserKind = Literal[
    "hello",
    "start",
    "audio",
    "frame",
    "stop",
    "client_error",
    "playback",
    "text",
    "confirm",
    "frame_stats",
    "beat",
]
KernelKind = Literal[
    "audio",
    "interrupted",
    "turn_complete",
    "turn",
    "snapshot",
    "stop",
    "ack",
    "notice",
    "tool",
    "frame_sent",
    "capture",
]

#: Kinds the browser sends to the kernel.
BROWSER_KINDS: Final[frozenset[str]] = frozenset(
    {
        "hello", "start", "audio", "frame", "stop", "client_error", "playback", "text",
        "confirm", "frame_stats", "beat",
    }
)  # fmt: skip
#: Kinds the kernel sends to the browser.
KERNEL_KINDS: Final[frozenset[str]] = frozenset(
    {
        "audio",
        "interrupted",
        "turn_complete",
        "turn",
        "snapshot",
        "stop",
        "ack",
        "notice",
        "tool",
        "frame_sent",
        "capture",
    }  # fmt: skip
)


# ---- browser -> kernel -----------------------------------------------------------------------


class HelloMsg(TypedDict):
    """A model controller started in the page (once per page load); asks for a snapshot."""

    kind: Literal["hello"]


class StartMsg(TypedDict, total=False):
    """The user clicked Share and capture is running: open the Live session.

    ``capture`` identifies this capture; its audio and frames carry the same id.
    """

    kind: Literal["start"]
    capture: str


class AudioInMsg(TypedDict, total=False):
    """One microphone chunk: buffer = PCM16 LE mono at 16 kHz (or ``data`` in base64).

    ``seq`` counts chunks from 0 per capture; ``t`` is the capture time in ms since the epoch.
    """

    kind: Literal["audio"]
    capture: str
    seq: int
    t: float
    data: str


class FrameMsg(TypedDict, total=False):
    """One screen frame: buffer = JPEG (or ``data`` in base64); size in pixels."""

    kind: Literal["frame"]
    capture: str
    seq: int
    t: float
    width: int
    height: int
    data: str
    reason: str


class FrameStatsMsg(TypedDict):
    """The page's frame policy counters (every 2 s while sharing): screen checks, frames sent
    and checks skipped, and the sends by reason."""

    kind: Literal["frame_stats"]
    checked: int
    sent: int
    skipped: int
    first: int
    change: int
    speech: int
    heartbeat: int


class StopMsg(TypedDict, total=False):
    """The user clicked Stop, every shared track ended, or no view of the widget is left in
    the page. ``capture`` is the capture it ends ("" when the page captured nothing): the
    kernel ignores a stop for a capture that is no longer the current one."""

    kind: Literal["stop"]
    reason: str
    capture: str


class BeatMsg(TypedDict):
    """The page is there (every :data:`BEAT_INTERVAL_S` while a session runs or the page
    shares, whether or not it shows a view). ``page`` names the page's controller;
    ``capture`` is its running capture ("" when none); ``views`` counts its views."""

    kind: Literal["beat"]
    page: str
    capture: str
    views: int


class ClientErrorMsg(TypedDict):
    """Something failed in the page (permission denied, no microphone, ...)."""

    kind: Literal["client_error"]
    message: str


class TextMsg(TypedDict):
    """The user typed ``text`` in the widget's text box: send it to the model."""

    kind: Literal["text"]
    text: str


class ConfirmMsg(TypedDict):
    """The user clicked Allow (``allow`` true) or Deny on tool call ``id``."""

    kind: Literal["confirm"]
    id: str
    allow: bool


class PlaybackMsg(TypedDict):
    """Periodic player statistics (every second while playing)."""

    kind: Literal["playback"]
    played_ms: float
    queued_ms: float
    underruns: int
    dropped_chunks: int


# ---- kernel -> browser -----------------------------------------------------------------------


class AudioOutMsg(TypedDict):
    """Model speech: buffer = PCM16 LE mono at 24 kHz. ``gen`` is the playback generation."""

    kind: Literal["audio"]
    gen: int


class InterruptedMsg(TypedDict):
    """The user barged in: flush the player now and drop audio older than ``gen``."""

    kind: Literal["interrupted"]
    gen: int


class TurnCompleteMsg(TypedDict):
    """The model's audio for the turn is complete (sent at generationComplete and again at
    turnComplete): an empty queue after this is not an underrun."""

    kind: Literal["turn_complete"]
    gen: int


class TurnRecord(TypedDict):
    """A transcript turn as the browser shows it (times in seconds since the epoch)."""

    role: str
    text: str
    started_at: float
    ended_at: float | None
    interrupted: bool


class TurnMsg(TypedDict):
    """Insert or replace transcript turn ``index``."""

    kind: Literal["turn"]
    index: int
    turn: TurnRecord


class SnapshotMsg(TypedDict):
    """The whole transcript, in answer to ``hello``."""

    kind: Literal["snapshot"]
    turns: list[TurnRecord]
    gen: int


class KernelStopMsg(TypedDict):
    """End capture in the page (``assistant.stop()`` or a fatal error)."""

    kind: Literal["stop"]
    reason: str


class AckMsg(TypedDict):
    """Uplink progress, every 500 ms while live: the last audio and frame ``seq`` relayed.

    The page compares it with what it sent to tell that a busy kernel paused the relay.
    """

    kind: Literal["ack"]
    audio_seq: int
    frame_seq: int


class FrameSentMsg(TypedDict):
    """Frame ``seq`` of the current capture went to the model (for the filmstrip)."""

    kind: Literal["frame_sent"]
    seq: int


class CaptureMsg(TypedDict):
    """Capture ``capture`` now feeds the session: a page still capturing under another id
    stops (sharing moved to another view of the same assistant)."""

    kind: Literal["capture"]
    capture: str


class NoticeMsg(TypedDict):
    """A transient, human-readable note shown in the cell (for instance a rejected message)."""

    kind: Literal["notice"]
    text: str


# ---- parsing ---------------------------------------------------------------------------------


class ProtocolError(ValueError):
    """A browser message that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class AudioChunk:
    """A microphone chunk from the browser: PCM16 LE mono at 16 kHz."""

    pcm: bytes
    seq: int
    t_ms: float
    capture: str = ""


@dataclass(frozen=True)
class Frame:
    """A screen frame from the browser: a JPEG of ``width`` x ``height`` pixels."""

    jpeg: bytes
    seq: int
    t_ms: float
    width: int
    height: int
    capture: str = ""
    #: Why the page's frame policy sent it: "first", "change", "speech" or "heartbeat".
    reason: str = ""


#: What a ``frame_stats`` message counts (the page's frame policy, since the capture began).
FRAME_STATS_FIELDS: Final = ("checked", "sent", "skipped", "first", "change", "speech",
                             "heartbeat")  # fmt: skip


@dataclass(frozen=True)
class Control:
    """Any other browser message, validated: ``kind`` plus its plain JSON fields."""

    kind: str
    fields: dict[str, Any]


BrowserMessage = AudioChunk | Frame | Control

_JPEG_SOI: Final = b"\xff\xd8\xff"


def _payload(content: dict[str, Any], buffers: list[Any] | None, limit: int) -> bytes:
    if buffers:
        if len(buffers) != 1:
            raise ProtocolError(f"expected one buffer, got {len(buffers)}")
        raw = buffers[0]
        try:
            # memoryview takes only bytes-like objects (bytes(n) would make n zero bytes).
            view = memoryview(raw)
        except TypeError as exc:
            raise ProtocolError(f"buffer of type {type(raw).__name__} is not bytes") from exc
        if view.nbytes > limit:
            raise ProtocolError(f"payload of {view.nbytes} bytes is over the {limit} byte limit")
        data = view.tobytes()
    elif "data" in content:
        text = content["data"]
        if not isinstance(text, str):
            raise ProtocolError("'data' must be a base64 string")
        if len(text) > limit * 4 // 3 + 4:
            raise ProtocolError(f"payload over the {limit} byte limit")
        try:
            # Accept the standard and the URL-safe alphabets, with or without padding.
            data = base64.b64decode(
                text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4),
                validate=True,
            )
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("'data' is not valid base64") from exc
    else:
        raise ProtocolError("no payload: expected a binary buffer or base64 'data'")
    if len(data) > limit:
        raise ProtocolError(f"payload of {len(data)} bytes is over the {limit} byte limit")
    return data


def _int_field(content: dict[str, Any], name: str, default: int | None = None) -> int:
    value = content.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"'{name}' must be an integer")
    return value


def _time_field(content: dict[str, Any]) -> float:
    value = content.get("t", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError("'t' must be a finite number of milliseconds")
    return float(value)


def _text_field(content: dict[str, Any], name: str) -> str:
    value = content.get(name, "")
    if not isinstance(value, str):
        raise ProtocolError(f"'{name}' must be a string")
    return value[:MAX_TEXT_CHARS]


def parse_browser_message(content: Any, buffers: list[Any] | None = None) -> BrowserMessage:
    """Validate one custom message from the page.

    Raises :class:`ProtocolError` with a one-line reason for anything malformed: an unknown
    kind, fields of the wrong type, an oversize payload, invalid base64, a frame that is not a
    JPEG, or audio with an odd byte count.
    """
    if not isinstance(content, dict):
        raise ProtocolError(f"message must be an object, got {type(content).__name__}")
    kind = content.get("kind")
    if not isinstance(kind, str) or kind not in BROWSER_KINDS:
        raise ProtocolError(f"unknown message kind {kind!r}")
    if kind == "audio":
        pcm = _payload(content, buffers, MAX_AUDIO_BYTES)
        if len(pcm) % SAMPLE_BYTES:
            raise ProtocolError(f"audio of {len(pcm)} bytes is not whole PCM16 samples")
        return AudioChunk(
            pcm=pcm,
            seq=_int_field(content, "seq", 0),
            t_ms=_time_field(content),
            capture=_text_field(content, "capture"),
        )
    if kind == "frame":
        jpeg = _payload(content, buffers, MAX_FRAME_BYTES)
        if not jpeg.startswith(_JPEG_SOI):
            raise ProtocolError("frame is not a JPEG image")
        width = _int_field(content, "width", 0)
        height = _int_field(content, "height", 0)
        if width < 0 or height < 0:
            raise ProtocolError("frame size must not be negative")
        return Frame(
            jpeg=jpeg,
            seq=_int_field(content, "seq", 0),
            t_ms=_time_field(content),
            width=width,
            height=height,
            capture=_text_field(content, "capture"),
            reason=_text_field(content, "reason")[:20],
        )
    fields: dict[str, Any] = {}
    if kind == "start":
        fields["capture"] = _text_field(content, "capture")
    elif kind == "stop":
        fields["reason"] = _text_field(content, "reason")
        fields["capture"] = _text_field(content, "capture")
    elif kind == "beat":
        fields["page"] = _text_field(content, "page")[:64]
        fields["capture"] = _text_field(content, "capture")
        fields["views"] = _int_field(content, "views", 0)
    elif kind == "client_error":
        fields["message"] = _text_field(content, "message")
    elif kind == "text":
        text = content.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError("'text' must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise ProtocolError(f"text of {len(text)} characters is over {MAX_TEXT_CHARS}")
        fields["text"] = text
    elif kind == "frame_stats":
        for name in FRAME_STATS_FIELDS:
            fields[name] = _int_field(content, name, 0)
    elif kind == "confirm":
        allow = content.get("allow")
        if not isinstance(allow, bool):
            raise ProtocolError("'allow' must be true or false")
        fields["id"] = _text_field(content, "id")
        fields["allow"] = allow
    elif kind == "playback":
        for name in ("played_ms", "queued_ms"):
            value = content.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ProtocolError(f"'{name}' must be a number")
            fields[name] = float(value)
        for name in ("underruns", "dropped_chunks"):
            fields[name] = _int_field(content, name, 0)
    return Control(kind=kind, fields=fields)
