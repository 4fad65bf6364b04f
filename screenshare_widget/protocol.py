"""The wire protocol between the browser (``js/``, bundled into ``static/widget.js``) and the
kernel.

Internal module. Every message is an anywidget custom message: a small JSON object with a
``kind`` key, plus at most one binary buffer for media. Streams (microphone PCM, screen JPEG,
model PCM) always travel as buffers, never through traits.

This module is the single source of the wire in Python: one ``Literal`` of kinds per
direction (the sets :data:`BROWSER_KINDS` and :data:`KERNEL_KINDS` are derived from them), a
frozen dataclass per kind the browser sends (what :func:`parse_browser_message` returns), a
typed builder per message the kernel sends, and the limits the page shares (:data:`LIMITS`).
The kinds, fields and limits are kept in sync with ``js/protocol.js`` (``BROWSER_KINDS``,
``KERNEL_KINDS`` and ``LIMITS`` there); ``tests/test_protocol_sync.py`` checks that they match.

Widget managers without binary buffers may put the payload in ``data`` as base64 (standard or
URL-safe alphabet) instead; :func:`parse_browser_message` accepts both.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, TypedDict, cast, get_args

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
#: Longest system instruction the page's instruction box may apply (characters).
MAX_INSTRUCTION_CHARS: Final = 200_000

# ---- liveness --------------------------------------------------------------------------------

#: How often the page says it is there (``beat``), in seconds; kept in sync with
#: ``BEAT_MS`` in js/protocol.js.
BEAT_INTERVAL_S: Final = 2.0

# ---- settings the page shares ----------------------------------------------------------------

#: Shortest and longest microphone chunk the page may be set to record (ms); kept in sync with
#: js/protocol.js.
MIN_CHUNK_MS: Final = 20
MAX_CHUNK_MS: Final = 250
#: Most screen frames per second the model may be sent; kept in sync with js/protocol.js.
MAX_FPS: Final = 1.0

#: The limits both sides enforce, by the names ``tests/test_protocol_sync.py`` looks for in
#: js/protocol.js: text and instruction length (characters), microphone chunk range (ms),
#: frame rate (1/s).
LIMITS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "max_text_chars": MAX_TEXT_CHARS,
        "max_instruction_chars": MAX_INSTRUCTION_CHARS,
        "min_chunk_ms": MIN_CHUNK_MS,
        "max_chunk_ms": MAX_CHUNK_MS,
        "max_fps": MAX_FPS,
    }
)

# ---- message kinds ---------------------------------------------------------------------------
# Kept in sync with js/protocol.js. Each direction is declared once, as a Literal; the sets
# are derived from it.

#: A kind the browser sends to the kernel.
BrowserKind = Literal[
    "hello", "start", "audio", "frame", "stop", "client_error", "playback", "text", "confirm",
    "frame_stats", "beat", "set", "device",
]  # fmt: skip
#: A kind the kernel sends to the browser.
KernelKind = Literal[
    "audio", "interrupted", "turn_complete", "turn", "snapshot", "stop", "ack", "notice",
    "tool", "frame_sent", "capture",
]  # fmt: skip

#: Kinds the browser sends to the kernel.
BROWSER_KINDS: Final[frozenset[str]] = frozenset(get_args(BrowserKind))
#: Kinds the kernel sends to the browser.
KERNEL_KINDS: Final[frozenset[str]] = frozenset(get_args(KernelKind))


#: The traits the page may change, each by a ``set`` message, with the type of their value:
#: the instruction box's Apply, the pause button, the volume slider and the mute button
#: (``float`` takes any finite JSON number; the widget checks the range). Kept in sync with
#: js/protocol.js. The page writes no trait through the widget's state sync (see ``page.py``).
PAGE_TRAITS: Final[Mapping[str, type]] = MappingProxyType(
    {"system_instruction": str, "video_paused": bool, "volume": float, "muted": bool}
)
#: How a ``set`` rejection names each type of :data:`PAGE_TRAITS`.
_PAGE_TYPE_WORDS: Final[Mapping[type, str]] = MappingProxyType(
    {str: "a string", bool: "true or false", float: "a finite number"}
)

# ---- browser -> kernel: one frozen dataclass per kind ------------------------------------------


class ProtocolError(ValueError):
    """A browser message that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class AudioChunk:
    """``audio``: a microphone chunk, PCM16 LE mono at 16 kHz (a buffer, or ``data`` in
    base64). ``seq`` counts chunks from 0 per capture; ``t_ms`` is when the page captured the
    chunk's end (ms since the epoch, 0 if not said): the relay dates speech by it."""

    pcm: bytes
    seq: int
    t_ms: float
    capture: str = ""


@dataclass(frozen=True)
class Frame:
    """``frame``: a screen frame, a JPEG of ``width`` x ``height`` pixels (a buffer, or
    ``data`` in base64). The page's capture time (``t``) is not kept: the relay dates a frame
    when it sends it, which is what the model sees."""

    jpeg: bytes
    seq: int
    width: int
    height: int
    capture: str = ""
    #: Why the page's frame policy sent it: "first", "change", "speech" or "heartbeat".
    reason: str = ""


@dataclass(frozen=True)
class Hello:
    """``hello``: a model controller started in the page (once per page load); asks for a
    snapshot."""


@dataclass(frozen=True)
class Start:
    """``start``: the user clicked Share and capture runs: open the Live session.
    ``capture`` identifies this capture; its audio and frames carry the same id."""

    capture: str = ""


@dataclass(frozen=True)
class Stop:
    """``stop``: the user clicked Stop, every shared track ended, or no view of the widget
    is left in the page. ``capture`` is the capture it ends ("" when the page captured
    nothing): the kernel ignores a stop for a capture that is no longer the current one."""

    reason: str = ""
    capture: str = ""


@dataclass(frozen=True)
class Beat:
    """``beat``: the page is there (every :data:`BEAT_INTERVAL_S` while a session runs or
    the page shares). ``page`` names the page's controller, ``capture`` is its running
    capture ("" when none), ``views`` counts its views."""

    page: str = ""
    capture: str = ""
    views: int = 0


@dataclass(frozen=True)
class ClientError:
    """``client_error``: something failed in the page (permission denied, no microphone)."""

    message: str = ""


#: What a ``device`` message says changed.
DeviceChange = Literal["screen_ended", "screen_shared", "mic_ended", "mic_changed"]
DEVICE_CHANGES: Final[frozenset[str]] = frozenset(get_args(DeviceChange))
#: The longest device label kept (characters).
MAX_DEVICE_LABEL: Final = 200


@dataclass(frozen=True)
class Device:
    """``device``: while live, a device came or went in the page: the shared screen ended
    (the browser's own Stop sharing) or was shared again, the microphone ended (unplugged) or
    another was picked (``label``: its name, "" if the browser gives none). The capture, and
    the session, go on."""

    what: DeviceChange
    label: str = ""
    capture: str = ""


@dataclass(frozen=True)
class Text:
    """``text``: the user typed ``text`` (not blank) in the widget: send it to the model."""

    text: str


@dataclass(frozen=True)
class Confirm:
    """``confirm``: the user clicked Allow (``allow`` true) or Deny on tool call ``id``."""

    id: str
    allow: bool


@dataclass(frozen=True)
class Playback:
    """``playback``: the player's statistics (every second while playing); times in ms."""

    played_ms: float = 0.0
    queued_ms: float = 0.0
    underruns: int = 0
    dropped_chunks: int = 0


@dataclass(frozen=True)
class FrameStats:
    """``frame_stats``: the page's frame policy counters since the capture began (every 2 s
    while sharing): screen checks, frames sent, checks skipped, and the sends by reason."""

    checked: int = 0
    sent: int = 0
    skipped: int = 0
    first: int = 0
    change: int = 0
    speech: int = 0
    heartbeat: int = 0


@dataclass(frozen=True)
class SetTrait:
    """``set``: the user changed trait ``name``, one of :data:`PAGE_TRAITS`, to ``value`` in
    the page. The kernel writes it as it writes its own traits, and the page's model follows
    the kernel's value."""

    name: str
    value: str | bool | float


#: What a ``frame_stats`` message counts, in its fields' order.
FRAME_STATS_FIELDS: Final = ("checked", "sent", "skipped", "first", "change", "speech",
                             "heartbeat")  # fmt: skip

#: A parsed browser message; media are :class:`AudioChunk` and :class:`Frame`.
BrowserMessage = (
    AudioChunk | Frame | Hello | Start | Stop | Beat | ClientError | Text | Confirm | Playback
    | FrameStats | SetTrait | Device
)  # fmt: skip
#: A parsed browser message that is not media.
Control = (
    Hello | Start | Stop | Beat | ClientError | Text | Confirm | Playback | FrameStats | SetTrait
    | Device
)  # fmt: skip

_JPEG_SOI: Final = b"\xff\xd8\xff"


# ---- parsing ---------------------------------------------------------------------------------


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
    match kind:
        case "audio":
            return _audio(content, buffers)
        case "frame":
            return _frame(content, buffers)
        case _:
            return _control(content)


def _audio(content: dict[str, Any], buffers: list[Any] | None) -> AudioChunk:
    pcm = _payload(content, buffers, MAX_AUDIO_BYTES)
    if len(pcm) % SAMPLE_BYTES:
        raise ProtocolError(f"audio of {len(pcm)} bytes is not whole PCM16 samples")
    return AudioChunk(
        pcm=pcm,
        seq=_int_field(content, "seq"),
        t_ms=_time_field(content),
        capture=_text_field(content, "capture"),
    )


def _frame(content: dict[str, Any], buffers: list[Any] | None) -> Frame:
    jpeg = _payload(content, buffers, MAX_FRAME_BYTES)
    if not jpeg.startswith(_JPEG_SOI):
        raise ProtocolError("frame is not a JPEG image")
    width, height = _int_field(content, "width"), _int_field(content, "height")
    if width < 0 or height < 0:
        raise ProtocolError("frame size must not be negative")
    return Frame(
        jpeg=jpeg,
        seq=_int_field(content, "seq"),
        width=width,
        height=height,
        capture=_text_field(content, "capture"),
        reason=_text_field(content, "reason")[:20],
    )


def _control(content: dict[str, Any]) -> Control:
    """A message that is not media (any buffers are ignored)."""
    kind: BrowserKind = content["kind"]
    match kind:
        case "hello":
            return Hello()
        case "start":
            return Start(capture=_text_field(content, "capture"))
        case "stop":
            return Stop(_text_field(content, "reason"), _text_field(content, "capture"))
        case "beat":
            page = _text_field(content, "page")[:64]
            return Beat(page, _text_field(content, "capture"), _int_field(content, "views"))
        case "client_error":
            return ClientError(message=_text_field(content, "message"))
        case "text":
            return _text(content)
        case "confirm":
            return _confirm(content)
        case "playback":
            return _playback(content)
        case "frame_stats":
            return FrameStats(*(_int_field(content, name) for name in FRAME_STATS_FIELDS))
        case "set":
            return parse_page_trait(content.get("name"), content.get("value"))
        case "device":
            return _device(content)
        case "audio" | "frame":
            raise ProtocolError(f"{kind} is media, not a control message")


def _device(content: dict[str, Any]) -> Device:
    what = content.get("what")
    if what not in DEVICE_CHANGES:
        raise ProtocolError(f"device 'what' must be one of {sorted(DEVICE_CHANGES)}, not {what!r}")
    label = _text_field(content, "label")[:MAX_DEVICE_LABEL]
    return Device(cast(DeviceChange, what), label, _text_field(content, "capture"))


def _text(content: dict[str, Any]) -> Text:
    text = content.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("'text' must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(f"text of {len(text)} characters is over {MAX_TEXT_CHARS}")
    return Text(text)


def _confirm(content: dict[str, Any]) -> Confirm:
    allow = content.get("allow")
    if not isinstance(allow, bool):
        raise ProtocolError("'allow' must be true or false")
    return Confirm(id=_text_field(content, "id"), allow=allow)


def parse_page_trait(name: Any, value: Any) -> SetTrait:
    """Check that the page may set trait ``name`` (one of :data:`PAGE_TRAITS`) to ``value``,
    of that trait's type (a number for a ``float`` trait, not a bool, and finite; it comes as
    a ``float``); an instruction is at most :data:`MAX_INSTRUCTION_CHARS` characters."""
    if not isinstance(name, str) or name not in PAGE_TRAITS:
        raise ProtocolError(f"the page may not set the trait {name!r}")
    kind = PAGE_TRAITS[name]
    if kind is float and type(value) in (int, float) and math.isfinite(value):
        return SetTrait(name, float(value))
    if type(value) is not kind or not isinstance(value, str | bool):
        raise ProtocolError(f"'{name}' must be {_PAGE_TYPE_WORDS[kind]}")
    if isinstance(value, str) and len(value) > MAX_INSTRUCTION_CHARS:
        raise ProtocolError(
            f"'{name}' of {len(value):,} characters is over {MAX_INSTRUCTION_CHARS:,}"
        )
    return SetTrait(name, value)


def _playback(content: dict[str, Any]) -> Playback:
    played_ms, queued_ms = (_number_field(content, name) for name in ("played_ms", "queued_ms"))
    return Playback(
        played_ms,
        queued_ms,
        underruns=_int_field(content, "underruns"),
        dropped_chunks=_int_field(content, "dropped_chunks"),
    )


def _payload(content: dict[str, Any], buffers: list[Any] | None, limit: int) -> bytes:
    """The message's one binary buffer, or its ``data`` in base64, at most ``limit`` bytes."""
    if buffers:
        if len(buffers) != 1:
            raise ProtocolError(f"expected one buffer, got {len(buffers)}")
        data = _buffer(buffers[0], limit)
    elif "data" in content:
        data = _base64(content["data"], limit)
    else:
        raise ProtocolError("no payload: expected a binary buffer or base64 'data'")
    if len(data) > limit:
        raise ProtocolError(f"payload of {len(data)} bytes is over the {limit} byte limit")
    return data


def _buffer(raw: Any, limit: int) -> bytes:
    try:
        # memoryview takes only bytes-like objects (bytes(n) would make n zero bytes).
        view = memoryview(raw)
    except TypeError as exc:
        raise ProtocolError(f"buffer of type {type(raw).__name__} is not bytes") from exc
    if view.nbytes > limit:
        raise ProtocolError(f"payload of {view.nbytes} bytes is over the {limit} byte limit")
    return view.tobytes()


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (what browsers and the Live service send);
    raises ``ValueError``. The emulator decodes the service's wire with it too."""
    if not isinstance(text, str):
        raise ValueError(f"base64 payload must be a string, got {type(text).__name__}")
    text = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64: {exc}") from exc


def _base64(text: Any, limit: int) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError("'data' must be a base64 string")
    if len(text) > limit * 4 // 3 + 4:
        raise ProtocolError(f"payload over the {limit} byte limit")
    try:
        return decode_base64(text)
    except ValueError as exc:
        raise ProtocolError("'data' is not valid base64") from exc


def _int_field(content: dict[str, Any], name: str) -> int:
    value = content.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"'{name}' must be an integer")
    return value


def _number_field(content: dict[str, Any], name: str) -> float:
    value = content.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"'{name}' must be a number")
    return float(value)


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


# ---- kernel -> browser: one TypedDict and one builder per message ------------------------------
# A turn and a tool call travel as ``Turn.to_record()`` and ``ToolActivity.to_record()`` make
# them: those methods are their one declaration.

Record = dict[str, Any]


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


class TurnMsg(TypedDict):
    """Insert or replace transcript turn ``index``."""

    kind: Literal["turn"]
    index: int
    turn: Record


class SnapshotMsg(TypedDict):
    """In answer to ``hello``: the whole transcript, the tool calls, the playback generation
    and how the last session ended ("" while one runs or none ran)."""

    kind: Literal["snapshot"]
    turns: list[Record]
    tools: list[Record]
    gen: int
    ended: str


class KernelStopMsg(TypedDict):
    """End capture in the page (``assistant.stop()``, a budget, a lost page or an error);
    ``reason`` is shown ("" for none)."""

    kind: Literal["stop"]
    reason: str


class AckMsg(TypedDict):
    """Uplink progress, every tick while live: the last audio and frame ``seq`` relayed.
    The page compares it with what it sent to tell that a busy kernel paused the relay."""

    kind: Literal["ack"]
    audio_seq: int
    frame_seq: int


class NoticeMsg(TypedDict):
    """A transient, human-readable note shown in the cell (a handover, a budget step)."""

    kind: Literal["notice"]
    text: str


class ToolMsg(TypedDict):
    """Insert or replace tool call ``index`` (its card in the cell, Allow/Deny if asked)."""

    kind: Literal["tool"]
    index: int
    tool: Record


class FrameSentMsg(TypedDict):
    """Frame ``seq`` of the current capture went to the model (for the filmstrip)."""

    kind: Literal["frame_sent"]
    seq: int


class CaptureMsg(TypedDict):
    """Capture ``capture`` now feeds the session: a page still capturing under another id
    stops (sharing moved to another view of the same assistant)."""

    kind: Literal["capture"]
    capture: str


#: A message the kernel sends to the browser.
KernelMessage = (
    AudioOutMsg | InterruptedMsg | TurnCompleteMsg | TurnMsg | SnapshotMsg | KernelStopMsg
    | AckMsg | NoticeMsg | ToolMsg | FrameSentMsg | CaptureMsg
)  # fmt: skip


def audio_out(gen: int) -> AudioOutMsg:
    """Model speech of playback generation ``gen`` (the PCM goes as the buffer)."""
    return {"kind": "audio", "gen": gen}


def interrupted(gen: int) -> InterruptedMsg:
    """The user barged in: playback generation ``gen`` begins."""
    return {"kind": "interrupted", "gen": gen}


def turn_complete(gen: int) -> TurnCompleteMsg:
    """The model's audio of generation ``gen`` is complete."""
    return {"kind": "turn_complete", "gen": gen}


def turn(index: int, record: Record) -> TurnMsg:
    """Transcript turn ``index`` as ``Turn.to_record()`` gives it."""
    return {"kind": "turn", "index": index, "turn": record}


def snapshot(turns: list[Record], tools: list[Record], gen: int, ended: str) -> SnapshotMsg:
    """The whole conversation for a page that just opened."""
    return {"kind": "snapshot", "turns": turns, "tools": tools, "gen": gen, "ended": ended}


def stop(reason: str) -> KernelStopMsg:
    """End capture in the page, saying ``reason`` ("" for none)."""
    return {"kind": "stop", "reason": reason}


def ack(audio_seq: int, frame_seq: int) -> AckMsg:
    """The last audio and frame ``seq`` relayed (-1: none yet this capture)."""
    return {"kind": "ack", "audio_seq": audio_seq, "frame_seq": frame_seq}


def notice(text: str) -> NoticeMsg:
    """A note to show in the cell."""
    return {"kind": "notice", "text": text}


def tool(index: int, record: Record) -> ToolMsg:
    """Tool call ``index`` as ``ToolActivity.to_record()`` gives it."""
    return {"kind": "tool", "index": index, "tool": record}


def frame_sent(seq: int) -> FrameSentMsg:
    """Frame ``seq`` went to the model."""
    return {"kind": "frame_sent", "seq": seq}


def capture(capture: str) -> CaptureMsg:
    """Capture ``capture`` feeds the session now."""
    return {"kind": "capture", "capture": capture}


#: The builder of each kind the kernel sends (``tests/test_protocol.py`` checks that every
#: kind has one and that each builds its kind).
KERNEL_BUILDERS: Final[Mapping[KernelKind, Callable[..., KernelMessage]]] = MappingProxyType(
    {
        "audio": audio_out,
        "interrupted": interrupted,
        "turn_complete": turn_complete,
        "turn": turn,
        "snapshot": snapshot,
        "stop": stop,
        "ack": ack,
        "notice": notice,
        "tool": tool,
        "frame_sent": frame_sent,
        "capture": capture,
    }
)
