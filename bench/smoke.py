"""``./dev smoke``: one scripted session that tries every feature, and a capture of it.

python -m bench.smoke               # the Gemini API with GEMINI_API_KEY, else the emulator
python -m bench.smoke --emulator    # the local Live emulator even with a key
python -m bench.smoke --out DIR     # the capture goes to DIR

The session drives the product (a ``Relay`` on ``gemini.connector``, with a tool), as a
notebook user would: a typed question, a spoken one (espeak-ng), a screen frame, a tool
call, a new system instruction mid-session, and a dropped connection that must resume. It
prints a PASS or FAIL line per feature and writes a folder a user can attach to a bug
report: the raw messages both ways (``server.jsonl``, ``client.jsonl``; the format is in
``screenshare_widget/emulator/replay.py``, which can replay it), ``results.json`` and a
``README.txt``. The API key is removed from everything written. The exit status is 0 only
if every feature passed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

from google import genai
from google.genai import types

import screenshare_widget
from screenshare_widget import gemini
from screenshare_widget.config import DEFAULT_MODEL, SessionConfig
from screenshare_widget.emulator import DefaultResponder, LiveEmulator
from screenshare_widget.emulator.replay import (
    CLIENT_FILE,
    SERVER_FILE,
    Line,
    Replay,
    message_line,
    replay_emulator,
    write_lines,
)
from screenshare_widget.emulator.replay import Close as CapturedClose
from screenshare_widget.gemini import WireFrame
from screenshare_widget.protocol import INPUT_RATE_HZ, SAMPLE_BYTES
from screenshare_widget.relay import QuietSink, Relay, RelayState
from screenshare_widget.tools import Toolbox
from tests.media import silence_pcm, speech_pcm

ROOT: Final = Path(__file__).resolve().parents[1]
#: Where captures go by default, one folder per run named by its UTC start.
DEFAULT_OUT: Final = ROOT / "test-artifacts" / "smoke"
RESULTS_FILE: Final = "results.json"
README_FILE: Final = "README.txt"
#: The features, in the order the session tries them.
FEATURES: Final = (
    "connect",
    "typed ask",
    "spoken question",
    "screen frame",
    "tool call",
    "instruction hot swap",
    "forced reconnect",
)
#: Longest wait for the session to go live, and for a reconnection (s).
CONNECT_TIMEOUT_S: Final = 30.0
#: Longest wait for one answer (s).
ANSWER_TIMEOUT_S: Final = 60.0
#: Longest wait for a new system instruction to reach the model (s).
INSTRUCTION_TIMEOUT_S: Final = 30.0
#: Microphone chunks go in real time, this long each (s), as the page sends them.
CHUNK_S: Final = 0.1
#: Quiet after the spoken question, so voice activity detection ends it (s).
TRAILING_SILENCE_S: Final = 1.5
#: Microphone quiet sent after the reconnection, so the handover is recorded with its gap (s).
RECONNECT_SILENCE_S: Final = 0.5
#: The conversation stays at rest this long before the connection is dropped (s): the
#: resumption handle that follows an answer has arrived by then.
SETTLE_S: Final = 0.5
#: How often waits look again (s).
POLL_S: Final = 0.02
#: Words a minute of the emulator's answers: brisk, so the emulated run stays short.
EMULATOR_WPM: Final = 700
#: The screen frame: size (pixels) and what it shows.
FRAME_SIZE: Final = (320, 180)
FRAME_TEXT: Final = "SMOKE 42"
#: The question, spoken.
SPOKEN_QUESTION: Final = "What is the capital of France?"
#: The instruction swapped in, and the word every answer must then start with.
SWITCHED: Final = "Switched"
NEW_INSTRUCTION: Final = f'Start every answer with "{SWITCHED}". Keep answers short.'
#: What replaces the API key in everything written.
REDACTED: Final = "[api key]"


def get_time(tz: str) -> str:
    """The current time in time zone ``tz`` ("UTC", or an IANA name such as
    "Europe/Paris"), as ISO 8601 to the second."""
    if tz.strip().upper() in ("UTC", "GMT", "Z"):
        return datetime.now(UTC).isoformat(timespec="seconds")
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(tz)).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Feature:
    """One feature's outcome: whether it worked, what was seen, how long it took (s)."""

    name: str
    passed: bool
    detail: str
    seconds: float


@dataclass(frozen=True)
class SmokeResult:
    """A smoke session's outcome and where its capture went."""

    folder: Path
    backend: str
    emulated: bool
    features: tuple[Feature, ...]

    @property
    def passed(self) -> bool:
        """Whether every feature passed."""
        return all(f.passed for f in self.features) and len(self.features) == len(FEATURES)


# ---- the capture -----------------------------------------------------------------------------


class WireCapture:
    """Keeps every :class:`~screenshare_widget.gemini.WireFrame` of the session and can drop
    the newest connection. It holds references only (nothing is copied until
    :meth:`lines`), and without a bound: the scripted session is short (a few MB)."""

    def __init__(self) -> None:
        self.frames: list[WireFrame] = []
        self._lock = threading.Lock()

    def __call__(self, frame: WireFrame) -> None:
        """Called on the relay's loop for each frame; never blocks."""
        with self._lock:
            self.frames.append(frame)

    def abort_latest(self) -> int:
        """Drop the newest connection's TCP connection, as a network failure would; returns
        its number. Raises ``RuntimeError`` if no connection opened."""
        with self._lock:
            opened = [f for f in self.frames if f.kind == "open" and f.abort is not None]
        if not opened:
            raise RuntimeError("no connection to drop")
        assert opened[-1].abort is not None
        opened[-1].abort()
        return opened[-1].connection

    def lines(self, secret: str = "") -> tuple[list[Line], list[Line]]:
        """The client's and the server's lines, times in seconds from the first frame, with
        ``secret`` removed from everything and anything shaped like a Google API key from
        URLs and close reasons (not from messages: base64 media can look like one)."""
        with self._lock:
            frames = list(self.frames)
        t0 = min((f.t for f in frames), default=0.0)

        def redact(text: str) -> str:
            return text.replace(secret, REDACTED) if len(secret) >= 4 else text

        client: list[Line] = []
        server: list[Line] = []
        for f in frames:
            t = f.t - t0
            if f.kind == "open":
                client.append(Line(f.connection, t, url=gemini.scrub(f.url, secret)))
            elif f.kind == "sent":
                client.append(message_line(f.connection, t, f.data, f.binary, redact))
            elif f.kind == "received":
                server.append(message_line(f.connection, t, f.data, f.binary, redact))
            elif f.kind == "closed":
                by = f.by or "network"
                reason = gemini.scrub(f.reason, secret)
                server.append(Line(f.connection, t, close=CapturedClose(f.code, reason, by)))
        return sorted(client, key=_order), sorted(server, key=_order)


def _order(line: Line) -> tuple[float, int]:
    return (line.t, line.connection)


def write_folder(
    folder: Path,
    capture: WireCapture,
    results: dict[str, Any],
    *,
    secret: str = "",
) -> None:
    """Write the capture folder: the lines, ``results.json`` and ``README.txt``, with the
    key removed."""
    folder.mkdir(parents=True, exist_ok=True)
    client, server = capture.lines(secret)
    write_lines(folder / CLIENT_FILE, client)
    write_lines(folder / SERVER_FILE, server)
    text = json.dumps(results, indent=2, ensure_ascii=False, default=str)
    (folder / RESULTS_FILE).write_text(gemini.scrub(text, secret) + "\n", encoding="utf-8")
    (folder / README_FILE).write_text(_readme(results), encoding="utf-8")


def _readme(results: dict[str, Any]) -> str:
    lines = [
        "A capture of one screenshare-widget smoke session (./dev smoke).",
        "",
        f"Backend: {results.get('backend')}; model {results.get('model')}; "
        f"started {results.get('started_at')}.",
        f"Result: {'every feature passed' if results.get('passed') else 'some features FAILED'}.",
        "",
        "Files:",
        f"- {RESULTS_FILE}: each feature's pass or fail and what was seen, the transcript,",
        "  tool calls, instruction versions, handovers, usage and the versions in use.",
        f"- {CLIENT_FILE}: what the client sent, one JSON object a line: each connection's",
        '  opening ("open": its URL) and each message ("message"), audio and frames included.',
        f"- {SERVER_FILE}: every message the service sent, and how each connection ended",
        '  ("close": code, reason, who closed first).',
        '  "t" is seconds since the session began; "connection" numbers the connections.',
        "",
        "The API key was removed from every file; nothing else was. The audio is the",
        "synthetic spoken question (espeak-ng) and the frame a generated test image.",
        "",
        "To replay it offline, the local Live emulator sending these server messages to the",
        "same scripted session (from a checkout of the project):",
        "    ./dev smoke --replay THIS_FOLDER",
        "or in Python: screenshare_widget.emulator.replay.replay_emulator('THIS_FOLDER').",
        "",
    ]
    return "\n".join(lines)


# ---- the session -----------------------------------------------------------------------------


class SmokeFailed(Exception):
    """A feature did not work; the message says what was seen."""


def _wait(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until it holds; raise :class:`SmokeFailed` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SmokeFailed(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)


def _quote(text: str, most: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= most else text[: most - 1] + "…")


class _Session:
    """The scripted session: one method per feature, each returning (passed, detail)."""

    def __init__(self, relay: Relay, capture: WireCapture, *, emulated: bool) -> None:
        self.relay = relay
        self.capture = capture
        self.emulated = emulated

    def ask(self, text: str) -> str:
        return self.relay.ask(text, ANSWER_TIMEOUT_S).result(ANSWER_TIMEOUT_S + 5)

    def failed(self) -> str | None:
        return self.relay.error if self.relay.state is RelayState.FAILED else None

    def settle(self) -> None:
        """Wait until the conversation stayed at rest for :data:`SETTLE_S`."""
        since: float | None = None

        def rested() -> bool:
            nonlocal since
            now = time.monotonic()
            if not self.relay.at_rest() or self.relay.state is not RelayState.LIVE:
                since = None
                return False
            since = now if since is None else since
            return now - since >= SETTLE_S

        _wait(rested, ANSWER_TIMEOUT_S, "the conversation to come to rest")

    def feed(self, pcm: bytes) -> None:
        """Feed microphone audio in real time, in :data:`CHUNK_S` chunks."""
        size = round(CHUNK_S * INPUT_RATE_HZ) * SAMPLE_BYTES
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(pcm), size)):
            delay = start + i * CHUNK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.relay.feed_audio(pcm[offset : offset + size])

    def connect(self) -> tuple[bool, str]:
        self.relay.start()
        try:
            _wait(
                lambda: self.relay.state in (RelayState.LIVE, RelayState.FAILED),
                CONNECT_TIMEOUT_S,
                "the session to go live",
            )
        except SmokeFailed as exc:
            raise SmokeFailed(
                f"{exc} (still {self.relay.state.value}: {self.relay.error})"
            ) from None
        if self.relay.state is RelayState.FAILED:
            return False, self.relay.error
        return True, f"live on {self.relay.config.model}"

    def typed_ask(self) -> tuple[bool, str]:
        answer = self.ask("Hello! In one short sentence: what is two plus two?")
        ok = answer.startswith("You wrote: Hello!") if self.emulated else bool(answer)
        return ok, f"answer {_quote(answer)}"

    def spoken_question(self) -> tuple[bool, str]:
        start = len(self.relay.transcript)
        self.feed(speech_pcm(SPOKEN_QUESTION) + silence_pcm(TRAILING_SILENCE_S))

        def answered() -> bool:
            turns = self.relay.transcript.snapshot()[start:]
            heard = any(t.role == "user" and not t.typed and t.text.strip() for t in turns)
            return heard and any(t.role == "model" and t.done for t in turns)

        _wait(answered, ANSWER_TIMEOUT_S, "the spoken question's answer")
        turns = self.relay.transcript.snapshot()[start:]
        heard = " ".join(t.text for t in turns if t.role == "user" and not t.typed)
        answer = next(t.text for t in turns if t.role == "model" and t.done)
        if self.emulated:
            ok = heard.startswith("(spoke for") and answer.startswith("You spoke for")
        else:
            ok = bool(heard.strip()) and bool(answer.strip())
        return ok, f"heard {_quote(heard)}; answer {_quote(answer)}"

    def screen_frame(self) -> tuple[bool, str]:
        jpeg = frame_jpeg()
        width, height = FRAME_SIZE
        sent = self.relay.counters.frames_sent
        self.relay.feed_frame(jpeg, width, height, seq=1, reason="first")
        _wait(lambda: self.relay.counters.frames_sent > sent, CONNECT_TIMEOUT_S, "the frame to go")
        answer = self.ask("What do you see on my screen? One short sentence.")
        if self.emulated:
            ok = "1 screen frame" in answer and f"{width} by {height} pixels" in answer
        else:
            ok = bool(answer)
        detail = f"{len(jpeg)} bytes sent; answer {_quote(answer)}"
        if not self.emulated:  # whether the model read the frame (not required)
            detail += f"; reads the 42: {'42' in answer or 'forty-two' in answer.lower()}"
        return ok, detail

    def tool_call(self) -> tuple[bool, str]:
        calls = len(self.relay.tool_calls)
        if self.emulated:
            answer = self.ask("call get_time tz=UTC")
        else:
            answer = self.ask(
                "What time is it in UTC right now? Use the get_time tool, then tell me."
            )

        def ran() -> bool:
            new = self.relay.tool_calls[calls:]
            return any(c.name == "get_time" and c.outcome != "running" for c in new)

        _wait(ran, ANSWER_TIMEOUT_S, "the get_time call")
        self.settle()
        call = next(c for c in self.relay.tool_calls[calls:] if c.name == "get_time")
        ok = call.outcome == "ok"
        if self.emulated:
            ok = ok and answer.startswith("The tool get_time returned")
        said = f"get_time({json.dumps(call.args)}) {call.outcome}: {call.result or call.error}"
        return ok, f"{said}; answer {_quote(answer)}"

    def instruction_hot_swap(self) -> tuple[bool, str]:
        version = self.relay.set_instruction(NEW_INSTRUCTION)
        _wait(
            lambda: not self.relay.instructions.current.pending,
            INSTRUCTION_TIMEOUT_S,
            "the new instruction to reach the model",
        )
        applied = self.relay.instructions.current
        answer = self.ask("Say hello in three words.")
        starts = answer.startswith(SWITCHED)
        ok = applied.version == version.version and (starts or not self.emulated)
        return ok, (
            f"version {applied.version} applied by {applied.applied_by}; "
            f"answer {_quote(answer)}; starts with {SWITCHED!r}: {starts}"
        )

    def forced_reconnect(self) -> tuple[bool, str]:
        self.settle()
        connections = self.relay.counters.connections
        handovers = len(self.relay.handovers)
        dropped = self.capture.abort_latest()

        def back() -> bool:
            if self.failed() is not None:
                raise SmokeFailed(f"the session failed: {self.failed()}")
            up = self.relay.state is RelayState.LIVE
            return up and self.relay.counters.connections > connections

        _wait(back, CONNECT_TIMEOUT_S, "the relay to reconnect")
        self.feed(silence_pcm(RECONNECT_SILENCE_S))
        _wait(
            lambda: len(self.relay.handovers) > handovers,
            CONNECT_TIMEOUT_S,
            "the handover to be recorded",
        )
        handover = self.relay.handovers[-1]
        answer = self.ask("Are you still there?")
        ok = handover.resumed and bool(answer)
        if self.emulated:  # the resumed session remembers the frame of the first connection
            ok = ok and "1 screen frame" in answer
        gap = "no gap" if handover.gap_ms is None else f"gap {handover.gap_ms:.0f} ms"
        return ok, (
            f"dropped connection {dropped}; reason {handover.reason!r}, "
            f"resumed={handover.resumed}, {gap}; answer {_quote(answer)}"
        )


def frame_jpeg() -> bytes:
    """The screen frame: :data:`FRAME_TEXT` in black on white, a real JPEG (Pillow, which
    the test environment has through matplotlib)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", FRAME_SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, FRAME_SIZE[0] - 9, FRAME_SIZE[1] - 9), outline="navy", width=4)
    draw.text((40, 60), FRAME_TEXT, fill="black", font=ImageFont.load_default(size=48))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def run_smoke(
    client: genai.Client,
    *,
    out: Path,
    emulated: bool,
    backend: str = "",
    model: str = DEFAULT_MODEL,
    report: Callable[[Feature], None] | None = None,
) -> SmokeResult:
    """Run the scripted session with ``client`` and write its capture to ``out``.

    ``emulated`` asks for the emulator's exact answers (the real model's are only required
    to exist); ``report`` is called with each feature as it ends. Blocks for the session
    (about 30 s on the emulator); a KeyboardInterrupt stops it and still writes the folder.
    """
    secret = str(getattr(client._api_client, "api_key", "") or "")
    capture = WireCapture()
    toolbox = Toolbox([get_time], declare=gemini.declare)
    config = SessionConfig(model=model)
    connect = gemini.connector(client, wire=capture)
    relay = Relay(connect, config, QuietSink(), name="screenshare-smoke", toolbox=toolbox)
    session = _Session(relay, capture, emulated=emulated)
    steps: list[tuple[str, Callable[[], tuple[bool, str]]]] = [
        ("connect", session.connect),
        ("typed ask", session.typed_ask),
        ("spoken question", session.spoken_question),
        ("screen frame", session.screen_frame),
        ("tool call", session.tool_call),
        ("instruction hot swap", session.instruction_hot_swap),
        ("forced reconnect", session.forced_reconnect),
    ]
    features: list[Feature] = []
    started = datetime.now(UTC)
    try:
        for name, step in steps:
            began = time.monotonic()
            if features and not features[0].passed:
                passed, detail = False, "not tried: the session did not connect"
            else:
                try:
                    passed, detail = step()
                except (SmokeFailed, TimeoutError) as exc:
                    passed, detail = False, str(exc) or type(exc).__name__
                except Exception as exc:  # a failure of this feature, not of the smoke
                    passed, detail = False, f"{type(exc).__name__}: {exc}"
            failure = session.failed()
            connected = bool(features) and features[0].passed  # else "connect" said why
            if not passed and connected and failure and failure not in detail:
                detail = f"{detail} (the session failed: {failure})"
            seconds = round(time.monotonic() - began, 2)
            feature = Feature(name, passed, gemini.scrub(detail, secret), seconds)
            features.append(feature)
            if report is not None:
                report(feature)
        if relay.state is RelayState.LIVE:
            # The session ends at rest, so the service's last messages are in the capture.
            with contextlib.suppress(SmokeFailed):
                session.settle()
    finally:
        relay.close()
        result = SmokeResult(out, backend, emulated, tuple(features))
        write_folder(out, capture, _results(result, relay, model, started), secret=secret)
    return result


def _results(result: SmokeResult, relay: Relay, model: str, started: datetime) -> dict[str, Any]:
    return {
        "passed": result.passed,
        "backend": result.backend,
        "emulated": result.emulated,
        "model": model,
        "started_at": started.isoformat(timespec="seconds"),
        "features": {
            f.name: {"passed": f.passed, "detail": f.detail, "seconds": f.seconds}
            for f in result.features
        },
        "transcript": [t.to_record() for t in relay.transcript],
        "tool_calls": [c.to_record() for c in relay.tool_calls],
        "instructions": [
            {"version": i.version, "text": i.text, "applied_by": i.applied_by}
            for i in relay.instructions
        ],
        "handovers": [
            {"reason": h.reason, "resumed": h.resumed, "gap_ms": h.gap_ms} for h in relay.handovers
        ],
        "usage": [
            {
                "prompt": u.prompt_tokens,
                "response": u.response_tokens,
                "total": u.total_tokens,
                "by_modality": u.by_modality,
            }
            for u in relay.usage
        ],
        "error": relay.error,
        "versions": {
            "screenshare_widget": screenshare_widget.__version__,
            "google-genai": genai.__version__,
            "websockets": version("websockets"),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


# ---- the command -----------------------------------------------------------------------------


def emulator_client(emulator: LiveEmulator, api_key: str = gemini.EMULATOR_KEY) -> genai.Client:
    """A client for a running emulator, with ``api_key`` (the emulator takes any)."""
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=emulator.url, async_client_args={"ssl": emulator.client_ssl_context()}
        ),
    )


def fast_emulator() -> LiveEmulator:
    """The local Live emulator with brisk answers (:data:`EMULATOR_WPM`), not started."""
    return LiveEmulator(responder=DefaultResponder(wpm=EMULATOR_WPM))


def _captured_from_emulator(folder: Path) -> bool:
    """Whether a capture's session ran on the emulator (its answers are then exact)."""
    try:
        results = json.loads((folder / RESULTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(results, dict) and results.get("emulated"))


def _print(feature: Feature) -> None:
    mark = "PASS" if feature.passed else "FAIL"
    print(f"{mark}  {feature.name:<21} {feature.seconds:5.1f} s  {feature.detail}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.smoke",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"the capture's folder (default: {DEFAULT_OUT}/<UTC time>)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--emulator", action="store_true", help="use the local Live emulator even with an API key"
    )
    where.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="CAPTURE",
        help="run against the emulator replaying a capture folder",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (with --replay)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the Live model")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or DEFAULT_OUT / stamp
    key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY") or ""
    emulator: LiveEmulator | None = None
    emulated = True
    if args.replay is not None:
        emulator = replay_emulator(args.replay, speed=args.speed)
        backend = f"the emulator replaying {args.replay}"
        emulated = _captured_from_emulator(args.replay)
    elif args.emulator or not key:
        emulator = fast_emulator()
        backend = "the local Live emulator" + ("" if args.emulator else " (no GEMINI_API_KEY)")
    else:
        backend = "the Gemini API"
        emulated = False
    print(f"smoke session against {backend}", flush=True)
    try:
        if emulator is not None:
            emulator.start_in_thread()
            client = emulator_client(emulator)
        else:
            client = genai.Client(api_key=key)
        result = run_smoke(
            client, out=out, emulated=emulated, backend=backend, model=args.model, report=_print
        )
    finally:
        if emulator is not None:
            emulator.stop()
    if emulator is not None and isinstance(emulator.script, Replay):
        for problem in emulator.script.problems:
            print(f"replay: {problem}")
    shown = out.resolve()
    with_root = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    print(f"{'every feature passed' if result.passed else 'FAILED'}; capture: {with_root}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
