"""Captured Live sessions: their folder format, and replaying one as a scripted session.

Internal module. A **capture** is a folder that ``./dev smoke`` writes (and a user can attach
to a bug report) with the raw traffic of every connection of one session:

- ``client.jsonl``: what the client did, one JSON object a line: a connection's opening,
  ``{"connection": 0, "t": 0.0, "open": "wss://..."}``, and each message it sent,
  ``{"connection": 0, "t": 0.01, "frame": "text", "message": {"setup": {...}}}``;
- ``server.jsonl``: each message the client received, in the same form, and each
  connection's end, ``{"connection": 0, "t": 9.5, "close": {"code": 1006, "reason": "",
  "by": "client"}}`` (``by``: who closed first, "server", "client" or "network");
- ``results.json`` and ``README.txt``, which the replay does not read.

``t`` is seconds since the capture began, on one clock for both files. A frame that was
not JSON is kept as ``"raw"`` (text) or ``"raw_base64"`` (binary) instead of ``"message"``.
:func:`message_line` makes the lines and :func:`write_lines` / :func:`read_lines` store them,
so the format lives here only.

**Replay.** :func:`replay_emulator` (or ``LiveEmulator(script=replay_script(folder),
auto_setup_complete=False, session_resumption_handles=False)``) serves the capture's
connections, in the order clients connect, with the recorded server messages in order.
Each message waits for what the client had sent on that connection before it in the
capture (the same number of typed texts, client contents, tool responses, context updates,
stream ends, activity signals and frames, and as many seconds of voiced audio, less
:data:`VOICED_SLACK_S`), then for the recorded gaps: after the previous message and after
the client message that completed its wait, divided by ``speed``. A connection the server
closed is closed with the recorded code and reason (1006: dropped). Recorded resumption
handles resume the replay's session, so a client that reconnects with one is resumed.

Limits: the messages are the recorded ones whatever the client sends now (the waits only
pace them); a wait that is not met within ``gate_timeout_s`` is given up (the message goes,
and :attr:`Replay.problems` says so); the emulator still checks each setup (a model it does
not know is refused) and answers pings at once, as recorded pong times are not captured;
JSON messages are sent re-encoded (compact), text frames and non-JSON ones exactly as
recorded, but handles in text frames do not resume; connections beyond the capture's are
closed with 1011. A connection the emulator refuses before the script runs (an unknown
resumption handle, say one issued before the capture began) is not counted, so the ones
after it are served the wrong recorded connection.

This module never imports ``google.genai``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from .connection import EmulatorConnection
from .realism import Realism
from .server import LiveEmulator
from .vad import DEFAULT_THRESHOLD_DBFS, level_dbfs
from .wire import ClientEvent, InvalidJson, parse_client_message

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: The capture's files.
CLIENT_FILE: Final = "client.jsonl"
SERVER_FILE: Final = "server.jsonl"
#: Longest a recorded message waits for the client to catch up before it goes anyway (s).
GATE_TIMEOUT_S: Final = 30.0
#: Voiced client audio a message may go ahead of (s): chunking may differ a little.
VOICED_SLACK_S: Final = 0.25
#: A client audio chunk louder than this counts as voiced (dBFS), the responder's threshold.
VOICED_DBFS: Final = DEFAULT_THRESHOLD_DBFS
#: Close code and reason for a connection the capture does not have.
CLOSE_NOT_RECORDED: Final = 1011
REASON_NOT_RECORDED: Final = "The replay has no recorded connection {n}."

Closer = Literal["server", "client", "network"]
_CLOSERS: Final[tuple[Closer, ...]] = ("server", "client", "network")


# ---- lines -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Close:
    """How a connection ended: the close ``code`` the client received (1006 for none), its
    ``reason``, and who closed first."""

    code: int
    reason: str
    by: Closer


@dataclass(frozen=True)
class Line:
    """One line of ``client.jsonl`` or ``server.jsonl``.

    Exactly one of ``message`` (a JSON message), ``raw`` (a frame that was not JSON: text as
    ``str``, binary as ``bytes``), ``url`` (the client opened the connection) and ``close``
    (it ended) is set. ``binary`` is the frame type of a message.
    """

    connection: int
    t: float
    message: Any = None
    raw: str | bytes | None = None
    binary: bool = False
    url: str | None = None
    close: Close | None = None

    def to_json(self) -> dict[str, Any]:
        """The line as stored."""
        out: dict[str, Any] = {"connection": self.connection, "t": round(self.t, 6)}
        if self.url is not None:
            out["open"] = self.url
        elif self.close is not None:
            close = self.close
            out["close"] = {"code": close.code, "reason": close.reason, "by": close.by}
        else:
            out["frame"] = "binary" if self.binary else "text"
            if isinstance(self.raw, bytes):
                out["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
            elif self.raw is not None:
                out["raw"] = self.raw
            else:
                out["message"] = self.message
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Line:
        """A stored line; raises ``ValueError`` for one that is not."""
        try:
            connection, t = int(obj["connection"]), float(obj["t"])
            if "open" in obj:
                return cls(connection, t, url=str(obj["open"]))
            if "close" in obj:
                close = obj["close"]
                by = close.get("by", "network")
                if by not in _CLOSERS:
                    raise ValueError(f"unknown closer {by!r}")
                ended = Close(int(close["code"]), str(close.get("reason", "")), by)
                return cls(connection, t, close=ended)
            binary = obj.get("frame", "binary") == "binary"
            if "raw_base64" in obj:
                return cls(connection, t, raw=base64.b64decode(obj["raw_base64"]), binary=binary)
            if "raw" in obj:
                return cls(connection, t, raw=str(obj["raw"]), binary=binary)
            return cls(connection, t, message=obj["message"], binary=binary)
        except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise ValueError(f"not a capture line ({type(exc).__name__}: {exc})") from None

    def payload(self) -> str | bytes:
        """The message's frame content: compact JSON, or the raw frame."""
        if self.raw is not None:
            return self.raw
        text = json.dumps(self.message, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8") if self.binary else text


def message_line(
    connection: int,
    t: float,
    data: str | bytes,
    binary: bool,
    redact: Callable[[str], str] = lambda text: text,
) -> Line:
    """The line for a message that crossed the socket as ``data``; ``redact`` cleans its
    text (e.g. removes an API key) before it is parsed. Bytes that are not UTF-8 are kept
    as they are."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Line(connection, t, raw=data, binary=binary)
    else:
        text = data
    text = redact(text)
    try:
        return Line(connection, t, message=json.loads(text), binary=binary)
    except ValueError:
        return Line(connection, t, raw=text, binary=binary)


def write_lines(path: str | os.PathLike[str], lines: Iterable[Line]) -> None:
    """Store ``lines`` in ``path``, one JSON object a line."""
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line.to_json(), ensure_ascii=False, separators=(",", ":")))
            out.write("\n")


def read_lines(path: str | os.PathLike[str]) -> list[Line]:
    """The lines stored in ``path``; raises ``ValueError`` naming a line that is not one."""
    lines = []
    with open(path, encoding="utf-8") as source:
        for number, text in enumerate(source, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                lines.append(Line.from_json(obj))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return lines


# ---- the capture, as a replay needs it -------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """How far a client got on a connection: messages by kind, frames, voiced audio (s)."""

    texts: int = 0
    client_contents: int = 0
    tool_responses: int = 0
    context_updates: int = 0
    stream_ends: int = 0
    activities: int = 0
    frames: int = 0
    voiced_s: float = 0.0

    def __add__(self, other: Sent) -> Sent:
        return Sent(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in _FIELDS})

    def short_of(self, need: Sent) -> list[str]:
        """The counts in which this is less than ``need`` (voiced audio less
        :data:`VOICED_SLACK_S`), as "frames 0/1"."""
        return [
            f"{name.replace('_', ' ')} {getattr(self, name):g}/{getattr(need, name):g}"
            for name in _FIELDS_NAMES
            if getattr(self, name) < getattr(need, name) - _slack(name)
        ]

    def covers(self, need: Sent) -> bool:
        """Whether this is at least ``need`` in every count (voiced audio less the slack)."""
        return not self.short_of(need)


_FIELDS: Final = fields(Sent)
_FIELDS_NAMES: Final = tuple(f.name for f in _FIELDS)


def _slack(name: str) -> float:
    return VOICED_SLACK_S if name == "voiced_s" else 0.0


def sent_by(event: ClientEvent) -> Sent:
    """What one client message adds to :class:`Sent`."""
    voiced = sum(a.seconds for a in event.audio if _voiced(a.data))
    realtime = event.kind == "realtime_input"
    return Sent(
        texts=len(event.texts) if realtime else 0,
        client_contents=int(event.kind == "client_content"),
        tool_responses=int(event.kind == "tool_response"),
        context_updates=int(event.kind == "context_update"),
        stream_ends=int(realtime and event.flag("audio_stream_end")),
        activities=int(realtime and event.flag("activity_start"))
        + int(realtime and event.flag("activity_end")),
        frames=len(event.frames),
        voiced_s=round(voiced, 6),
    )


def _voiced(pcm: bytes) -> bool:
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    return level_dbfs(samples) > VOICED_DBFS


@dataclass(frozen=True)
class Step:
    """One recorded server message and what it waits for: ``need``, what the client had
    sent before it; ``need_t``, when the client message that completed that was sent."""

    line: Line
    need: Sent
    need_t: float


@dataclass(frozen=True)
class Connection:
    """One recorded connection: when it opened, its setup, its server messages with their
    waits, and how it ended (None if the capture does not say)."""

    index: int
    opened_t: float
    setup: dict[str, Any] | None
    steps: tuple[Step, ...]
    close: Close | None
    client: tuple[Line, ...] = field(repr=False)
    server: tuple[Line, ...] = field(repr=False)


@dataclass(frozen=True)
class Capture:
    """A capture folder, read: its connections in order."""

    folder: Path
    connections: tuple[Connection, ...]


class _Progress:
    """A client's :class:`Sent` as its messages arrive, with the time each unit arrived
    (each text, frame...; voiced audio as running totals), so :meth:`reached` can say when
    a ``need`` was first covered. ``t`` is whatever clock the caller uses."""

    def __init__(self) -> None:
        self.sent = Sent()
        self._counts: dict[str, list[float]] = {name: [] for name in _FIELDS_NAMES}
        self._voiced: list[tuple[float, float]] = []  # (voiced total, time)

    def add(self, event: ClientEvent, t: float) -> None:
        more = sent_by(event)
        self.sent = self.sent + more
        if more.voiced_s:
            self._voiced.append((self.sent.voiced_s, t))
        for name in _FIELDS_NAMES:
            if name != "voiced_s":
                self._counts[name].extend([t] * int(getattr(more, name)))

    def reached(self, need: Sent) -> float | None:
        """When ``need`` was first covered (None if it is not yet, or if it was from the
        start)."""
        if not self.sent.covers(need):
            return None
        times: list[float] = []
        for name in _FIELDS_NAMES:
            wanted = getattr(need, name)
            if name == "voiced_s":
                floor = wanted - VOICED_SLACK_S
                if floor > 0:
                    times.append(next(t for total, t in self._voiced if total >= floor))
            elif wanted > 0:
                times.append(self._counts[name][int(wanted) - 1])
        return max(times) if times else None


def _parse(line: Line) -> ClientEvent | None:
    """A recorded client message, parsed as the emulator parses a live one."""
    if line.url is not None or line.close is not None:
        return None
    try:
        return parse_client_message(line.payload(), connection=line.connection, t=line.t)
    except InvalidJson:
        return None


def _connection(index: int, client: list[Line], server: list[Line]) -> Connection:
    """One connection's steps: each server message with the client's progress before it."""
    progress = _Progress()
    setup: dict[str, Any] | None = None
    opened_t = min([line.t for line in client + server], default=0.0)
    for line in client:
        if line.url is not None:
            opened_t = line.t
    events = []
    for line in client:
        event = _parse(line)
        if event is None:
            continue
        if event.kind == "setup" and setup is None and isinstance(event.body, dict):
            setup = event.body
        events.append((line.t, event))
    steps: list[Step] = []
    close: Close | None = None
    pending = iter(events)
    upcoming = next(pending, None)
    for line in server:
        while upcoming is not None and upcoming[0] <= line.t:
            progress.add(upcoming[1], upcoming[0])
            upcoming = next(pending, None)
        if line.close is not None:
            close = close or line.close
            continue
        need = progress.sent
        reached = progress.reached(need)
        steps.append(Step(line, need, opened_t if reached is None else reached))
    return Connection(index, opened_t, setup, tuple(steps), close, tuple(client), tuple(server))


def load_capture(folder: str | os.PathLike[str]) -> Capture:
    """Read a capture folder. Raises ``FileNotFoundError`` without its ``server.jsonl`` and
    ``ValueError`` for a line that is not a capture line."""
    root = Path(folder)
    server = read_lines(root / SERVER_FILE)
    client = read_lines(root / CLIENT_FILE) if (root / CLIENT_FILE).exists() else []
    numbers = sorted({line.connection for line in server + client})
    connections = tuple(
        _connection(
            n,
            sorted((x for x in client if x.connection == n), key=lambda x: x.t),
            sorted((x for x in server if x.connection == n), key=lambda x: x.t),
        )
        for n in numbers
    )
    return Capture(root, connections)


# ---- replay ----------------------------------------------------------------------------------


class Replay:
    """A :data:`~screenshare_widget.emulator.Script` that replays a :class:`Capture`, one
    recorded connection per client connection, in order (see the module's docstring).

    ``speed`` divides the recorded gaps (2.0: twice as fast). :attr:`problems` lists what
    did not go as recorded (a wait given up, a setup that differs, a connection too many).
    Use one instance per emulator; it counts the connections it served.
    """

    def __init__(
        self, capture: Capture, *, speed: float = 1.0, gate_timeout_s: float = GATE_TIMEOUT_S
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive (1.0 is as recorded)")
        self.capture = capture
        self.speed = speed
        self.gate_timeout_s = gate_timeout_s
        #: What did not go as recorded, one sentence each.
        self.problems: list[str] = []
        #: Connections served so far.
        self.served = 0

    async def __call__(self, conn: EmulatorConnection) -> None:
        """Serve one client connection; cancellation (the client went away) stops it."""
        n = self.served
        self.served += 1
        if n >= len(self.capture.connections):
            self.problems.append(f"connection {n} is not in the capture")
            await conn.close(CLOSE_NOT_RECORDED, REASON_NOT_RECORDED.format(n=n))
            return
        recorded = self.capture.connections[n]
        self._compare_setup(n, recorded, conn.setup)
        progress = _Progress()
        changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(conn, progress, changed), name=f"replay-read-{n}")
        try:
            await self._play(n, recorded, conn, progress, changed)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(
        self, conn: EmulatorConnection, progress: _Progress, changed: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            event = await conn.next_event(timeout=None)
            progress.add(event, loop.time())
            changed.set()

    async def _play(
        self,
        n: int,
        recorded: Connection,
        conn: EmulatorConnection,
        progress: _Progress,
        changed: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        previous_at, previous_t = start, recorded.opened_t
        for i, step in enumerate(recorded.steps):
            met_at = await self._wait(n, i, step, progress, changed)
            if met_at is None:  # no wait: the connection's start is the reference
                met_at, met_t = start, recorded.opened_t
            else:
                met_t = step.need_t
            due = max(
                previous_at + (step.line.t - previous_t) / self.speed,
                met_at + (step.line.t - met_t) / self.speed,
            )
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            previous_at, previous_t = max(due, loop.time()), step.line.t
            if _is_setup_complete(step.line) and conn.setup_complete_sent:
                continue  # the emulator sent it already (auto_setup_complete)
            await _send(conn, step.line)
        close = recorded.close
        if close is None or close.by == "client":
            return  # the client ends it, as it did
        last_t = max([recorded.opened_t] + [s.line.t for s in recorded.steps])
        ends = [line.t for line in recorded.server if line.close is not None]
        close_t = max(last_t, min(ends, default=last_t))
        delay = previous_at + (close_t - previous_t) / self.speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if close.code == 1006 or close.by == "network":
            conn.abort()
        else:
            await conn.close(close.code, close.reason)

    async def _wait(
        self, n: int, i: int, step: Step, progress: _Progress, changed: asyncio.Event
    ) -> float | None:
        """Wait until the client sent what it had before this message; returns when that
        was reached on the loop's clock (None when nothing was needed), or now if the wait
        was given up after :attr:`gate_timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.gate_timeout_s
        while not progress.sent.covers(step.need):
            changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                short = ", ".join(progress.sent.short_of(step.need))
                self.problems.append(
                    f"connection {n}, message {i}: gave up waiting {self.gate_timeout_s:g} s "
                    f"for the client to send {short}"
                )
                return loop.time()
        return progress.reached(step.need)

    def _compare_setup(self, n: int, recorded: Connection, setup: dict[str, Any]) -> None:
        if recorded.setup is None:
            return
        if recorded.setup != setup:
            keys = set(recorded.setup) | set(setup)
            differ = sorted(k for k in keys if recorded.setup.get(k) != setup.get(k))
            self.problems.append(
                f"connection {n}: the setup differs from the capture's in {', '.join(differ)}"
            )


def _is_setup_complete(line: Line) -> bool:
    return isinstance(line.message, dict) and "setupComplete" in line.message


async def _send(conn: EmulatorConnection, line: Line) -> None:
    """Send a recorded message: a binary JSON object through :meth:`EmulatorConnection.send`
    (so its resumption handles resume), anything else exactly as recorded."""
    if line.raw is None and line.binary and isinstance(line.message, dict):
        try:
            await conn.send(line.message)
            return
        except ValueError:  # over the emulator's frame bound: send it as recorded
            pass
    await conn.send_raw(line.payload())


def replay_script(
    capture: Capture | str | os.PathLike[str],
    *,
    speed: float = 1.0,
    gate_timeout_s: float = GATE_TIMEOUT_S,
) -> Replay:
    """A :class:`Replay` of ``capture`` (a :class:`Capture` or its folder), for
    ``LiveEmulator(script=..., auto_setup_complete=False, session_resumption_handles=False)``
    (so the recorded ``setupComplete`` and handles are the only ones sent)."""
    loaded = capture if isinstance(capture, Capture) else load_capture(capture)
    return Replay(loaded, speed=speed, gate_timeout_s=gate_timeout_s)


def replay_emulator(
    capture: Capture | str | os.PathLike[str], *, speed: float = 1.0, **options: Any
) -> LiveEmulator:
    """A :class:`~screenshare_widget.emulator.LiveEmulator` that replays ``capture``; its
    script (the :class:`Replay`) is its ``script`` attribute. ``options`` go to
    ``LiveEmulator`` (``host``, ``port``, ``api_keys``, ...)."""
    options.setdefault("auto_setup_complete", False)
    options.setdefault("session_resumption_handles", False)
    # The capture holds the service's own habits ({} messages, its pongs' timing aside):
    # the emulator adds none of its own.
    options.setdefault("realism", Realism.ideal())
    return LiveEmulator(script=replay_script(capture, speed=speed), **options)
