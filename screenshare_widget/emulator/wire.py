"""Reading client messages of the Gemini Live wire protocol.

Internal module. The google-genai SDK mixes casings (``realtime_input`` next to ``setup``,
``mime_type`` next to ``audioStreamEnd``) and the real service, a protobuf JSON parser,
accepts both, so everything here accepts snake_case and camelCase at every level. Bytes
arrive as URL-safe base64 from the SDK and as standard base64 from browsers; both decode.

:func:`parse_client_message` turns one frame into a :class:`ClientEvent`: a summary with
snake_case keys and base64 payloads replaced by their decoded length, plus the decoded
media and text. Problems in a well-formed JSON message are reported, never raised, so a
malformed message is skipped rather than ending the session.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from ..protocol import decode_base64
from .traffic import ReceivedAudio, ReceivedFrame, ReceivedText

#: Client message kinds, normalised to snake_case.
KNOWN_KINDS: Final[frozenset[str]] = frozenset(
    {"setup", "realtime_input", "client_content", "tool_response", "context_update"}
)
#: Fields whose values are user data (protobuf Struct): their keys are kept as sent.
OPAQUE_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "args",
        "response",
        "parameters",
        "parameters_json_schema",
        "response_json_schema",
        "response_schema",
        "labels",
    }
)
DEFAULT_AUDIO_MIME: Final = "audio/pcm;rate=16000"
DEFAULT_IMAGE_MIME: Final = "image/jpeg"

_CAMEL_RE: Final = re.compile(r"(?<!^)([A-Z])")


class InvalidJson(ValueError):
    """A client frame that is not a JSON object."""


@functools.lru_cache(maxsize=1024)  # few distinct keys; recorded summaries share them
def snake(name: str) -> str:
    """``realtimeInput`` -> ``realtime_input``; snake_case names are returned unchanged."""
    return _CAMEL_RE.sub(r"_\1", name).lower()


@functools.lru_cache(maxsize=1024)
def camel(name: str) -> str:
    """``realtime_input`` -> ``realtimeInput``; camelCase names are returned unchanged."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def pick(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` in either casing (``name`` may be given in either), else ``default``."""
    if not isinstance(obj, dict):
        return default
    for key in (name, camel(name), snake(name)):
        if key in obj:
            return obj[key]
    return default


def has(obj: Any, name: str) -> bool:
    """Whether ``obj`` has the key ``name`` in either casing."""
    return isinstance(obj, dict) and any(k in obj for k in (name, camel(name), snake(name)))


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a JPEG's SOF marker, or ``(0, 0)`` if not found."""
    if not data.startswith(b"\xff\xd8"):
        return (0, 0)
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return (0, 0)
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no SOF before it
            return (0, 0)
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        is_sof = 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
        if is_sof and i + 9 <= n:
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return (width, height)
        i += 2 + length
    return (0, 0)


def _is_blob(obj: dict[str, Any]) -> bool:
    return "data" in obj and isinstance(obj["data"], str) and has(obj, "mime_type")


def summarize(obj: Any, *, opaque: bool = False) -> Any:
    """A copy of ``obj`` with snake_case keys and base64 blob ``data`` as its decoded length.

    Keys inside :data:`OPAQUE_FIELDS` are user data and are kept as sent. A blob whose data
    is not valid base64 gets ``data: -1``.
    """
    if isinstance(obj, list):
        return [summarize(item, opaque=opaque) for item in obj]
    if not isinstance(obj, dict):
        return obj
    if opaque:
        return {key: summarize(value, opaque=True) for key, value in obj.items()}
    out: dict[str, Any] = {}
    blob = _is_blob(obj)
    for key, value in obj.items():
        name = snake(key)
        if blob and name == "data":
            try:
                out[name] = len(decode_base64(value))
            except ValueError:
                out[name] = -1
        else:
            out[name] = summarize(value, opaque=name in OPAQUE_FIELDS)
    return out


@dataclass(frozen=True)
class ClientEvent:
    """One client message, parsed.

    ``summary`` is the message body (the value under its ``kind``) as :func:`summarize`
    returns it. ``body`` is the body as received, except for ``realtime_input`` (``None``:
    its base64 would double the memory; the media are in ``audio`` and ``frames``).
    ``audio``, ``frames`` and ``texts`` hold what it carried, decoded. ``problems`` lists
    what could not be understood (already skipped).
    """

    t: float
    connection: int
    kind: str
    summary: dict[str, Any]
    body: Any
    audio: tuple[ReceivedAudio, ...] = ()
    frames: tuple[ReceivedFrame, ...] = ()
    texts: tuple[ReceivedText, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def media_bytes(self) -> int:
        """Decoded audio and image bytes this message carried."""
        return sum(len(a.data) for a in self.audio) + sum(len(f.data) for f in self.frames)

    def flag(self, name: str) -> bool:
        """Whether the summary has ``name`` (e.g. ``activity_start``) set to a non-false value."""
        value = self.summary.get(snake(name))
        return value is not None and value is not False


class _Collector:
    def __init__(self, t: float, connection: int) -> None:
        self.t = t
        self.connection = connection
        self.audio: list[ReceivedAudio] = []
        self.frames: list[ReceivedFrame] = []
        self.texts: list[ReceivedText] = []
        self.problems: list[str] = []

    def blob(self, obj: Any, where: str, default_mime: str | None) -> None:
        if not isinstance(obj, dict):
            self.problems.append(f"{where}: expected an object with data and mime_type")
            return
        mime = pick(obj, "mime_type") or default_mime
        if not isinstance(mime, str):
            self.problems.append(f"{where}: no mime_type")
            return
        try:
            data = decode_base64(obj.get("data", ""))
        except ValueError as exc:
            self.problems.append(f"{where}: {exc}")
            return
        kind = mime.split("/", 1)[0].strip().lower()
        if kind == "audio":
            self.audio.append(ReceivedAudio(self.t, data, mime, self.connection))
        elif kind == "image":
            width, height = jpeg_size(data)
            self.frames.append(ReceivedFrame(self.t, data, mime, self.connection, width, height))
        else:
            self.problems.append(f"{where}: unsupported mime type {mime!r}")

    def text(self, value: Any, where: str) -> None:
        if isinstance(value, str):
            self.texts.append(ReceivedText(self.t, value, self.connection))
        else:
            self.problems.append(f"{where}: text must be a string")


def _realtime_input(body: dict[str, Any], c: _Collector) -> None:
    for key, value in body.items():
        name = snake(key)
        if name == "audio":
            c.blob(value, "realtime_input.audio", DEFAULT_AUDIO_MIME)
        elif name == "video":
            c.blob(value, "realtime_input.video", DEFAULT_IMAGE_MIME)
        elif name == "media_chunks":
            if isinstance(value, list):
                for i, chunk in enumerate(value):
                    c.blob(chunk, f"realtime_input.media_chunks[{i}]", None)
            else:
                c.problems.append("realtime_input.media_chunks: expected a list")
        elif name == "text":
            c.text(value, "realtime_input.text")
        elif name not in ("audio_stream_end", "activity_start", "activity_end"):
            c.problems.append(f"realtime_input: unknown field {key!r}")


def _client_content(body: dict[str, Any], c: _Collector) -> None:
    turns = pick(body, "turns", [])
    if not isinstance(turns, list):
        c.problems.append("client_content.turns: expected a list")
        return
    for i, turn in enumerate(turns):
        parts = pick(turn, "parts", [])
        if not isinstance(parts, list):
            c.problems.append(f"client_content.turns[{i}].parts: expected a list")
            continue
        for j, part in enumerate(parts):
            where = f"client_content.turns[{i}].parts[{j}]"
            if has(part, "text"):
                c.text(pick(part, "text"), where)
            if has(part, "inline_data"):
                c.blob(pick(part, "inline_data"), where + ".inline_data", None)


def parse_client_message(raw: bytes | str, *, connection: int, t: float) -> ClientEvent:
    """Parse one client frame; raises :class:`InvalidJson` if it is not a JSON object.

    ``t`` is the arrival time (``time.time()``, seconds).
    """
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(str(exc)) from exc
    if not isinstance(message, dict):
        raise InvalidJson(f"expected a JSON object, got {type(message).__name__}")
    c = _Collector(t, connection)
    if not message:
        return ClientEvent(t, connection, "", {}, None, problems=("empty message",))
    key = next(iter(message))
    if len(message) > 1:
        c.problems.append(f"several top-level fields {sorted(message)}; only {key!r} read")
    kind = snake(key) if snake(key) in KNOWN_KINDS else key
    body = message[key]
    if kind in KNOWN_KINDS and not isinstance(body, dict):
        c.problems.append(f"{kind}: expected an object")
        summary: dict[str, Any] = {}
    else:
        summary = summarize(body) if isinstance(body, dict) else {"value": body}
        if kind == "realtime_input":
            _realtime_input(body, c)
        elif kind == "client_content":
            _client_content(body, c)
        elif kind not in KNOWN_KINDS:
            c.problems.append(f"unknown message kind {key!r}")
    return ClientEvent(
        t=t,
        connection=connection,
        kind=kind,
        summary=summary,
        body=None if kind == "realtime_input" else body,
        audio=tuple(c.audio),
        frames=tuple(c.frames),
        texts=tuple(c.texts),
        problems=tuple(c.problems),
    )
